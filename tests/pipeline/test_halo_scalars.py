"""Invariant halo scalars: counts and names, exact symmetry, a plain reference, shells and dask chunking."""

from __future__ import annotations

import itertools
import re

import dask
import numpy as np
import pytest
import xarray as xr

import pipeline.halos.scalars as scalars_module
from pipeline.halos.scalars import (
    G_KPC_KMS2_MSUN,
    KINDS,
    N_SHELLS,
    SCALAR_KINDS,
    SCALAR_NAMES,
    SHELL_EDGES,
    HaloScalarsError,
    _tasks,
    halo_scalar_array,
    halo_scalars,
    scalar_names,
    scalars_from_moments,
    shell_moment_arrays,
    shell_moments,
)
from pipeline.symmetry import random_orthogonal, random_permutation, relative_error
from sims.halos.catalog import catalog_dataset, halo_particles

RTOL = 1e-10
MPC_PER_KPC, MS_PER_KMS, KG_PER_MSUN = 1e-3, 1e3, 1.98841e30


def random_catalog(n_halos: int = 4, seed: int = 0) -> xr.Dataset:
    """Small anisotropic clouds with unequal masses, some particles beyond R200m.

    Radii are spread evenly enough that every shell holds more than a few particles: a shell of one
    or two particles has a rank-deficient tensor whose zero eigenvalues are round-off noise, which
    no relative tolerance can compare."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(150, 250, n_halos)
    M = 10 ** rng.uniform(11, 13, n_halos)
    R = rng.uniform(100, 400, n_halos)
    centre = rng.uniform(-5e4, 5e4, (n_halos, 3))
    bulk = rng.normal(0, 300, (n_halos, 3))
    pos, vel = [], []
    for i, n in enumerate(counts):
        direction = rng.normal(size=(n, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        x = direction * rng.uniform(0, 1.15 * R[i], (n, 1)) * rng.uniform(0.6, 1.0, 3)
        v = rng.normal(size=(n, 3)) * rng.uniform(50, 200, 3) + 30 * x / R[i] + bulk[i]  # some rotation-like shear
        pos.append(centre[i] + x)
        vel.append(v)
    return catalog_dataset(
        {
            "halo_id": 100 + np.arange(n_halos),
            "M200m": M,
            "R200m": R,
            "position": centre,
            "velocity": bulk,
            "particle_count": counts,
        },
        {
            "particle_position": np.concatenate(pos),
            "particle_velocity": np.concatenate(vel),
            "particle_mass": rng.uniform(0.5, 2.0, counts.sum()) * 1e8,
        },
        source_format="synthetic",
    )


def natural_scales(moments: dict[str, np.ndarray]) -> np.ndarray:
    """(H, 567): the size of each scalar's ingredients, the Cauchy-Schwarz bound on its value.

    |a.b| <= |a| |b|, |A:B| <= |A|_F |B|_F, |eig(T)| <= |T|_F, and products multiply. A scalar
    can cancel to far below this bound (xx_0:xv+_0 with an indefinite xv+_0), and then its
    round-off is relative to the bound, not to its own value."""
    norm = {}
    for n in range(3):
        norm[f"m_{n}"] = np.abs(moments["m"][:, n])
        for a in ("x", "v"):
            norm[f"{a}_{n}"] = np.linalg.norm(moments[a][:, n], axis=-1)
        for t in ("xx", "vv", "xv+", "xv-"):
            norm[f"{t}_{n}"] = np.linalg.norm(moments[t][:, n], axis=(-1, -2))

    def scale(name: str) -> np.ndarray:
        if "*" in name:
            a, b = name.split("*")
            return scale(a) * scale(b)
        for sep in (".", ":"):
            if sep in name:
                a, b = name.split(sep)
                return norm[a] * norm[b]
        match = re.fullmatch(r"eig\d\((.+)\)_(\d)", name)
        return norm[f"{match[1]}_{match[2]}"] if match else norm[name]

    return np.stack([scale(name) for name in SCALAR_NAMES], -1)


def assert_same_scalars(actual: np.ndarray, expected: np.ndarray, ds: xr.Dataset) -> None:
    """Equal to RTOL relative to each scalar's natural scale (exact invariance up to round-off)."""
    bound = RTOL * natural_scales(shell_moments(**shell_moment_arrays(ds)))
    error = np.abs(actual - expected)
    worst = np.unravel_index(np.argmax(error / bound), error.shape)
    assert (error <= bound).all(), f"{SCALAR_NAMES[worst[1]]} of halo {worst[0]}: {actual[worst]} vs {expected[worst]}"


