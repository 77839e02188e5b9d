"""The IllustrisTNG reader against a tiny faithful layout (tests/sims/tng_fixture.py)."""

from __future__ import annotations

import itertools

import h5py
import numpy as np
import pytest
import xarray as xr
from tng_fixture import write_tng_fixture

from sims.halos.catalog import HaloCatalogError, check_catalog, halo_particles
from sims.halos.tng import LOG_MBH_FLOOR, LOG_SSFR_FLOOR, iter_tng

HALO_VARS = ("halo_id", "M200m", "R200m", "position", "velocity", "particle_count", "spin", "sigma_v")
PARTICLE_VARS = ("particle_position", "particle_velocity", "particle_mass")


def _read(truth: dict, **kwargs) -> list[xr.Dataset]:
    return list(iter_tng(truth["base_path"], truth["snapshot"], **kwargs))


def _matched(truth: dict, **kwargs) -> list[xr.Dataset]:
    return _read(truth, matching=truth["matching"], hydro_base_path=truth["hydro_base_path"], **kwargs)


def _concat(chunks: list[xr.Dataset]) -> dict[str, np.ndarray]:
    names = [n for n in chunks[0].data_vars if n != "particle_offset"]
    return {n: np.concatenate([c[n].values for c in chunks]) for n in names}


def _halo(ds: xr.Dataset, halo_id: int) -> int:
    return int(np.flatnonzero(ds["halo_id"].values == halo_id)[0])


def test_units_are_converted_as_hand_computed(tmp_path):
    truth = write_tng_fixture(tmp_path, with_matching=False)
    (ds,) = _read(truth)
    # fixture: z = 1 (a = 0.5), h = 0.6774; group 1 has M = 25 (1e10 Msun/h), R = 40 ckpc/h,
    # GroupPos (300, 400, 500) ckpc/h, GroupVel (100, -50, 25) (km/s)/a, spin (30, 40, 0) (kpc/h)(km/s)
    i = _halo(ds, 1)
    assert ds["M200m"].values[i] == pytest.approx(25.0e10 / 0.6774, rel=1e-12)
    assert ds["R200m"].values[i] == pytest.approx(40.0 * 0.5 / 0.6774, rel=1e-12)
    np.testing.assert_allclose(ds["position"].values[i], np.array([300.0, 400.0, 500.0]) * 0.5 / 0.6774, rtol=1e-12)
    np.testing.assert_allclose(ds["velocity"].values[i], [200.0, -100.0, 50.0], rtol=1e-12)  # GroupVel / a
    v200 = np.sqrt(4.300917270e-6 * (25.0e10 / 0.6774) / (40.0 * 0.5 / 0.6774))
    assert ds["spin"].values[i] == pytest.approx(50.0 / 0.6774 / (np.sqrt(2.0) * v200 * 40.0 * 0.5 / 0.6774))
    assert ds["sigma_v"].values[i] == pytest.approx(80.0)
    np.testing.assert_allclose(ds["particle_mass"].values, 0.0005e10 / 0.6774, rtol=1e-12)
    # particle velocities: stored km sqrt(a)/s times sqrt(a)
    rows = slice(int(ds["particle_offset"].values[i]), None)
    inside = truth["physical"]["inside"][1]
    raw = truth["velocities"][truth["offset"][1] : truth["offset"][1] + truth["n_part"][1]][inside]
    np.testing.assert_allclose(ds["particle_velocity"].values[rows][: inside.sum()], raw * np.sqrt(0.5), rtol=1e-12)
    assert ds.attrs["box_size_kpc"] == pytest.approx(1000.0 * 0.5 / 0.6774)
    assert ds.attrs["redshift"] == 1.0 and ds.attrs["hubble"] == 0.6774 and ds.attrs["source_format"] == "tng"
    assert ds["velocity"].attrs["tng_units"] == "(km/s)/a" and ds["M200m"].attrs["units"] == "Msun"


