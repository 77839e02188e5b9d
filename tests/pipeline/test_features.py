"""Feature extraction over datasets: exact invariance, units equivariance, lazy chunks, clear errors."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr
from support import pendulum_dataset

from pipeline.features import FEATURES_KIND, FeatureError, FeaturePlan, extract, write_features
from pipeline.symmetry import assert_units_equivariant, random_element, relative_error
from pipeline.units import parse
from sims.declaration import DeclarationError, Kind, Quantity, Role, SystemDeclaration, find_system

PENDULUM = find_system("spring_pendulum")
RIETKERK = find_system("rietkerk")
VECTORS = ("g", "q1", "q2", "p1", "p2")


def computed(ds: xr.Dataset, declaration=PENDULUM, **kw) -> xr.Dataset:
    with dask.config.set(scheduler="synchronous"):
        return extract(ds, declaration, **kw).compute()


def test_features_match_a_direct_computation():
    ds = pendulum_dataset()
    f = computed(ds, chunk_size=7)
    assert f.sizes == {"sample": 40, "time": 3, "pi_group": 18}
    np.testing.assert_allclose(f["q1.p2"], (ds.q1 * ds.p2).sum("space").transpose("sample", "time"), rtol=1e-14)
    np.testing.assert_allclose(f["g.g"], (ds.g**2).sum("space"), rtol=1e-14)
    assert f["m1"].dims == ("sample",) and f["pi"].dims == ("sample", "time", "pi_group")
    plan = FeaturePlan(PENDULUM)
    scale = plan.scalings["H"]
    monomial = 1.0
    for q, p in scale.exponents:
        monomial = monomial * ds[q] ** float(p)
    np.testing.assert_allclose(f["H_pi"], (ds.H / monomial).transpose("sample", "time"), rtol=1e-14)
    assert f["scale(H)"].attrs["units"] == "kg m^2 s^-2" and f["pi"].attrs["units"] == "1"


def test_features_are_lazy_and_chunked():
    f = extract(pendulum_dataset(), PENDULUM, chunk_size=8)
    assert isinstance(f["pi"].data, dask.array.Array)
    assert f["pi"].data.chunks[0] == (8, 8, 8, 8, 8)


def test_pi_features_are_exactly_invariant_under_o3():
    ds = pendulum_dataset(seed=1)
    base = computed(ds)
    rng = np.random.default_rng(5)
    for _ in range(4):
        g = random_element("O(3)", rng)
        moved = ds.copy()
        for name in VECTORS:
            moved[name] = ds[name].copy(data=g.act(ds[name].values, "vector"))
        f = computed(moved)
        for var in ("pi", "H_pi", "q1.q2", "g.p1"):
            assert relative_error(f[var].values, base[var].values) <= 1e-12, var


def test_changing_units_leaves_dimensionless_features_unchanged():
    ds = pendulum_dataset(seed=2)
    base = computed(ds)
    # the same systems in grams, centimetres and minutes; pint gives the conversion factors
    spelled = {"kg": "g", "kg s^-2": "g min^-2", "m": "cm", "m s^-2": "cm min^-2", "kg m s^-1": "g cm min^-1"}
    spelled["J"] = "g cm^2 min^-2"
    other = ds.copy()
    for name, var in ds.data_vars.items():
        u = var.attrs["units"]
        other[name] = var * parse(u).to(spelled[u]).magnitude
        other[name].attrs["units"] = spelled[u]
    f = computed(other)
    assert relative_error(f["pi"].values, base["pi"].values) <= 1e-12
    assert relative_error(f["H_pi"].values, base["H_pi"].values) <= 1e-12
    # dimensional outputs come back in the declared units (kg, m, s), whatever the dataset used
    np.testing.assert_allclose(f["m2"], ds.m2, rtol=1e-14)
    np.testing.assert_allclose(f["g.g"], (ds.g**2).sum("space"), rtol=1e-13)
    np.testing.assert_allclose(f["scale(H)"], base["scale(H)"], rtol=1e-13)
    np.testing.assert_allclose(f["q1.p1"], (ds.q1 * ds.p1).sum("space").transpose("sample", "time"), rtol=1e-13)


def test_declared_units_of_different_scales_still_give_dimensionless_groups():
    """x declared in cm and l in m: the group x/l is 1 for x = l; E in erg over k l^2 in SI is 1."""
    decl = SystemDeclaration(
        "mixed",
        (
            Quantity("k", "N m^-1"),
            Quantity("l", "m"),
            Quantity("x", "cm", role=Role.STATE),
            Quantity("E", "erg", role=Role.TARGET),
        ),
    )
    ds = xr.Dataset(
        {
            "k": ("sample", [2.0, 3.0], {"units": "N m^-1"}),
            "l": ("sample", [1.5, 0.5], {"units": "m"}),
            "x": ("sample", [150.0, 50.0], {"units": "cm"}),
            "E": ("sample", [2.0 * 1.5**2 * 1e7, 3.0 * 0.5**2 * 1e7], {"units": "erg"}),
        }
    )
    f = computed(ds, decl)
    assert list(f.pi_group.values) == ["x l^-1"]
    np.testing.assert_allclose(f["pi"].values[:, 0], 1.0, rtol=1e-14)
    np.testing.assert_allclose(f["E_pi"].values, 1.0, rtol=1e-14)
    np.testing.assert_allclose(f["scale(E)"].values, ds.E.values, rtol=1e-14)  # in erg, as declared


def test_plan_compute_is_units_equivariant_for_the_symmetry_helper():
    ds = pendulum_dataset(n=5, steps=1)
    inputs = {name: ds[name].values[:, 0] if "time" in ds[name].dims else ds[name].values for name in ds.data_vars}
    inputs = {k: (v[:, None] if v.ndim == 1 else v) for k, v in inputs.items()}
    units = {q.name: q.units for q in PENDULUM.quantities}
    plan = FeaturePlan(PENDULUM)

    def outputs(**values):
        out = plan.compute(values)
        return out["pi"], out["scale(H)"], out["H_pi"]

    assert_units_equivariant(outputs, inputs, units, ("1", "J", "1"))
    with pytest.raises(AssertionError, match="units equivariance"):
        assert_units_equivariant(lambda **v: v["m1"] * v["l1"], inputs, units, "kg")


def test_so3_systems_add_determinants_that_flip_under_reflections():
    decl = SystemDeclaration(
        "chiral",
        (
            Quantity("a", "m", Kind.VECTOR, Role.STATE),
            Quantity("b", "m", Kind.VECTOR, Role.STATE),
            Quantity("c", "m", Kind.VECTOR, Role.STATE),
        ),
        symmetry="SO(3)",
    )
    rng = np.random.default_rng(0)
    ds = xr.Dataset({n: (("sample", "space"), rng.normal(size=(9, 3)), {"units": "m"}) for n in "abc"})
    f = computed(ds, decl)
    assert "det(a,b,c)" in f
    mirrored = ds.copy()
    for n in "abc":
        mirrored[n] = ds[n] * np.array([1, 1, -1])
    g = computed(mirrored, decl)
    np.testing.assert_allclose(g["det(a,b,c)"], -f["det(a,b,c)"], rtol=1e-14)


def test_lorentz_and_euclidean_systems():
    lorentz = SystemDeclaration(
        "jets",
        (Quantity("p", "GeV", Kind.VECTOR, Role.STATE), Quantity("k", "GeV", Kind.VECTOR, Role.STATE)),
        symmetry="O(1,3)",
    )
    rng = np.random.default_rng(0)
    ds = xr.Dataset({n: (("sample", "component"), rng.normal(size=(6, 4)), {"units": "GeV"}) for n in "pk"})
    with pytest.warns(UserWarning, match="only signed scalars"):  # p.p, k.k may be negative
        f = computed(ds, lorentz)
    eta = np.array([1.0, -1, -1, -1])
    np.testing.assert_allclose(f["p.k"], (ds.p.values * eta * ds.k.values).sum(-1), rtol=1e-14)
    boosted = ds.copy()
    g = random_element("O(1,3)", rng)
    for n in "pk":
        boosted[n] = ds[n].copy(data=g.act(ds[n].values, "vector"))
    with pytest.warns(UserWarning, match="only signed scalars"):
        assert relative_error(computed(boosted, lorentz)["pi"].values, f["pi"].values) <= 1e-12
    points = SystemDeclaration(
        "pair",
        (
            Quantity("x1", "m", Kind.POSITION, Role.STATE),
            Quantity("x2", "m", Kind.POSITION, Role.STATE),
            Quantity("L", "m"),
        ),
        symmetry="E(2)",
    )
    ds2 = xr.Dataset(
        {
            "x1": (("sample", "xy"), rng.normal(size=(5, 2)), {"units": "m"}),
            "x2": (("sample", "xy"), rng.normal(size=(5, 2)), {"units": "m"}),
            "L": ("sample", np.ones(5), {"units": "m"}),
        }
    )
    shifted = ds2.copy()
    shifted["x1"] = ds2.x1 + 3.0
    shifted["x2"] = ds2.x2 + 3.0
    assert relative_error(computed(shifted, points)["pi"].values, computed(ds2, points)["pi"].values) <= 1e-12


def test_field_features_are_invariant_under_grid_symmetries():
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {
            q.name: ("sample", rng.uniform(0.5, 2, 4), {"units": q.units})
            for q in RIETKERK.select(roles=(Role.PARAMETER,))
        }
    )
    for name in ("u", "w", "v"):
        ds[name] = (("sample", "x", "y"), rng.uniform(0, 1, (4, 8, 8)), {"units": RIETKERK.quantity(name).units})
    f = computed(ds, RIETKERK)
    assert {"mean(v)", "std(v)"} <= set(f.data_vars) and f.sizes["pi_group"] == 18
    moved = ds.copy()
    for name in ("u", "w", "v"):
        moved[name] = ds[name].roll(x=3, y=-2).transpose("sample", "y", "x").copy()
        moved[name] = moved[name].rename({"x": "y", "y": "x"})
    g = computed(moved, RIETKERK)
    assert relative_error(g["pi"].values, f["pi"].values) <= 1e-12


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda ds: ds.drop_vars("p2"), "variable 'p2' is missing"),
        (lambda ds: ds.assign(m1=ds.m1.assign_attrs(units="s")), r"variable 'm1'.*cannot be converted to 'kg'"),
        (lambda ds: ds.assign(m2=ds.m2.assign_attrs(units="blorp")), "pint cannot parse units 'blorp'"),
        (
            lambda ds: ds.assign(q1=(("sample", "time", "plane"), ds.q1.values[..., :2], {"units": "m"})),
            r"'q1'.*'plane' has length 2, expected 3",
        ),
        (lambda ds: ds.assign(k1=xr.DataArray(np.ones(40), dims="sample")), "variable 'k1' has no 'units'"),
    ],
)
def test_datasets_that_do_not_match_the_declaration_are_refused(mutate, message):
    with pytest.raises(FeatureError, match=message) as info:
        extract(mutate(pendulum_dataset()), PENDULUM, source="dataset pend@v3")
    assert "pend@v3" in str(info.value)


def test_bad_declarations_for_features():
    with pytest.raises(DeclarationError, match="single position"):
        FeaturePlan(SystemDeclaration("one", (Quantity("x", "m", Kind.POSITION, Role.STATE),), symmetry="E(3)"))
    with pytest.raises(DeclarationError, match=r"target 'T'.*none of them carries \[temperature\]"):
        FeaturePlan(SystemDeclaration("hot", (Quantity("x", "m"), Quantity("T", "K", role=Role.TARGET))))
    with pytest.raises(DeclarationError, match="not scalars"):
        FeaturePlan(
            SystemDeclaration(
                "vec", (Quantity("x", "m", Kind.VECTOR), Quantity("F", "N", Kind.VECTOR, Role.TARGET)), symmetry="O(3)"
            )
        )


def test_write_features_records_the_source_as_parent(catalog):
    ref = catalog.write(pendulum_dataset(), "pend", kind="spring_pendulum.raw")
    with dask.config.set(scheduler="threads"):
        out = write_features(catalog, "pend", PENDULUM, chunk_size=16)
        again = write_features(catalog, ref, PENDULUM, chunk_size=16)
    assert out == again == "pend-features@v1"
    info = catalog.info(out)
    assert info.kind == FEATURES_KIND and info.parents == [ref]
    stored = catalog.open(out)
    np.testing.assert_array_equal(stored["pi"].values, computed(pendulum_dataset())["pi"].values)
    assert list(stored["pi_group"].values)[:2] == ["m2 m1^-1", "k2 k1^-1"]


def test_plan_compute_on_torch_matches_numpy_and_is_differentiable():
    import torch

    ds = pendulum_dataset(n=6, steps=2)
    plan = FeaturePlan(PENDULUM)
    arrays = {}
    for name in ds.data_vars:
        var = ds[name]
        if "time" not in var.dims:
            var = var.expand_dims(time=1, axis=1)
        arrays[name] = var.values
    expected = plan.compute(arrays)
    tensors = {k: torch.tensor(v, requires_grad=k == "q1") for k, v in arrays.items()}
    got = plan.compute(tensors)
    np.testing.assert_allclose(got["pi"].detach().numpy(), np.broadcast_to(expected["pi"], got["pi"].shape), rtol=1e-14)
    got["pi"].sum().backward()
    assert torch.isfinite(tensors["q1"].grad).all() and tensors["q1"].grad.abs().sum() > 0
    rk = FeaturePlan(RIETKERK)
    rng = np.random.default_rng(0)
    values = {q.name: rng.uniform(0.5, 2, (3,)) for q in RIETKERK.select(roles=(Role.PARAMETER,))}
    values.update({n: rng.uniform(0, 1, (3, 5, 5)) for n in ("u", "w", "v")})
    as_torch = rk.compute({k: torch.tensor(v) for k, v in values.items()})
    np.testing.assert_allclose(as_torch["pi"].numpy(), rk.compute(values)["pi"], rtol=1e-14)