def compute(ds: xr.Dataset, **kwargs) -> np.ndarray:
    return halo_scalars(ds, dask_address="synchronous", **kwargs)["scalars"].values


def with_values(ds: xr.Dataset, **values: np.ndarray) -> xr.Dataset:
    out = ds.copy()
    for name, value in values.items():
        out[name] = (ds[name].dims, value, ds[name].attrs)
    return out


# --------------------------------------------------------------------------------------------------


def test_counts_names_and_kinds():
    counts = {kind: len(scalar_names(kind)) for kind in KINDS}
    assert counts == {
        "single": 30,
        "vector-contraction": 21,
        "tensor-contraction": 45,
        "antisymmetric-contraction": 6,
        "product": 465,
    }
    assert sum(counts[k] for k in KINDS[:4]) == 102
    assert len(SCALAR_NAMES) == len(set(SCALAR_NAMES)) == len(SCALAR_KINDS) == 567
    for name in ("m_0", "eig1(xx)_1", "x_0.x_2", "x_0.v_0", "xv+_0:xv+_1", "xv-_1:xv-_2", "m_0*eig2(vv)_2", "m_2*m_2"):
        assert name in SCALAR_NAMES
    assert scalar_names("single")[:6] == ["m_0", "m_1", "m_2", "eig1(xx)_0", "eig2(xx)_0", "eig3(xx)_0"]


def test_invariant_under_rotations_reflections_translations_boosts_and_permutations():
    ds = random_catalog()
    base = compute(ds)
    assert np.isfinite(base).all()
    rng = np.random.default_rng(1)
    counts, offsets = ds["particle_count"].values, ds["particle_offset"].values
    for reflection in (False, True):
        q = random_orthogonal(3, rng, reflection=reflection)
        shift, boost = rng.normal(0, 1e3, 3), rng.normal(0, 500, 3)
        moved = with_values(
            ds,
            particle_position=ds["particle_position"].values @ q.T + shift,
            position=ds["position"].values @ q.T + shift,
            particle_velocity=ds["particle_velocity"].values @ q.T + boost,
            velocity=ds["velocity"].values @ q.T + boost,
        )
        assert_same_scalars(compute(moved), base, ds)
    # shuffle the particles within each halo
    order = np.concatenate([o + random_permutation(c, rng) for o, c in zip(offsets, counts, strict=True)])
    shuffled = with_values(
        ds, **{n: ds[n].values[order] for n in ("particle_position", "particle_velocity", "particle_mass")}
    )
    assert_same_scalars(compute(shuffled), base, ds)


@pytest.mark.parametrize("extra", [1.0, 7.3])
def test_invariant_under_changes_of_units(extra):
    """kpc -> Mpc, km/s -> m/s, Msun -> kg (times an arbitrary extra factor): arrays and G rescaled."""
    ds = random_catalog(seed=2)
    a = shell_moment_arrays(ds)
    length, speed, mass = MPC_PER_KPC * extra, MS_PER_KMS / extra, KG_PER_MSUN * extra**2
    scaled = {
        **a,
        "position": a["position"] * length,
        "centre": a["centre"] * length,
        "R200m": a["R200m"] * length,
        "velocity": a["velocity"] * speed,
        "mass": a["mass"] * mass,
        "M200m": a["M200m"] * mass,
    }
    G = G_KPC_KMS2_MSUN * length * speed**2 / mass
    before, after = shell_moments(**a), shell_moments(**scaled, G=G)
    for name in before:  # the normalised moments themselves do not change
        assert relative_error(after[name], before[name]) < RTOL, name
    assert_same_scalars(halo_scalar_array(**scaled, G=G)[0], halo_scalar_array(**a)[0], ds)


def test_units_attributes_are_honoured():
    ds = random_catalog(seed=3)
    relabelled = ds.copy()
    for name, factor, units in (
        ("particle_position", MPC_PER_KPC, "Mpc"),
        ("position", MPC_PER_KPC, "Mpc"),
        ("R200m", MPC_PER_KPC, "Mpc"),
        ("particle_velocity", MS_PER_KMS, "m s^-1"),
        ("particle_mass", KG_PER_MSUN, "kg"),
        ("M200m", KG_PER_MSUN, "kg"),
    ):
        relabelled[name] = (ds[name].dims, ds[name].values * factor, {"units": units})
    assert_same_scalars(compute(relabelled), compute(ds), ds)