def test_particles_match_the_truth_and_are_unwrapped_across_the_box_edge(tmp_path):
    truth = write_tng_fixture(tmp_path, with_matching=False)
    (ds,) = _read(truth)
    phys = truth["physical"]
    for i, halo_id in enumerate(ds["halo_id"].values):
        inside = phys["inside"][halo_id]
        p = halo_particles(ds, i)
        np.testing.assert_allclose(p["x"] + ds["position"].values[i], phys["particle_position"][halo_id][inside])
        np.testing.assert_allclose(p["v"], phys["particle_velocity"][halo_id][inside], rtol=1e-12)
        assert (np.linalg.norm(p["x"], axis=1) <= ds["R200m"].values[i] * (1 + 1e-12)).all()
    edge = _halo(ds, 0)
    assert truth["roles"][0] == "edge"
    raw = truth["coordinates"][: truth["n_part"][0]]
    assert raw[:, 0].min() < 100 and raw[:, 0].max() > 900  # the stored group straddles the x faces
    x = halo_particles(ds, edge)["x"]
    assert np.abs(x).max() < 1.4 * ds["R200m"].values[edge]  # no periodic jump left
    assert (ds["particle_position"].values[:, 0] > ds.attrs["box_size_kpc"]).any()  # unwrapped beyond the box


def test_chunked_reading_equals_one_chunk(tmp_path):
    truth = write_tng_fixture(tmp_path, n_groups=8)
    whole = _matched(truth, chunk_halos=1000)
    assert len(whole) == 1
    for size in (1, 2, 3):
        chunks = _matched(truth, chunk_halos=size)
        assert len(chunks) > 1 and all(1 <= c.sizes["halo"] <= size for c in chunks)  # none left empty
        got, want = _concat(chunks), _concat(whole)
        assert got.keys() == want.keys()
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        assert chunks[0].attrs["group_start"] == 0 and chunks[-1].attrs["group_stop"] == 8
        for before, after in itertools.pairwise(chunks):
            assert before.attrs["group_stop"] == after.attrs["group_start"]
        for key in [k for k in whole[0].attrs if k.startswith("n_skipped_")]:
            assert sum(c.attrs[key] for c in chunks) == whole[0].attrs[key], key


def test_max_chunk_particles_splits_chunks(tmp_path):
    truth = write_tng_fixture(tmp_path, with_matching=False)
    chunks = _read(truth, max_chunk_particles=150)
    assert len(chunks) > 1
    assert _concat(chunks)["halo_id"].tolist() == _concat(_read(truth))["halo_id"].tolist()


def test_offsets_file_and_cumulative_sum_agree(tmp_path):
    with_file = write_tng_fixture(tmp_path / "a", with_offsets=True, with_matching=False)
    without = write_tng_fixture(tmp_path / "b", with_offsets=False, with_matching=False)
    (a,) = _read(with_file)
    (b,) = _read(without)
    assert a.attrs["offsets_source"].endswith("offsets_099.hdf5")
    assert b.attrs["offsets_source"] == "cumulative GroupLenType[:, 1]"
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_offsets_file_of_another_run_is_refused(tmp_path):
    truth = write_tng_fixture(tmp_path, with_matching=False)
    with h5py.File(truth["offsets"], "r+") as handle:
        handle["Group/SnapByType"][2, 1] += 5
    with pytest.raises(HaloCatalogError, match=r"offsets_099\.hdf5.*SnapByType\[2, 1\]"):
        _read(truth)


def test_matching_attaches_the_matched_hydro_central(tmp_path):
    truth = write_tng_fixture(tmp_path, n_groups=8)
    chunks = _matched(truth, chunk_halos=2)
    got = _concat(chunks)
    roles = truth["roles"]
    expected_ids = sorted(truth["targets"])
    no_particles = [i for i, r in enumerate(roles) if r == "no_particles"]
    assert got["halo_id"].tolist() == [i for i in expected_ids if i not in no_particles]
    for k, halo_id in enumerate(got["halo_id"]):
        for name, value in truth["targets"][int(halo_id)].items():
            assert got[name][k] == pytest.approx(value, rel=1e-12), (halo_id, name)
    edge, normal = got["halo_id"].tolist().index(0), got["halo_id"].tolist().index(1)
    assert got["log_ssfr"][edge] == LOG_SSFR_FLOOR and got["log_mbh"][normal] == LOG_MBH_FLOOR
    totals = {k: sum(c.attrs[k] for c in chunks) for k in chunks[0].attrs if k.startswith("n_skipped_")}
    # the unmatched group's hydro twin has its central unmatched and a satellite matched to the dark central
    assert totals == {
        "n_skipped_low_mass": 0,
        "n_skipped_no_central": 1,
        "n_skipped_unmatched": 1,
        "n_skipped_no_stars": 1,
        "n_skipped_no_particles": 1,
    }
    assert chunks[0].attrs["log_ssfr_floor"] == LOG_SSFR_FLOOR
    assert chunks[0]["log_mstar"].attrs["units"] == "1"


