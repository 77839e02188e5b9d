"""Real halo catalogs written by real halo finders (../shared/real_halos, see its SOURCES.md): every
file ingests, or is refused with what to do; Rockstar's binary output agrees with its ASCII output;
columns are found by name in any order; consistent-trees tree files need a snapshot."""

from __future__ import annotations

import gzip
import json
import re
import warnings

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from support import REAL_HALOS

from data_catalog import Catalog
from flows.cli import main
from sims.halos.catalog import (
    HaloCatalogError,
    HaloInputWarning,
    HaloOptionError,
    has_particles,
)
from sims.halos.ingest import iter_source
from sims.halos.rockstar import _BINARY_HALO, iter_ctrees, iter_rockstar

pytestmark = pytest.mark.skipif(not REAL_HALOS.is_dir(), reason="shared real halo files absent")

OUT_LIST = REAL_HALOS / "halodatamanager_out_list"
GEVOLUTION = REAL_HALOS / "turnaround_gevolution_ascii"
HLIST = REAL_HALOS / "halotools_ctrees_hlist" / "dummy_halocat_0.07812.list"
# halo counts from SOURCES.md; the hlist's 5 halos with M200b = 0 are left out
FILES = {
    OUT_LIST / "out_160.list": ("rockstar", 4867),
    OUT_LIST / "out_161.list": ("rockstar", 4834),
    OUT_LIST / "out_162.list": ("rockstar", 4791),
    OUT_LIST / "out_163.list": ("rockstar", 4764),
    GEVOLUTION / "halos_0.0.ascii": ("rockstar", 126),
    GEVOLUTION / "halos_0.0.bin": ("rockstar", 126),
    HLIST: ("ctrees", 436 - 5),
}
PROPERTIES = ("concentration", "spin", "sigma_v", "b_to_a", "c_to_a", "x_offset", "v_offset", "vmax", "virial_ratio")


def _read(path, fmt, **options) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HaloInputWarning)  # the gevolution run's z < 0, the hlist's M200b = 0
        return xr.concat(list(iter_source(path, fmt, chunk_halos=1000, **options)), dim="halo")


@pytest.mark.parametrize("path", list(FILES), ids=lambda p: p.name)
def test_every_real_file_ingests_as_halo_properties(path):
    fmt, n_halos = FILES[path]
    ds = _read(path, fmt)
    assert ds.sizes["halo"] == n_halos and not has_particles(ds)
    assert all(name in ds for name in PROPERTIES)
    assert (ds["M200m"] > 0).all() and (ds["R200m"] > 0).all() and (ds["vmax"] > 0).all()
    # positions inside the periodic box (physical kpc at the file's epoch)
    assert ((ds["position"] >= 0) & (ds["position"] <= ds.attrs["box_size_kpc"])).all()
    assert ds.attrs["source_format"] == fmt


def test_the_hlist_mass_of_zero_is_left_out_with_a_warning():
    with pytest.warns(HaloInputWarning, match=r"'M200b\(39\)' is 0 \(not measured\) for 5 of 436 halo\(s\)"):
        chunks = list(iter_ctrees(HLIST, chunk_halos=100))
    assert sum(c.attrs["dropped_unmeasured_mass"] for c in chunks) == 5
    assert sum(c.sizes["halo"] for c in chunks) == 431


def test_rockstar_binary_output_agrees_with_its_ascii_output():
    ascii_, binary = _read(GEVOLUTION / "halos_0.0.ascii", "rockstar"), _read(GEVOLUTION / "halos_0.0.bin", "rockstar")
    order = np.argsort(binary["halo_id"].values)
    binary = binary.isel(halo=order)
    ascii_ = ascii_.isel(halo=np.argsort(ascii_["halo_id"].values))
    np.testing.assert_array_equal(ascii_["halo_id"].values, binary["halo_id"].values)
    assert set(ascii_.data_vars) == set(binary.data_vars)
    for name in ascii_.data_vars:
        # the binary holds float32; the ASCII prints them with 6-7 significant digits
        np.testing.assert_allclose(binary[name].values, ascii_[name].values, rtol=2e-5, atol=1e-6, err_msg=name)
    assert "IDs only" in binary.attrs["particles"]