# --------------------------------------------------------------------------------------------------
# an independent, plain per-halo reference


def reference_scalars(ds: xr.Dataset, i: int) -> dict[str, float]:
    p = halo_particles(ds, i)
    M, R = float(ds["M200m"].values[i]), float(ds["R200m"].values[i])
    V = np.sqrt(G_KPC_KMS2_MSUN * M / R)
    r = np.array([np.sqrt(xi @ xi) for xi in p["x"]])
    inside = [k for k in range(len(r)) if r[k] < R]
    v_mean = sum(p["m"][k] * p["v"][k] for k in inside) / sum(p["m"][k] for k in inside)
    vec, sym, anti, single = {}, {}, {}, {}
    for n, (lo, hi) in enumerate([(0.0, 0.1), (0.1, 0.4), (0.4, 1.0)]):
        m, X, P = 0.0, np.zeros(3), np.zeros(3)
        XX, VV, XV = np.zeros((3, 3)), np.zeros((3, 3)), np.zeros((3, 3))
        for k in inside:
            if lo <= r[k] / R < hi:
                mk, xk, vk = p["m"][k], p["x"][k], p["v"][k] - v_mean
                m += mk
                X += mk * xk
                P += mk * vk
                XX += mk * np.outer(xk, xk)
                VV += mk * np.outer(vk, vk)
                XV += mk * np.outer(xk, vk)
        single[f"m_{n}"] = m / M
        vec[f"x_{n}"], vec[f"v_{n}"] = X / (M * R), P / (M * V)
        sym[f"xx_{n}"], sym[f"vv_{n}"] = XX / (M * R**2), VV / (M * V**2)
        sym[f"xv+_{n}"] = (XV + XV.T) / 2 / (M * R * V)
        anti[f"xv-_{n}"] = (XV - XV.T) / 2 / (M * R * V)
    for t in ("xx", "vv", "xv+"):
        for n in range(3):
            eig = np.sort(np.linalg.eigvals(sym[f"{t}_{n}"]).real)
            for k in range(3):
                single[f"eig{k + 1}({t})_{n}"] = eig[k]
    out = dict(single)
    vec_order = [f"{a}_{n}" for a in "xv" for n in range(3)]
    for a, b in itertools.combinations_with_replacement(vec_order, 2):
        out[f"{a}.{b}"] = vec[a] @ vec[b]
    sym_order = [f"{t}_{n}" for t in ("xx", "vv", "xv+") for n in range(3)]
    for a, b in itertools.combinations_with_replacement(sym_order, 2):
        out[f"{a}:{b}"] = np.trace(sym[a] @ sym[b])
    for a, b in itertools.combinations_with_replacement([f"xv-_{n}" for n in range(3)], 2):
        out[f"{a}:{b}"] = np.trace(anti[a] @ anti[b].T)
    single_order = ["m_0", "m_1", "m_2"] + [
        f"eig{k}({t})_{n}" for t in ("xx", "vv", "xv+") for n in range(3) for k in (1, 2, 3)
    ]
    for a, b in itertools.combinations_with_replacement(single_order, 2):
        out[f"{a}*{b}"] = single[a] * single[b]
    return out


def test_agrees_with_a_plain_per_halo_loop():
    ds = random_catalog(n_halos=2, seed=4)
    result = halo_scalars(ds, dask_address="synchronous")
    for i in range(2):
        expected = reference_scalars(ds, i)
        assert set(expected) == set(SCALAR_NAMES)
        got = result["scalars"].isel(halo=i).sel(scalar=list(expected)).values
        np.testing.assert_allclose(got, list(expected.values()), rtol=1e-9, atol=1e-15)


# --------------------------------------------------------------------------------------------------
# shells, normalisation, eigenvalue order, empty shells, too few particles


