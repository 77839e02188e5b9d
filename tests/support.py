"""Test data shared by the test modules: a small registered dataset kind and its sample datasets, a guard against
recomputation, and where the shared real halo catalogs are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from data_catalog import DatasetSchema, VariableSpec, register_schema
from sims.declaration import Kind, Role, find_system

DEMO_KIND = "test.demo"
#: Real halo catalogs written by real halo finders, beside the repository (never copied into it).
REAL_HALOS = Path(__file__).resolve().parents[1].parent / "shared" / "real_halos"

register_schema(
    DatasetSchema(
        kind=DEMO_KIND,
        description="a small dataset for the catalog's own tests",
        variables={
            "x": VariableSpec(dims=("sample", "space"), units="m", dtype="float"),
            "count": VariableSpec(dims=("sample",), units="1", dtype="integer"),
        },
        coords={"space": VariableSpec(dims=("space",), dtype="str")},
    ),
    replace=True,
)


def demo_dataset(seed: int = 0, n: int = 6) -> xr.Dataset:
    """A dataset of kind test.demo exercising every storable dtype."""
    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {
            "x": (("sample", "space"), rng.normal(size=(n, 3)), {"units": "m", "long_name": "position"}),
            "count": ("sample", rng.integers(0, 100, size=n), {"units": "1"}),
            "weight": ("sample", rng.random(n).astype(np.float32), {"units": "kg"}),
            "flag": ("sample", rng.random(n) > 0.5, {"units": "1"}),
            "label": ("sample", np.array([f"item-{i}-é" for i in range(n)])),
            "nan_ok": ("sample", np.where(rng.random(n) > 0.5, np.nan, 1.0), {"units": "s"}),
        },
        coords={
            "sample": ("sample", np.arange(n), {"units": "1"}),
            "space": ["x", "y", "z"],
        },
        attrs={"kind": DEMO_KIND, "comment": "test data", "scales": [1.0, 2.5]},
    )


def __getattr__(name: str):
    # the pendulum's kind on first use: importing the pendulum package imports torch (seconds), which
    # the catalog's tests and their writer processes do not need
    if name == "PENDULUM_RAW_KIND":
        from sims.pendulum import system

        return system.RAW_KIND
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pendulum_dataset(n: int = 40, steps: int = 3, seed: int = 0) -> xr.Dataset:
    """Random states and parameters in the layout of the pendulum declaration (not trajectories)."""
    import sims.pendulum  # noqa: F401  (registers the pendulum's system and its kinds)

    pendulum = find_system("spring_pendulum")
    rng = np.random.default_rng(seed)
    ds = xr.Dataset(coords={"sample": np.arange(n), "time": 0.2 * np.arange(steps)})
    ds.sample.attrs["units"] = "1"
    ds.time.attrs["units"] = "s"
    for q in pendulum.quantities:
        if q.kind is Kind.SCALAR and q.role is Role.PARAMETER:
            ds[q.name] = ("sample", rng.uniform(1, 2, n), {"units": q.units})
    ds["g"] = (("sample", "space"), rng.normal(size=(n, 3)), {"units": "m s^-2"})
    for name in ("q1", "q2", "p1", "p2"):
        ds[name] = (
            ("sample", "time", "space"),
            rng.normal(size=(n, steps, 3)),
            {"units": pendulum.quantity(name).units},
        )
    ds["H"] = (("sample", "time"), rng.uniform(1, 3, (n, steps)), {"units": "J"})
    return ds


def forbid(monkeypatch, targets) -> None:
    """Make each (module, name) of ``targets`` fail if called: a finished step must not be computed again."""

    def recomputed(*args, **kwargs):
        raise AssertionError("a finished step was computed again")

    for module, name in targets:
        monkeypatch.setattr(module, name, recomputed)


def matrix_groups() -> dict:
    """The groups the EMLP tests build layers for, by name: O(3) and SO(3), and the subgroups of O(3) that
    fix the z axis (the pendulum's)."""
    from pipeline.matrix_groups import about_z, orthogonal

    return {
        "O(3)": orthogonal(3),
        "SO(3)": orthogonal(3, proper=True),
        **{name: about_z(name) for name in ("O(2)", "SO(2)", "D2", "D6")},
    }
