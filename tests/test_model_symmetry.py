"""Every model of every system has exactly the symmetry its system declares, and every baseline fails it.

The checks read what each model declares it reads and returns (its ``ModelIO``: ``model.io``, or
``surrogates.halos.runs.model_io`` for the halo models, whose inputs are stored with them), and draw
random group elements of the system's group and random changes of every base unit from it. A model
built to respect the symmetry must pass to 1e-10 (relative, float64); a baseline, which does not
promise it, must fail by a clear margin, which shows the check can fail. The halo models all promise
their symmetry, so two test-only controls (a scalars model fed one non-invariant column) play the
baselines' part there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cache, partial
from typing import Any

import fit_examples
import numpy as np
import pytest
import torch
import xarray as xr

from pipeline.declared.data import checked_data
from pipeline.declared.design import conditions_on_data
from pipeline.model_io import ModelIO
from pipeline.model_symmetry import measure_equivariance, measure_units_equivariance
from pipeline.symmetry import (
    MODEL_RTOL,
    SymmetryError,
    assert_equivariant,
    assert_units_equivariant,
)
from sims.declaration import find_system
from surrogates.artifacts import registered_models
from surrogates.declared.models import METHODS, DeclaredSurrogate, method_refusal
from surrogates.halos import runs as hr
from surrogates.halos.models import GaussianMLP, double_power_law
from surrogates.pendulum import models as pm
from surrogates.pendulum import runs as pr
from surrogates.rietkerk import discovery as rd
from surrogates.rietkerk import runs as sr

HIDDEN = (16, 16)
FIT_SAMPLES = 48
FAILS_BY = 1e-3  # a baseline's error must exceed this: a failure by a clear margin, not round-off


@dataclasses.dataclass(frozen=True)
class Case:
    """One model of one system: how to build a tiny untrained one, and what each check must give
    (True: passes, False: fails; ``group`` None where the system declares no group)."""

    system: str
    model: str
    build: Callable[[], tuple[Any, ModelIO]]
    group: bool | None
    units: bool
    control: bool = False  # a test-only negative control, not a model of the project
    data: Callable[[], list[Any]] | None = None  # inputs to check on, where random ones are off the data's scale

    @property
    def id(self) -> str:
        return f"{self.system}/{self.model}"


# -- pendulum -------------------------------------------------------------------------------------


def _pendulum(name: str) -> Callable[[], tuple[Any, ModelIO]]:
    def build() -> tuple[Any, ModelIO]:
        torch.manual_seed(0)
        model = pm.build_model(name, hidden=HIDDEN).double()
        model.fit_inputs(*model.io.as_arrays(model.io.sample(FIT_SAMPLES, np.random.default_rng(1))))
        return model.eval(), model.io

    return build


PENDULUM_MODELS = list(
    dict.fromkeys(name for protocol in pr.MODELS_BY_PROTOCOL for name in pr.protocol_models(protocol))
)
PENDULUM_EXPECTED = {  # (O(3), units)
    "scalar-hnn": (True, False),
    "scalar-node": (True, False),
    "mlp-hnn": (False, False),
    "mlp-node": (False, False),
    "dimensional-hnn": (True, False),
    "dimensionless-hnn": (True, True),
    "mlp-hnn-augment": (False, False),  # approximate, and untrained here
    "mlp-hnn-penalty": (False, False),
    "relaxed-hnn": (False, False),
    # the units protocol's approximate units methods: O(3)-exact (invariant scalars), not units
    "dimensional-hnn-units-augment": (True, False),
    "relaxed-units-hnn": (True, False),
    "emlp-hnn-o3": (True, False),
    # built for subgroups of O(3) that fix gravity's axis (tests/surrogates/test_emlp.py checks those)
    "emlp-hnn-o2": (False, False),
    "emlp-hnn-so2": (False, False),
    "emlp-hnn-d2": (False, False),
    "emlp-hnn-d6": (False, False),
}


# -- rietkerk -------------------------------------------------------------------------------------


def _emulator(kind: str) -> Callable[[], tuple[Any, ModelIO]]:
    def build() -> tuple[Any, ModelIO]:
        torch.manual_seed(0)
        model = sr.EMULATORS[kind](hidden=HIDDEN).double()
        (parameters,) = model.io.as_arrays(model.io.sample(FIT_SAMPLES, np.random.default_rng(1)))
        x = sr.pi_of_parameters(parameters) if kind == "pi" else parameters
        model.fit(x, torch.randn(FIT_SAMPLES, len(sr.TARGETS), dtype=torch.float64))
        return model.eval(), model.io

    return build


def _reaction_mlp() -> tuple[Any, ModelIO]:
    torch.manual_seed(0)
    model = rd.ReactionMLP(hidden=HIDDEN).double()
    rng = np.random.default_rng(1)
    model.fit_scales(torch.as_tensor(rng.uniform(0.1, 3.0, (FIT_SAMPLES, 4))), torch.randn(FIT_SAMPLES, 3))
    return model.eval(), model.io


# -- halos ----------------------------------------------------------------------------------------


def _halo_design(model: str) -> tuple[np.ndarray, np.ndarray]:
    """Features of random halos for the normalisation of a halo model, and targets near a relation."""
    rng = np.random.default_rng(1)
    variables = hr.input_variables(model, xr.Dataset(attrs={"global_source": "particles"}))
    if "catalog" in variables:  # the catalog model reads a halo finder's properties, not particles
        features = hr.features_of_catalog(*hr.sample_catalog_halos(FIT_SAMPLES, rng))
    else:
        features = hr.features_of_particles(*hr.sample_halos(FIT_SAMPLES, rng))
    x = hr.design_matrix(features, variables)
    y = double_power_law(x[:, 0], -1.6, 11.7, 1.3, 0.6) + 0.1 * rng.normal(size=x.shape[0])
    return x, y


def _asinh_mlp(model: str, seed: int = 0) -> hr.AsinhGaussianMLP:
    x, y = _halo_design(model)
    torch.manual_seed(seed)
    n_in = x.shape[1]
    module = hr.AsinhGaussianMLP(
        n_in, HIDDEN, asinh_columns=list(range(1, n_in)) if model == "scalars" else [], relation_baseline=True
    ).double()
    module.fit_scales(torch.as_tensor(x), torch.as_tensor(y))
    return module.eval()


def _halo(model: str) -> Callable[[], tuple[Any, ModelIO]]:
    def build() -> tuple[Any, ModelIO]:
        if model == "mass-only":
            x, y = _halo_design(model)
            module = hr.MassOnlyRelation.from_relation(hr.StellarToHaloRelation.fit(x[:, 0], y))
        elif model == "scalars-ensemble":
            members = [_asinh_mlp("scalars", seed) for seed in range(3)]
            module = hr.GaussianEnsemble([{"class": "halo-gaussian-mlp-asinh", "config": members[0].config}] * 3)
            module = module.double()
            for member, source in zip(module.members, members, strict=True):
                member.load_state_dict(source.state_dict())
        else:
            module = _asinh_mlp(model)
        return module.eval(), hr.model_io(model)

    return build


def _plain_gaussian_mlp() -> tuple[Any, ModelIO]:
    """The plain ``GaussianMLP`` (``surrogates.halos.models.train_gaussian_mlp``'s default) on the scalars."""
    x, y = _halo_design("scalars")
    torch.manual_seed(0)
    module = GaussianMLP(x.shape[1], HIDDEN).double()
    module.fit_scales(torch.as_tensor(x), torch.as_tensor(y))
    return module.eval(), hr.model_io("scalars")


def _control(broken: str) -> Callable[[], tuple[Any, ModelIO]]:
    """The scalars model fed one column that breaks the symmetry: ``rotation``, the first particle's x
    offset from its halo's centre over R200m (dimensionless, not rotation-invariant); ``units``,
    log10 M200m taken in whatever mass unit the numbers are in (rotation-invariant, not units-invariant)."""

    def build() -> tuple[Any, ModelIO]:
        module, io = _halo("scalars")()
        variables = hr.input_variables("scalars", xr.Dataset())

        def apply(model: Any, *arrays: np.ndarray) -> Any:
            position, _, _, counts, centre, m200, r200, g, msun = arrays
            x = hr.design_matrix(hr.features_of_particles(*arrays), variables)
            if broken == "rotation":
                first = np.concatenate([[0], np.cumsum(counts)[:-1]])
                x[:, 1] = (position[first, 0] - centre[:, 0]) / r200
            else:
                x[:, 0] = np.log10(m200)
            return model(torch.as_tensor(x))

        return module, io.replace(apply=apply)

    return build


HALO_MODELS = [*hr.MODELS, "scalars-ensemble"]


# -- declared systems (eqs fit) -------------------------------------------------------------------


@cache
def _example_data(example: str) -> xr.Dataset:
    """An example's data as ``eqs fit`` reads them, made once for all of its cases."""
    return checked_data(fit_examples.dataset(example, FIT_SAMPLES), fit_examples.declaration(example), example)


def _example_inputs(example: str) -> list[Any]:
    """A few samples of an example's inputs in declared order: its quantities are at their own scales
    (a torque of 5e-4 N m), which random inputs of order one are far from."""
    data = _example_data(example)
    return [data[q.name].values[:8] for q in fit_examples.declaration(example).inputs_only().quantities]


def _declared(example: str, target: str, method: str) -> Callable[[], tuple[Any, ModelIO]]:
    """A surrogate of an example system of ``eqs fit``, normalised on a few samples of its data."""

    def build() -> tuple[Any, ModelIO]:
        decl = fit_examples.declaration(example)
        data = _example_data(example)
        values = {q.name: data[q.name].values for q in decl.inputs_only().quantities}
        conditions = conditions_on_data(decl, values)
        set_size = data.sizes[decl.permutation.dim] if decl.permutation is not None else None
        torch.manual_seed(0)
        model = DeclaredSurrogate(
            decl.to_dict(), target, method, HIDDEN, gaussian=target in decl.fit.noisy,
            signed=list(conditions.signed), zero=list(conditions.zero), set_size=set_size,
        ).double()  # fmt: skip
        model.fit_normalisation(values, data[target].values)
        return model.eval(), model.io

    return build


DECLARED_EXPECTED = {  # (group, units); augment, penalty and relaxed are approximate, and untrained here
    "pi": (True, True),
    "scalars": (True, False),
    "raw": (False, False),
    "frame": (True, False),
    "canonical": (True, False),
    "augment": (False, False),
    "penalty": (False, False),
    "e3nn": (True, False),
    "emlp": (True, False),
    "relaxed": (False, False),
}
DECLARED_SYSTEMS = {fit_examples.declaration(name).name: name for name in fit_examples.NAMES}


def cases() -> list[Case]:
    """Every model of every system, and the controls."""
    out = [Case("spring_pendulum", name, _pendulum(name), *PENDULUM_EXPECTED[name]) for name in PENDULUM_MODELS]
    out += [
        Case("rietkerk", "pi-emulator", _emulator("pi"), None, True),
        Case("rietkerk", "dimensional-emulator", _emulator("dimensional"), None, False),
        Case("rietkerk", "reaction-mlp", _reaction_mlp, None, True),
    ]
    out += [Case("halos", name, _halo(name), True, True) for name in HALO_MODELS]
    for system, example in DECLARED_SYSTEMS.items():
        decl = fit_examples.declaration(example)
        for target in (q.name for q in decl.quantities if q.role.value == "target"):
            out += [
                Case(
                    system,
                    f"{target}-{method}",
                    _declared(example, target, method),
                    *expected,
                    data=partial(_example_inputs, example),
                )
                for method, expected in DECLARED_EXPECTED.items()
                if method_refusal(method, decl) is None
            ]
    out += [
        Case("halos", "scalars-plain-gaussian-mlp", _plain_gaussian_mlp, True, True),
        Case("halos", "control-rotation", _control("rotation"), False, True, control=True),
        Case("halos", "control-units", _control("units"), True, False, control=True),
    ]
    return out


CASES = cases()
CHECKS = [(case, check) for case in CASES for check in ("group", "units") if check == "units" or case.group is not None]


def test_every_model_of_every_system_is_covered():
    covered = {case.model for case in CASES if case.system == "spring_pendulum"}
    assert covered == set(pm.MODELS) == set(PENDULUM_MODELS)
    assert {f"{kind}-emulator" for kind in sr.EMULATORS} <= {case.model for case in CASES}
    assert set(HALO_MODELS) <= {case.model for case in CASES if case.system == "halos"}
    declared = {case.model.rsplit("-", 1)[1] for case in CASES if case.system in DECLARED_SYSTEMS}
    assert declared == set(METHODS) == set(DECLARED_EXPECTED)
    classes = set()
    for case in CASES:
        model, _ = case.build()
        classes.add(type(model))
        classes.update(type(m) for m in getattr(model, "members", []))
    project = {cls for name, cls in registered_models().items() if not name.startswith("test.")}
    assert project <= classes, sorted(c.__name__ for c in project - classes)


@pytest.mark.parametrize("case", [c for c in CASES if not c.control], ids=lambda c: c.id)
def test_each_model_declares_what_its_system_declares(case):
    model, io = case.build()
    assert io.system == case.system
    if case.system == "halos":
        assert io.group == hr.HALO_GROUP and case.group
    else:
        declared = DECLARED_SYSTEMS.get(case.system)
        declaration = fit_examples.declaration(declared) if declared else find_system(case.system)
        assert io.group == declaration.symmetry and io.independent_units == declaration.independent_units
        if case.group is not None:
            assert io.equivariant is case.group
    assert (io.units != "none") is case.units


@pytest.mark.parametrize("case, check", CHECKS, ids=lambda x: x.id if isinstance(x, Case) else x)
def test_each_model_has_exactly_the_declared_symmetry(case, check):
    model, io = case.build()
    expected = case.group if check == "group" else case.units
    measure = measure_equivariance if check == "group" else measure_units_equivariance
    assert_check = assert_equivariant if check == "group" else assert_units_equivariant
    on = {"data": case.data()} if case.data else {}
    if expected:
        report = assert_check(model, io, **on)
        assert report.trials == 8 * len(io.outputs) and report.worst <= MODEL_RTOL
    else:
        with pytest.raises(SymmetryError) as failed:
            assert_check(model, io, **on)
        assert failed.value.report.worst > FAILS_BY
    # the measurement alone says the same, and does not raise
    assert (measure(model, io, **on).worst <= MODEL_RTOL) is expected


def test_a_check_refuses_a_system_without_a_group():
    model, io = _emulator("pi")()
    with pytest.raises(ValueError, match="declares no symmetry group"):
        assert_equivariant(model, io)


# -- the machinery on toy models whose answer is known --------------------------------------------


def _toy_io(group: str, output_kind: str, output_units: str = "m") -> ModelIO:
    """Packed input: a position p (m), a vector v (m s^-1), a tensor T (s) and a scalar a (1); one output."""
    from pipeline.model_io import Port, Slot

    packed = Port("x", (Slot("p", "position", "m"), Slot("v", "vector", "m s^-1"), Slot("T", "tensor", "s"), Slot("a")))
    return ModelIO((packed,), (Port.single("y", output_kind, output_units),), group=group, array="numpy")


def _split(x: np.ndarray, d: int):
    return x[..., :d], x[..., d : 2 * d], x[..., 2 * d : 2 * d + d * d].reshape(*x.shape[:-1], d, d), x[..., -1:]


@pytest.mark.parametrize("group", ["O(3)", "SO(2)", "E(3)", "SE(2)", "O(4)"])
def test_packed_positions_vectors_and_tensors_transform_as_declared(group):
    from pipeline.model_io import space_dim

    d = space_dim(group)

    def displaced(x):  # a position: p + a T v, equivariant under E(d) too (p translates, v and T do not)
        p, v, t, a = _split(x, d)
        return p + a * (t @ v[..., None])[..., 0]

    report = assert_equivariant(displaced, _toy_io(group, "position"))
    assert report.worst < 1e-13
    assert_units_equivariant(displaced, _toy_io(group, "position"))  # m + 1 s m s^-1
    with pytest.raises(SymmetryError):  # the same output declared a vector: wrong under translations
        if group.startswith(("E", "SE")):
            assert_equivariant(displaced, _toy_io(group, "vector"))
        else:  # and a pseudovector under reflections (SO(d) has none: use O(d))
            assert_equivariant(displaced, _toy_io(group.replace("SO", "O"), "pseudovector"))
    with pytest.raises(SymmetryError, match="units equivariance"):
        assert_units_equivariant(displaced, _toy_io(group, "position", "m s^-1"))


def test_lorentz_boosts_and_time_reversal_act_on_declared_vectors():
    from pipeline.model_io import Port, Slot

    io = ModelIO(
        (Port("x", (Slot("u", "vector"), Slot("w", "vector"))),),
        (Port.single("uw", "scalar"),),
        group="O(1,3)",
        array="numpy",
    )
    metric = np.diag([1.0, -1.0, -1.0, -1.0])
    minkowski = lambda x: np.einsum("...i,ij,...j->...", x[..., :4], metric, x[..., 4:])  # noqa: E731
    assert assert_equivariant(minkowski, io).worst < 1e-12
    with pytest.raises(SymmetryError, match=r"O\(1,3\) equivariance"):  # the Euclidean product is not invariant
        assert_equivariant(lambda x: np.einsum("...i,...i->...", x[..., :4], x[..., 4:]), io)


def test_per_sample_changes_of_units_and_named_units():
    from pipeline.model_io import Port

    inputs = (Port.single("m", units="kg"), Port.single("v", "scalar", "m s^-1"))
    io = ModelIO(inputs, (Port.single("p", units="kg m s^-1"),))
    momentum = lambda m, v: m * v  # noqa: E731
    assert assert_units_equivariant(momentum, io, per_sample=True, n=5).worst < 1e-15
    assert assert_units_equivariant(momentum, io, substitutions={"kg": "g", "m": "km"}).trials == 1
    with pytest.raises(SymmetryError):
        assert_units_equivariant(lambda m, v: m * v * v, io, dimensions=("[length]",))
    with pytest.raises(ValueError, match="no quantity of the model carries"):
        assert_units_equivariant(momentum, io, dimensions=("[current]",))


def test_a_subgroup_given_by_generators_is_checked_on_its_own_elements():
    """Rotations about z and the mirror y -> -y keep the z axis: v_z is invariant under them, not under O(3)."""
    from pipeline.matrix_groups import about_z, orthogonal
    from pipeline.model_io import Port

    io = ModelIO((Port.single("v", "vector"),), (Port.single("h", "scalar"),), group="O(3)", array="numpy")
    height = lambda v: v[..., 2] + v[..., 2] ** 3  # noqa: E731
    assert measure_equivariance(height, io, group=about_z("O(2)")).worst < 1e-14
    assert measure_equivariance(height, io).worst > FAILS_BY  # the declared O(3) moves the z axis
    assert measure_equivariance(lambda v: v[..., 0], io, group=about_z("D6")).worst > FAILS_BY
    with pytest.raises(ValueError, match=r"group O\(2\) acts on R\^2, but the model's vectors are in R\^3"):
        measure_equivariance(height, io, group=orthogonal(2))