def hand_made_halo(extra_outside: bool = True) -> xr.Dataset:
    """R = 200 kpc, M = 1e12 Msun; particles of 1e9 Msun at chosen radii (see the test)."""
    u = 100.0
    rows = [((10, 0, 0), (0, 0, 0)), ((-10, 0, 0), (0, 0, 0)), ((0, 10, 0), (0, 0, 0))]
    rows += [((0, -10, 0), (0, 0, 0)), ((0, 0, 10), (0, 0, 0)), ((0, 0, -10), (0, 0, 0))]
    rows += [((20, 0, 0), (0, u, 0)), ((-20, 0, 0), (0, -u, 0))]  # r = 0.1 R exactly: shell 1
    rows += [((0, 100, 0), (0, 0, 0)), ((0, 0, 150), (0, 0, 0))]  # shell 2
    if extra_outside:
        rows += [((200, 0, 0), (1e4, 0, 0)), ((0, 0, -300), (0, 0, 5e3))]  # r >= R: ignored
    centre, bulk = np.array([1e3, -2e3, 5e2]), np.array([10.0, 20.0, 30.0])
    x = np.array([r[0] for r in rows], dtype=float)
    v = np.array([r[1] for r in rows], dtype=float)
    return catalog_dataset(
        {
            "halo_id": [7],
            "M200m": [1e12],
            "R200m": [200.0],
            "position": centre[None],
            "velocity": bulk[None],
            "particle_count": [len(rows)],
        },
        {"particle_position": x + centre, "particle_velocity": v + bulk, "particle_mass": np.full(len(rows), 1e9)},
        source_format="synthetic",
    )


def test_shells_normalisation_and_eigenvalue_order():
    result = halo_scalars(hand_made_halo(), dask_address="synchronous")
    s = dict(zip(SCALAR_NAMES, result["scalars"].values[0], strict=True))
    assert int(result["particles_within"][0]) == 10
    M, R, mp, u = 1e12, 200.0, 1e9, 100.0
    V = np.sqrt(G_KPC_KMS2_MSUN * M / R)
    a = 20 * u * mp / (M * R * V)
    expected = {
        "m_0": 6 * mp / M,
        "m_1": 2 * mp / M,
        "m_2": 2 * mp / M,
        "eig1(xx)_0": 200 * mp / (M * R**2),
        "eig3(xx)_0": 200 * mp / (M * R**2),
        "eig1(xx)_1": 0.0,
        "eig3(xx)_1": 800 * mp / (M * R**2),
        "eig1(xx)_2": 0.0,  # ascending: 0 <= 1e4 <= 22500 (in mp / (M R^2))
        "eig2(xx)_2": 1e4 * mp / (M * R**2),
        "eig3(xx)_2": 22500 * mp / (M * R**2),
        "eig3(vv)_1": 2 * mp * u**2 / (M * V**2),
        "eig1(xv+)_1": -a,
        "eig2(xv+)_1": 0.0,
        "eig3(xv+)_1": a,
        "xv-_1:xv-_1": 2 * a**2,  # trace(A A^T): non-negative
        "xv-_0:xv-_0": 0.0,
        "x_1.x_1": 0.0,
        "v_1.v_1": 0.0,
        "x_2.x_2": (100**2 + 150**2) * (mp / (M * R)) ** 2,
        "xx_1:xx_2": 0.0,
        "xx_2:xx_2": (1e8 + 22500**2) * (mp / (M * R**2)) ** 2,
        "m_0*eig3(xx)_2": 6 * mp / M * 22500 * mp / (M * R**2),
    }
    for name, value in expected.items():
        assert s[name] == pytest.approx(value, rel=1e-12, abs=1e-13 * max(abs(value), 1e-6)), name
    singles = np.array([s[n] for n in scalar_names("single")])
    eig = singles[3:].reshape(9, 3)
    assert (np.diff(eig, axis=1) >= 0).all()
    # the particles at and beyond R200m change nothing
    np.testing.assert_array_equal(
        result["scalars"].values, halo_scalars(hand_made_halo(False), dask_address="synchronous")["scalars"].values
    )


def test_empty_shells_give_zeros():
    ds = random_catalog(n_halos=2, seed=5)
    x = ds["particle_position"].values - np.repeat(ds["position"].values, ds["particle_count"].values, axis=0)
    R = np.repeat(ds["R200m"].values, ds["particle_count"].values)
    r = np.linalg.norm(x, axis=1)
    # push every inner particle out to 0.2 R: shell 0 becomes empty
    pushed = np.where((r < 0.1 * R)[:, None], x * (0.2 * R / r)[:, None], x)
    emptied = with_values(ds, particle_position=pushed + (ds["particle_position"].values - x))
    scalars = compute(emptied)
    assert np.isfinite(scalars).all()
    inner = [i for i, n in enumerate(SCALAR_NAMES) if re.search(r"_0(?![0-9])", n)]
    assert len(inner) > 100
    np.testing.assert_array_equal(scalars[:, inner], 0.0)
    assert (scalars[:, SCALAR_NAMES.index("m_1")] > 0).all()