def test_a_binary_file_of_another_layout_is_refused_with_its_version(tmp_path):
    path = tmp_path / "halos_0.0.bin"
    data = (GEVOLUTION / "halos_0.0.bin").read_bytes()
    path.write_bytes(data[: 256 + 10 * _BINARY_HALO.itemsize])  # truncated: fewer bytes than the header says
    with pytest.raises(HaloCatalogError, match=r"halos_0\.0\.bin: .*Rockstar '0\.99\.9-RC3\+'.*halos_\*\.ascii"):
        iter_rockstar(path)


def test_rockstar_columns_are_found_by_name_in_any_order(tmp_path):
    original = OUT_LIST / "out_163.list"
    lines = original.read_text().splitlines()
    columns = lines[0][1:].split()
    order = np.random.default_rng(0).permutation(len(columns))
    shuffled = ["#" + " ".join(columns[k] for k in order)]
    for line in lines[1:]:
        fields = line.split()
        shuffled.append(line if line.startswith("#") else " ".join(fields[k] for k in order))
    path = tmp_path / "out_163.list"
    path.write_text("\n".join(shuffled) + "\n")
    a, b = _read(original, "rockstar"), _read(path, "rockstar")
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_a_consistent_trees_tree_file_needs_a_snapshot(tmp_path):
    lines = HLIST.read_text().splitlines()
    header = [line for line in lines if line.startswith("#")]
    rows = [line for line in lines if line and not line.startswith("#")]
    columns = [c.split("(")[0].lower() for c in header[0][1:].split()]
    scale, snap, ident = columns.index("scale"), columns.index("snap_num"), columns.index("id")
    earlier = []
    for row in rows:  # the same halos one snapshot earlier, under other ids
        fields = row.split()
        fields[scale], fields[snap], fields[ident] = (
            "0.07000",
            str(int(fields[snap]) - 1),
            str(int(fields[ident]) + 10**9),
        )
        earlier.append(" ".join(fields))
    tree = tmp_path / "tree_0_0_0.dat"
    # consistent-trees writes the number of trees after the header, then '#tree ID' before each tree
    tree.write_text("\n".join([*header, "2", "#tree 1", *earlier, "#tree 2", *rows]) + "\n")
    snapshot = int(rows[0].split()[snap])
    with pytest.raises(HaloOptionError, match=r"rows of 2 snapshots \(a tree file\): pick one with --snapshot"):
        _read(tree, "ctrees")
    with pytest.raises(HaloOptionError, match=rf"--snapshot 7: no rows of that snapshot; .*snapshot {snapshot}"):
        _read(tree, "ctrees", snapshot=7)
    picked, whole = _read(tree, "ctrees", snapshot=snapshot), _read(HLIST, "ctrees")
    for name in whole.data_vars:
        np.testing.assert_array_equal(picked[name].values, whole[name].values, err_msg=name)
    earlier_ds = _read(tree, "ctrees", snapshot=snapshot - 1)
    assert earlier_ds.attrs["expansion_factor"] == 0.07


@pytest.mark.parametrize(
    ("path", "fmt", "message"),
    [
        (HLIST, "rockstar", "a consistent-trees halo list .* read it with --format ctrees"),
        (OUT_LIST / "out_160.list", "ctrees", "a Rockstar halo list .* read it with --format rockstar"),
        (GEVOLUTION / "halos_0.0.bin", "ctrees", "a Rockstar binary catalog, not a consistent-trees list"),
        (GEVOLUTION / "rockstar.cfg", "rockstar", "rockstar.cfg: no column header line"),
        (OUT_LIST / "out_160.list", "hdf5", r"a Rockstar halo list .*; read it with --format rockstar"),
        (HLIST, "hdf5", r"a consistent-trees halo list .*; read it with --format ctrees"),
    ],
)
def test_a_file_read_with_the_wrong_format_names_the_right_one(tmp_path, path, fmt, message):
    result = CliRunner().invoke(
        main, ["--catalog", str(tmp_path / "c"), "ingest", "halos", str(path), "--format", fmt, "--json"]
    )
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["exit_status"] == 2
    assert re.search(message, json.loads(result.stdout)["error"])
    assert not Catalog(tmp_path / "c").names()


