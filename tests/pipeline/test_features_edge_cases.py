"""Feature extraction at the edges: signed scalars, positions in mixed units, layouts, chunking."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr
from support import pendulum_dataset

from pipeline import invariants as inv
from pipeline.features import FeatureError, FeaturePlan, extract
from pipeline.symmetry import assert_equivariant, assert_invariant, assert_permutation_equivariant, relative_error
from sims.declaration import DeclarationError, Kind, Quantity, Role, SystemDeclaration, find_system

P, S, T = Role.PARAMETER, Role.STATE, Role.TARGET


def computed(ds, decl, **kw):
    with dask.config.set(scheduler="synchronous"):
        return extract(ds, decl, **kw).compute()


def test_signed_scalars_are_not_raised_to_fractional_powers():
    decl = SystemDeclaration(
        "push",
        (
            Quantity("m", "kg"),
            Quantity("F", "N", Kind.VECTOR, P),
            Quantity("x0", "m", Kind.VECTOR, P),
            Quantity("t", "s", role=S),
            Quantity("E", "J", role=T),
        ),
        symmetry="O(3)",
    )
    plan = FeaturePlan(decl)
    assert "F.x0" not in plan.analysis.repeating
    for group in (*plan.pi_groups, plan.scalings["E"]):
        assert all(p == 1 for q, p in group.exponents if q == "F.x0"), group.name
    rng = np.random.default_rng(0)
    n = 50
    ds = xr.Dataset(
        {
            "m": ("sample", rng.uniform(1, 2, n), {"units": "kg"}),
            "F": (("sample", "space"), rng.normal(size=(n, 3)), {"units": "N"}),
            "x0": (("sample", "space"), rng.normal(size=(n, 3)), {"units": "m"}),
            "t": ("sample", rng.uniform(1, 2, n), {"units": "s"}),
            "E": ("sample", rng.uniform(1, 2, n), {"units": "J"}),
        }
    )
    f = computed(ds, decl)
    assert (f["F.x0"] < 0).any()
    assert np.isfinite(f["pi"]).all() and (f["scale(E)"] > 0).all()


def test_positions_in_different_units_are_centred_in_common_units():
    decl = SystemDeclaration(
        "pair",
        (Quantity("x1", "m", Kind.POSITION, S), Quantity("x2", "cm", Kind.POSITION, S), Quantity("L", "m")),
        symmetry="E(3)",
    )
    rng = np.random.default_rng(1)
    x1, x2 = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    ds = xr.Dataset(
        {
            "x1": (("sample", "space"), x1, {"units": "m"}),
            "x2": (("sample", "space"), 100 * x2, {"units": "cm"}),
            "L": ("sample", np.ones(6), {"units": "m"}),
        }
    )
    shifted = ds.assign(x1=ds.x1 + 3.0, x2=ds.x2 + 300.0)  # the same 3 m shift
    f = computed(ds, decl)
    assert relative_error(computed(shifted, decl)["pi"].values, f["pi"].values) <= 1e-12
    np.testing.assert_allclose(f["x1.x2"], (((x1 - x2) / 2) * ((x2 - x1) / 2)).sum(-1), rtol=1e-12)
    with pytest.raises(DeclarationError, match="positions must share dimensions"):
        FeaturePlan(
            SystemDeclaration(
                "bad", (Quantity("a", "m", Kind.POSITION, S), Quantity("b", "kg", Kind.POSITION, S)), symmetry="E(2)"
            )
        )


def test_refusals_for_unsupported_or_colliding_declarations():
    with pytest.raises(DeclarationError, match="tensor quantities .T. under O\\(1,3\\)"):
        FeaturePlan(SystemDeclaration("fluid", (Quantity("T", "Pa", Kind.TENSOR, S),), symmetry="O(1,3)"))
    with pytest.raises(DeclarationError, match="collide with feature names \\['pi'\\]"):
        FeaturePlan(SystemDeclaration("circle", (Quantity("pi", "1"), Quantity("r", "m"))))


def test_a_single_run_without_a_sample_dimension():
    single = pendulum_dataset(n=1).isel(sample=0)
    f = computed(single, find_system("spring_pendulum"))
    assert f["m1"].dims == () and f["pi"].dims == ("time", "pi_group")
    np.testing.assert_allclose(f["m1"].values, single.m1.values)


def test_layouts_are_read_by_dimension_name():
    rk = find_system("rietkerk")
    rng = np.random.default_rng(0)
    ds = xr.Dataset({q.name: ("sample", rng.uniform(0.5, 2, 2), {"units": q.units}) for q in rk.select(roles=(P,))})
    for name in ("u", "w", "v"):
        ds[name] = (("sample", "x", "y", "time"), rng.uniform(0, 1, (2, 4, 4, 5)), {"units": rk.quantity(name).units})
    f = computed(ds, rk)
    assert f["mean(v)"].dims == ("sample", "time")
    np.testing.assert_allclose(f["mean(v)"], ds.v.mean(("x", "y")), rtol=1e-14)
    pend = pendulum_dataset(n=5)
    transposed = pend.assign(q1=pend.q1.transpose("space", "time", "sample"))
    np.testing.assert_allclose(
        computed(transposed, find_system("spring_pendulum"))["pi"],
        computed(pend, find_system("spring_pendulum"))["pi"],
        rtol=1e-14,
    )
    odd = ds.rename({"x": "a", "y": "b"}).transpose("sample", "a", "b", "time")
    with pytest.raises(FeatureError, match=r"\['time'\] would be taken as its own \(grid\) dimension"):
        extract(odd, rk)


def test_every_batch_dimension_is_chunked_to_bounded_blocks():
    rk = find_system("rietkerk")
    ds = xr.Dataset({q.name: ("sample", np.ones(3), {"units": q.units}) for q in rk.select(roles=(P,))})
    for name in ("u", "w", "v"):
        field = da.zeros((3, 2000, 128, 128), chunks=(1, 100, 128, 128))
        ds[name] = (("sample", "time", "x", "y"), field, {"units": rk.quantity(name).units})
    f = extract(ds, rk)
    time_chunks = f["mean(v)"].data.chunks[1]
    assert len(time_chunks) > 1
    block_bytes = 3 * max(time_chunks) * 128 * 128 * 8 * max(f["mean(v)"].data.chunks[0])
    assert block_bytes <= 2 * 64 * 2**20


def test_pairwise_sum_of_a_singular_pair_function_is_finite_with_finite_gradients():
    x = torch.tensor(np.random.default_rng(0).normal(size=(4, 3)), requires_grad=True)
    coulomb = lambda a, b: 1 / inv.norm(a - b)  # noqa: E731
    out = inv.pairwise_sum(coulomb, x)
    expected = [
        sum(1 / np.linalg.norm(x.detach().numpy()[i] - x.detach().numpy()[j]) for j in range(4) if j != i)
        for i in range(4)
    ]
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-14)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_the_checks_fail_on_nan_and_on_time_reversal():
    v = np.random.default_rng(0).normal(size=(5, 2, 4))
    with pytest.raises(AssertionError):
        assert_invariant(lambda y: inv.gram(y) * np.nan, [v], ["vector"], group="O(4)")
    with pytest.raises(AssertionError, match="time reversal True"):
        # sign(p^0) p.k is invariant under proper orthochronous transformations only
        assert_invariant(
            lambda y: np.sign(y[:, 0, 0]) * inv.minkowski_gram(y)[:, 0, 1], [v], ["vector"], group="O(1,3)"
        )
    assert_equivariant(lambda y: inv.minkowski_gram(y), [v], ["vector"], "scalar", group="O(1,3)")


def test_a_parameter_position_centred_with_a_state_position_depends_on_both():
    decl = SystemDeclaration(
        "anchor",
        (Quantity("x0", "m", Kind.POSITION, P), Quantity("x1", "m", Kind.POSITION, S), Quantity("L", "m")),
        symmetry="E(3)",
    )
    plan = FeaturePlan(decl)
    assert plan.inputs_of("x0.x0") == ("x0", "x1")
    assert next(s for s in plan.scalars if s.name == "x0.x0").role is S
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {
            "x0": (("sample", "space"), rng.normal(size=(2, 3)), {"units": "m"}),
            "x1": (("sample", "time", "space"), rng.normal(size=(2, 4, 3)), {"units": "m"}),
            "L": ("sample", np.ones(2), {"units": "m"}),
        }
    )
    f = computed(ds, decl)
    assert f["x0.x0"].dims == ("sample", "time")
    half = (ds.x0 - ds.x1) / 2
    np.testing.assert_allclose(f["x0.x0"], (half**2).sum("space").transpose("sample", "time"), rtol=1e-14)


def test_scales_come_without_targets_and_chunking_follows_sample():
    pend = find_system("spring_pendulum")
    ds = pendulum_dataset(n=12).drop_vars("H")
    with pytest.raises(FeatureError, match=r"variable 'H' is missing \(declared as a scalar target"):
        extract(ds, pend)  # a declared target the dataset lacks is an error unless allowed
    f = extract(ds.transpose("time", "sample", "space"), pend, chunk_size=5, allow_missing_targets=True)
    assert "scale(H)" in f and "H_pi" not in f
    assert f["pi"].data.chunks[f["pi"].dims.index("sample")] == (5, 5, 2)
    plan = FeaturePlan(pend)
    out = plan.compute(
        {k: ds[k].values[:, None] if ds[k].ndim == 1 else ds[k].values for k in ds.data_vars if k != "g"}
        | {"g": ds.g.values[:, None]}
    )
    assert "scale(H)" in out and "H_pi" not in out
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        extract(ds, pend, chunk_size=0)


def test_signed_only_dimensions_warn():
    decl = SystemDeclaration(
        "jets", (Quantity("p", "GeV", Kind.VECTOR, S), Quantity("k", "GeV", Kind.VECTOR, S)), symmetry="O(1,3)"
    )
    with pytest.warns(UserWarning, match="only signed scalars"):
        FeaturePlan(decl)


def test_pairwise_sum_on_dask_matches_numpy():
    x = np.random.default_rng(0).normal(size=(6, 5, 3))
    pair = lambda a, b: inv.inner(a, b)[..., None] * b  # noqa: E731
    lazy = inv.pairwise_sum(pair, da.from_array(x, chunks=(2, 5, 3)))
    np.testing.assert_allclose(lazy.compute(), inv.pairwise_sum(pair, x), rtol=1e-14)


def test_permutation_check_never_passes_on_identities_alone():
    pairs = np.random.default_rng(0).normal(size=(3, 2))
    for seed in range(300):
        with pytest.raises(AssertionError):
            assert_permutation_equivariant(lambda y: y[..., 0], [pairs], [-1], None, seed=seed, trials=1)