def test_too_few_particles_names_the_halo_or_marks_it():
    ds = hand_made_halo()
    good = random_catalog(n_halos=1, seed=6)
    both = xr.concat([good.drop_dims("particle"), ds.drop_dims("particle")], "halo")
    parts = xr.concat([good.drop_dims("halo"), ds.drop_dims("halo")], "particle")
    both = catalog_dataset(
        {n: both[n].values for n in ("halo_id", "M200m", "R200m", "position", "velocity", "particle_count")},
        {n: parts[n].values for n in ("particle_position", "particle_velocity", "particle_mass")},
        source_format="synthetic",
    )
    with pytest.raises(HaloScalarsError, match=r"fewer than 11 particles within R200m: halo_id 7 \(10\)"):
        halo_scalars(both, dask_address="synchronous", min_particles=11)
    marked = halo_scalars(both, dask_address="synchronous", min_particles=11, too_few="mark")
    assert marked["valid"].values.tolist() == [True, False]
    assert np.isnan(marked["scalars"].values[1]).all()
    assert np.isfinite(marked["scalars"].values[0]).all()


# --------------------------------------------------------------------------------------------------
# dask: chunking, lazy files, a local cluster


def test_chunking_and_lazy_files_do_not_change_the_result(tmp_path):
    ds = random_catalog(n_halos=5, seed=7)
    whole = halo_scalars(ds, chunk_halos=5, dask_address="threads")
    single = halo_scalars(ds, chunk_halos=1, dask_address="threads")
    np.testing.assert_array_equal(single["scalars"].values, whole["scalars"].values)
    assert whole["halo_id"].values.tolist() == [100, 101, 102, 103, 104]
    assert whole["scalars"].attrs["units"] == "1" and whole["scalars"].dtype == np.float64
    path = tmp_path / "halos.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf", chunks={"particle": 37}) as lazy:
        streamed = halo_scalars(lazy, chunk_halos=2, dask_address="threads")
    np.testing.assert_array_equal(streamed["scalars"].values, whole["scalars"].values)
    assert streamed["scalar_kind"].values.tolist() == list(SCALAR_KINDS)
    with xr.open_dataset(path, engine="h5netcdf") as lazy:  # no dask chunks: each task reads its own rows
        tasks, _ = _tasks(lazy, 2, 10, "raise")
        assert not lazy["particle_position"].variable._in_memory  # planning read no particles
        assert len(dict(dask.delayed(list)(tasks).__dask_graph__())) == len(tasks) + 1  # no read tasks
        read_in_tasks = halo_scalars(lazy, chunk_halos=2, dask_address="threads")
    np.testing.assert_array_equal(read_in_tasks["scalars"].values, whole["scalars"].values)


def test_blocks_read_within_a_task_give_the_same_scalars(tmp_path, monkeypatch):
    """A task reads its rows block by block: a file in other units, blocks smaller than a halo and
    blocks of several halos give the in-memory scalars exactly, and no block is larger than it must be."""
    ds = random_catalog(n_halos=6, seed=9)
    expected = compute(ds)
    relabelled = ds.copy()
    for name, factor, units in (
        ("particle_position", MPC_PER_KPC, "Mpc"),
        ("particle_velocity", MS_PER_KMS, "m s^-1"),
        ("particle_mass", KG_PER_MSUN, "kg"),
    ):
        relabelled[name] = (ds[name].dims, ds[name].values * factor, {"units": units})
    path = tmp_path / "halos.nc"
    relabelled.to_netcdf(path, engine="h5netcdf")
    counts = ds["particle_count"].values
    budget = int(counts.max()) + int(counts.min()) - 1  # some blocks hold two halos, some one
    blocks = []
    accumulate = scalars_module._accumulate

    def spy(position, *args):
        blocks.append(len(position))
        return accumulate(position, *args)

    monkeypatch.setattr(scalars_module, "BLOCK_PARTICLES", budget)
    monkeypatch.setattr(scalars_module, "_accumulate", spy)
    with xr.open_dataset(path, engine="h5netcdf") as lazy:
        got = halo_scalars(lazy, chunk_halos=4, dask_address="synchronous")
    assert sum(blocks) == counts.sum() and len(blocks) > 2  # both tasks split into blocks
    assert all(b <= budget for b in blocks)
    assert_same_scalars(got["scalars"].values, expected, ds)
    # in memory, in the catalog's own units, the blocks change nothing at all
    blocks.clear()
    in_memory = halo_scalars(ds, chunk_halos=4, dask_address="synchronous")["scalars"].values
    assert len(blocks) > 2
    np.testing.assert_array_equal(in_memory, expected)