def test_the_command_ingests_a_real_catalog_and_says_it_has_no_particles(tmp_path):
    runner = CliRunner()
    args = ["--catalog", str(tmp_path / "c"), "ingest", "halos", str(GEVOLUTION / "halos_0.0.ascii"), "--format"]
    result = runner.invoke(main, [*args, "rockstar"])
    assert result.exit_code == 0, result.output
    assert "warning: " in result.stderr and "z = -0.02994" in result.stderr
    assert "has no particles: 126 halos with their catalog properties only" in result.stderr
    assert result.stdout.strip() == "halos-halos_0.0@v1"
    with Catalog(tmp_path / "c").open("halos-halos_0.0@v1") as ds:
        assert ds.sizes["halo"] == 126 and not has_particles(ds)


def test_a_gzip_compressed_list_reads_as_the_list(tmp_path):
    path = tmp_path / "hlist_0.07812.list.gz"
    path.write_bytes(gzip.compress(HLIST.read_bytes()))
    a, b = _read(HLIST, "ctrees"), _read(path, "ctrees")
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_a_header_without_halos_is_no_halos_not_a_particle_error(tmp_path):
    path = tmp_path / "out_163.list"
    path.write_text("".join(line for line in (OUT_LIST / "out_163.list").open() if line.startswith("#")))
    with pytest.raises(HaloCatalogError, match=r"out_163\.list: no halos \(the header is followed by no data row\)"):
        _read(path, "rockstar")


def test_an_older_consistent_trees_header_without_column_indices_is_read_as_one(tmp_path):
    lines = HLIST.read_text().splitlines(keepends=True)
    lines[0] = "#" + " ".join(c.split("(")[0] for c in lines[0][1:].split()) + "\n"
    path = tmp_path / "hlist_0.07812.list"
    path.write_text("".join(lines))
    a, b = _read(HLIST, "ctrees"), _read(path, "ctrees")
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_a_property_written_as_0_is_kept_as_not_measured(tmp_path):
    lines = (OUT_LIST / "out_160.list").read_text().splitlines(keepends=True)
    columns = lines[0][1:].split()
    first = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    fields = lines[first].split()
    for name in ("Vmax", "Halfmass_Radius", "Voff", "b_to_a"):
        fields[columns.index(name)] = "0.00"
    lines[first] = " ".join(fields) + "\n"
    path = tmp_path / "out_160.list"
    path.write_text("".join(lines))
    ds = _read(path, "rockstar")
    assert ds.sizes["halo"] == 4867
    assert ds["vmax"].values[0] == 0 and ds["r_half"].values[0] == 0 and ds["v_offset"].values[0] == 0


def test_the_default_names_of_two_epochs_differ(tmp_path):
    runner = CliRunner()
    refs = []
    for scale in ("0.07812", "0.50000"):
        path = tmp_path / f"hlist_{scale}.list"
        path.write_bytes(HLIST.read_bytes())
        done = runner.invoke(
            main, ["--catalog", str(tmp_path / "c"), "ingest", "halos", str(path), "--format", "ctrees"]
        )
        assert done.exit_code == 0, done.output
        refs.append(done.stdout.strip())
    assert refs == ["halos-hlist_0.07812@v1", "halos-hlist_0.50000@v1"]


def test_particle_files_are_not_matched_to_consistent_trees_ids():
    # Rockstar's particle files name their halos by the Rockstar ID, not the consistent-trees id
    with pytest.raises(HaloOptionError, match="--particles is only read with --format rockstar, not ctrees"):
        _read(HLIST, "ctrees", particles=[str(HLIST)])