def test_min_log_mass_and_within_fof(tmp_path):
    truth = write_tng_fixture(tmp_path, with_matching=False)
    (cut,) = _read(truth, min_log_mass=10.25)
    assert 4 not in cut["halo_id"].values and cut.attrs["n_skipped_low_mass"] == 1
    (fof,) = _read(truth, within="fof")
    # every FoF member, including the group whose particles all lie beyond R200m
    assert fof["particle_count"].values.tolist() == [int(truth["n_part"][i]) for i in fof["halo_id"].values]
    assert 5 in fof["halo_id"].values and fof.attrs["n_skipped_no_particles"] == 0


def test_chunks_pass_the_canonical_check_and_serialise(tmp_path):
    truth = write_tng_fixture(tmp_path, n_groups=8)
    for ds in _matched(truth, chunk_halos=2):
        assert check_catalog(ds) == []
        path = tmp_path / f"chunk{ds.attrs['chunk_index']}.h5"
        ds.to_netcdf(path, engine="h5netcdf")
        back = xr.open_dataset(path, engine="h5netcdf")
        assert back.attrs["group_stop"] == ds.attrs["group_stop"]
        back.close()


def _set(path, table: str, field: str, change) -> None:
    with h5py.File(path, "r+") as handle:
        change(handle, f"{table}/{field}")


def test_missing_field_names_file_and_field(tmp_path):
    truth = write_tng_fixture(tmp_path, with_matching=False)
    _set(truth["group_files"][1], "Group", "Group_M_Mean200", lambda h, k: h.__delitem__(k))
    with pytest.raises(HaloCatalogError, match=r"fof_subhalo_tab_099\.1\.hdf5: field Group/Group_M_Mean200 is missing"):
        _read(truth)


def test_truncated_file_is_named(tmp_path):
    truth = write_tng_fixture(tmp_path, with_matching=False)
    path = truth["snap_files"][1]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(HaloCatalogError, match=r"snap_099\.1\.hdf5: cannot be opened.*truncated"):
        _read(truth)


def test_nan_in_a_field_is_named(tmp_path):
    truth = write_tng_fixture(tmp_path, with_matching=False)

    def poison(handle, key):
        values = handle[key][()]
        values[0] = np.nan
        handle[key][...] = values

    _set(truth["group_files"][0], "Group", "Group_R_Mean200", poison)
    with pytest.raises(HaloCatalogError, match=r"fof_subhalo_tab_099\.0\.hdf5: field Group/Group_R_Mean200 .*NaN"):
        _read(truth)
    truth = write_tng_fixture(tmp_path / "b", with_matching=False)
    _set(truth["snap_files"][1], "PartType1", "Velocities", poison)
    with pytest.raises(HaloCatalogError, match=r"snap_099\.1\.hdf5: field PartType1/Velocities .*NaN"):
        _read(truth)


def test_inconsistent_num_files_is_named(tmp_path):
    truth = write_tng_fixture(tmp_path, with_matching=False)
    with h5py.File(truth["group_files"][1], "r+") as handle:
        handle["Header"].attrs["NumFiles"] = np.int32(3)
    with pytest.raises(HaloCatalogError, match=r"fof_subhalo_tab_099\.1\.hdf5: Header NumFiles = 3 but .*says 2"):
        _read(truth)
    truth = write_tng_fixture(tmp_path / "b", with_matching=False)
    for path in truth["snap_files"]:
        with h5py.File(path, "r+") as handle:
            handle["Header"].attrs["NumFilesPerSnapshot"] = np.int32(3)
    with pytest.raises(HaloCatalogError, match=r"snap_099\.2\.hdf5: file not found.*NumFilesPerSnapshot = 3"):
        _read(truth)


def test_rows_disagreeing_with_header_and_bad_matching_are_named(tmp_path):
    truth = write_tng_fixture(tmp_path)

    def shorten(handle, key):
        values = handle[key][()]
        del handle[key]
        handle[key] = values[:-1]

    _set(truth["group_files"][0], "Group", "GroupPos", shorten)
    with pytest.raises(HaloCatalogError, match=r"\.0\.hdf5: field Group/GroupPos has shape .*Ngroups_ThisFile"):
        _read(truth)
    truth = write_tng_fixture(tmp_path / "b")
    with h5py.File(truth["matching"], "r+") as handle:
        del handle["SubhaloIndexDark_LHaloTree"]
    with pytest.raises(HaloCatalogError, match=r"subhalo_matching_to_dark_099\.hdf5: field SubhaloIndexDark_LHaloTree"):
        _matched(truth)
    assert _matched(truth, matching_field="SubhaloIndexDark_SubLink")