def test_a_local_cluster_gives_the_same_scalars():
    ds = random_catalog(n_halos=3, seed=8)
    expected = compute(ds)
    got = halo_scalars(ds, chunk_halos=2, dask_address="local", n_workers=1)["scalars"].values
    np.testing.assert_array_equal(got, expected)


def test_scalars_from_moments_on_torch_match_numpy():
    torch = pytest.importorskip("torch")
    moments = shell_moments(**shell_moment_arrays(random_catalog(n_halos=2, seed=9)))
    moments.pop("particles_within")
    expected = scalars_from_moments(moments)
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in moments.items()}
    got = scalars_from_moments(tensors)
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-12, atol=1e-15)
    got.sum().backward()
    assert torch.isfinite(tensors["x"].grad).all()


# --------------------------------------------------------------------------------------------------
# the compiled kernel against the former bincount implementation


def bincount_shell_moments(
    position: np.ndarray,
    velocity: np.ndarray,
    mass: np.ndarray,
    counts: np.ndarray,
    centre: np.ndarray,
    M200m: np.ndarray,
    R200m: np.ndarray,
    *,
    G: float = G_KPC_KMS2_MSUN,
) -> dict[str, np.ndarray]:
    """The former implementation (about 25 float64 bincount passes), kept as the kernel's reference."""
    counts = np.asarray(counts, dtype=np.int64)
    n_halos = counts.size
    M = np.asarray(M200m, dtype=np.float64)
    R = np.asarray(R200m, dtype=np.float64)
    halo = np.repeat(np.arange(n_halos), counts)
    x = np.asarray(position, dtype=np.float64) - np.asarray(centre, dtype=np.float64)[halo]
    s = np.sqrt(np.einsum("ij,ij->i", x, x)) / R[halo]
    inside = s < SHELL_EDGES[-1]
    x, s, halo = x[inside], s[inside], halo[inside]
    v = np.asarray(velocity, dtype=np.float64)[inside]
    m = np.asarray(mass, dtype=np.float64)[inside]
    within = np.bincount(halo, minlength=n_halos)

    # velocities relative to the mass-weighted mean of the particles within R200m
    mass_in = np.bincount(halo, m, minlength=n_halos)
    safe = np.where(mass_in > 0, mass_in, 1.0)  # a halo with nothing inside keeps zeros
    mean_v = np.stack([np.bincount(halo, m * v[:, k], minlength=n_halos) for k in range(3)], -1) / safe[:, None]
    v = v - mean_v[halo]

    shell = np.searchsorted(np.asarray(SHELL_EDGES[1:-1]), s, side="right")  # half-open [a, b)
    group = halo * N_SHELLS + shell
    n_groups = n_halos * N_SHELLS

    def total(weights: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights, minlength=n_groups).reshape(n_halos, N_SHELLS)

    mx, mv = m[:, None] * x, m[:, None] * v
    out_x = np.stack([total(mx[:, a]) for a in range(3)], -1)
    out_v = np.stack([total(mv[:, a]) for a in range(3)], -1)
    xx = np.empty((n_halos, N_SHELLS, 3, 3))
    vv = np.empty((n_halos, N_SHELLS, 3, 3))
    xv = np.empty((n_halos, N_SHELLS, 3, 3))
    for a in range(3):
        for b in range(3):
            xv[..., a, b] = total(mx[:, a] * v[:, b])
            if b >= a:  # exactly symmetric by construction
                xx[..., a, b] = xx[..., b, a] = total(mx[:, a] * x[:, b])
                vv[..., a, b] = vv[..., b, a] = total(mv[:, a] * v[:, b])

    V = np.sqrt(G * M / R)
    per = (slice(None), None)  # broadcast a per-halo factor over shells
    vec = (slice(None), None, None)
    ten = (slice(None), None, None, None)
    xv_t = np.swapaxes(xv, -1, -2)
    return {
        "m": total(m) / M[per],
        "x": out_x / (M * R)[vec],
        "v": out_v / (M * V)[vec],
        "xx": xx / (M * R**2)[ten],
        "vv": vv / (M * V**2)[ten],
        "xv+": 0.5 * (xv + xv_t) / (M * R * V)[ten],
        "xv-": 0.5 * (xv - xv_t) / (M * R * V)[ten],
        "particles_within": within,
    }


def kernel_cases():
    """Random halos, and the awkward ones: empty shells, one particle, none, huge and tiny coordinates."""
    rng = np.random.default_rng(11)
    for seed in range(3):
        yield f"random-{seed}", shell_moment_arrays(random_catalog(n_halos=5, seed=20 + seed))
    counts = np.array([0, 1, 1, 2, 40, 3])
    n = counts.sum()
    R = np.array([100.0, 100.0, 100.0, 50.0, 200.0, 10.0])
    centre = rng.uniform(-1e3, 1e3, (6, 3))
    halo = np.repeat(np.arange(6), counts)
    unit = rng.normal(size=(n, 3))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    s = rng.uniform(0, 1.3, n)
    s[counts[0]] = 0.05  # the single particle of halo 1: shell 0 (shells 1 and 2 empty)
    s[counts[:2].sum()] = 1.0  # halo 2's only particle sits at R200m: nothing within
    s[counts[:4].sum() : counts[:5].sum()] = rng.uniform(0.4, 0.99, 40)  # shells 0 and 1 empty
    position = centre[halo] + unit * (s * R[halo])[:, None]
    centre[3] = np.round(centre[3])  # halo 3: one particle on each inner shell edge, exactly
    position[counts[:3].sum() : counts[:4].sum()] = centre[3] + np.array([[5.0, 0, 0], [0, -20.0, 0]])
    base = {
        "position": position,
        "velocity": rng.normal(0, 200, (n, 3)) + 1e3,
        "mass": rng.uniform(0.5, 2.0, n) * 1e8,
        "counts": counts,
        "centre": centre,
        "M200m": 10 ** rng.uniform(11, 13, 6),
        "R200m": R,
    }
    yield "edge-cases", base
    for name, length in (("huge", 1e15), ("tiny", 1e-15)):
        scaled = {k: v * length if k in ("position", "centre", "R200m") else v for k, v in base.items()}
        yield name, scaled
    far = shell_moment_arrays(random_catalog(n_halos=3, seed=30))
    shift = 1e9  # coordinates far from the origin: x = position - centre loses digits in both the same way
    yield "far-from-origin", {**far, "position": far["position"] + shift, "centre": far["centre"] + shift}
    a = shell_moment_arrays(random_catalog(n_halos=4, seed=31))
    yield "float32", {**a, **{k: a[k].astype(np.float32) for k in ("position", "velocity", "mass")}}


@pytest.mark.parametrize("name,case", list(kernel_cases()), ids=[name for name, _ in kernel_cases()])
def test_the_kernel_matches_the_former_bincount_moments(name, case):
    got = shell_moments(**case)
    expected = bincount_shell_moments(**case)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].shape == value.shape and got[key].dtype == value.dtype, key
        np.testing.assert_allclose(got[key], value, rtol=1e-12, atol=0, err_msg=f"{name}: {key}")
    if name == "edge-cases":
        assert got["particles_within"].tolist() == [0, 1, 0, 2, 40, int(got["particles_within"][5])]
        assert (got["m"][1, 1:] == 0).all() and (got["m"][4, :2] == 0).all()
        assert (got["m"][3] > 0).tolist() == [False, True, True]  # r = 0.1 R and r = 0.4 R: half-open shells
    if name == "float32":  # read as stored: the same as converting to float64 first
        wide = {
            k: np.asarray(v, dtype=np.float64) if k in ("position", "velocity", "mass") else v for k, v in case.items()
        }
        for key, value in shell_moments(**wide).items():
            np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_the_kernel_checks_its_inputs():
    a = shell_moment_arrays(random_catalog(n_halos=2, seed=32))
    with pytest.raises(ValueError, match="position must be shaped"):
        shell_moments(**{**a, "position": a["position"][:-1]})
    with pytest.raises(ValueError, match="non-negative"):
        shell_moments(**{**a, "counts": -a["counts"]})
    empty = shell_moments(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), [], np.zeros((0, 3)), [], [])
    assert empty["m"].shape == (0, 3) and empty["xv-"].shape == (0, 3, 3, 3)
