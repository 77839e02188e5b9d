"""Galaxy properties from halos, end to end: the four models as catalog artefacts, their training on a
split of a ``halos.features`` dataset, their evaluations and the ranking of the scalars.

Models (each predicts a mean and a sigma per halo, one target at a time):

- ``mass-only``: the fitted stellar-to-halo relation of :mod:`surrogates.halos.models`, stored as the
  registered module :class:`MassOnlyRelation` (its four parameters and scatter are buffers);
- ``global``: a Gaussian MLP on [log10 M200m, the three global properties];
- ``scalars``: a Gaussian MLP on [log10 M200m, the 102 elementary invariant scalars] (the other 465
  are products of pairs of single-shell scalars, which an MLP forms itself: on 20,000 halos the
  products only added noise: sigma68 0.134 against 0.119 dex with the same MLP). Both are stored as
  :class:`AsinhGaussianMLP`. For the scalars model it first maps each scalar to asinh(x / s), s its
  median absolute value on the training halos: the scalars span many decades (products of shell
  moments reach 1e-8 and below, tensor contractions have heavy tails) and take either sign; asinh is
  linear within |x| < s, logarithmic beyond and smooth, so typical values keep their resolution, the
  tails stop dominating the standardisation that follows, and round-off in the scalars stays
  round-off in the predictions. Both MLPs predict the scatter about the stellar-to-halo relation
  fitted to their training halos (without it the scalars MLP, 568 inputs for a few thousand halos,
  fitted the steep mean relation poorly at high mass: 0.23 against 0.16 dex on 4,000 halos);
- ``catalog``: a Gaussian MLP on [log10 M200m, the ten dimensionless catalog properties] (the
  features' ``catalog``: concentration, spin, sigma_v, axis ratios, centre and velocity offsets,
  Vmax, T/|U|, half-mass radius, as a halo finder measures them), stored as
  :class:`AsinhGaussianMLP` without asinh columns, learning the scatter about the fitted relation as
  the others do. It reads no particles: it runs on halo finders' catalogs alone. It is trained and
  evaluated on the halos whose catalog properties were all measured (``catalog_valid``); callers
  predict the others with the mass-only model (``pipeline.halos.features.catalog_inputs_valid``).

Inputs are dimensionless and invariant, so every prediction is invariant to rotations,
reflections, particle permutations and changes of units of the catalog.

:func:`model_io` says so in terms of the catalog's quantities (a ``pipeline.model_io.ModelIO``): a
model reads halos as particles (positions, velocities, masses), centres, M200m and R200m, through
the pipeline's scalars and features (:func:`features_of_particles`), or, the catalog model, as their
catalog properties (:data:`CATALOG_INPUTS`, :func:`features_of_catalog`), and returns (mean, log
sigma), invariant under E(3). Its numbers are in the catalog's canonical units (kpc, km s^-1, Msun); it is
units-invariant once the constants the features depend on are inputs too: the gravitational
constant G of V200m, and the solar mass of log10(M200m / Msun).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from data_catalog import Catalog, parse_ref
from pipeline.halos.evaluation import EVALUATION_KIND, IMPORTANCE_KIND, evaluation_dataset, importance_dataset
from pipeline.halos.features import CATALOG_MODEL_FIELDS, feature_targets, halo_features, split_indices
from pipeline.halos.scalars import G_KPC_KMS2_MSUN, SCALAR_KINDS, SCALAR_NAMES, halo_scalar_array
from pipeline.model_io import ModelIO, Port
from sims.halos.catalog import HALO_UNITS, PARTICLE_UNITS
from surrogates.artifacts import (
    LoadedModel,
    ModelArtifactError,
    load_model,
    model_class,
    register_model,
    save_model,
)
from surrogates.halos.models import (
    GaussianMLP,
    StellarToHaloRelation,
    forward_selection,
    predict_gaussian,
    train_gaussian_mlp,
)
from surrogates.training import TrainConfig, TrainResult

MODELS = ("mass-only", "global", "scalars", "catalog")
SUBSET_MARK = ":"  # "scalars:elementary" reads the scalars whose kind is not "product"
HIDDEN = {"global": (64, 64), "scalars": (64, 64), "catalog": (64, 64)}
# The MLPs learn the scatter about a fitted stellar-to-halo relation (see AsinhGaussianMLP).
RELATION_BASELINE = {"global": True, "scalars": True, "catalog": True}
IMPORTANCE_STEPS = 12
LN10 = float(np.log(10.0))


def double_power_law(log_mass: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """:func:`surrogates.halos.models.double_power_law` in torch: log10 M* at log10(M200m / Msun)."""
    log_norm, log_m1, beta, gamma = params
    u = log_mass - log_m1
    # log10(10^a + 10^b) through logaddexp: no overflow for halos far from M1
    both = torch.logaddexp(-beta * u * LN10, gamma * u * LN10) / LN10
    return np.log10(2.0) + log_norm + log_mass - both


@register_model("halo-mass-only")
class MassOnlyRelation(torch.nn.Module):
    """The fitted double power law log M*(log M200m) and its constant scatter (dex), as buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("params", torch.tensor([-1.5, 11.6, 1.4, 0.6], dtype=torch.float64))
        self.register_buffer("scatter", torch.tensor(0.2, dtype=torch.float64))

    @property
    def config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_relation(cls, relation: StellarToHaloRelation) -> MassOnlyRelation:
        module = cls()
        module.params.copy_(torch.tensor(relation.params, dtype=torch.float64))
        module.scatter.copy_(torch.tensor(relation.scatter, dtype=torch.float64))
        return module

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log sigma (dex) from column 0, log10(M200m / Msun)."""
        mean = double_power_law(x[:, 0], self.params)
        return mean, torch.log(self.scatter).expand_as(mean)


@register_model("halo-gaussian-mlp-asinh")
class AsinhGaussianMLP(GaussianMLP):
    """A :class:`GaussianMLP` whose ``asinh_columns`` enter as asinh(x / s), s fitted on the training rows.

    With ``relation_baseline`` its mean is the stellar-to-halo relation fitted to the training halos
    (column 0: log10 M200m) plus the network's output: the network learns the scatter about the
    relation only, which keeps it from spending its capacity, and its few massive halos, on the
    steep mean relation.
    """

    def __init__(
        self,
        n_in: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "silu",
        asinh_columns: Sequence[int] = (),
        relation_baseline: bool = False,
    ) -> None:
        super().__init__(n_in, hidden, activation)
        self.asinh_columns = [int(c) for c in asinh_columns]
        self.relation_baseline = bool(relation_baseline)
        self.register_buffer("asinh_scale", torch.zeros(self.n_in))  # 0: the column passes unchanged
        self.register_buffer("relation", torch.zeros(4 if self.relation_baseline else 0))

    @property
    def config(self) -> dict[str, Any]:
        return {
            **super().config,
            "asinh_columns": list(self.asinh_columns),
            "relation_baseline": self.relation_baseline,
        }

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        s = self.asinh_scale
        return torch.where(s > 0, torch.asinh(x / torch.where(s > 0, s, torch.ones_like(s))), x)

    def baseline(self, x: torch.Tensor) -> torch.Tensor:
        return double_power_law(x[:, 0], self.relation) if self.relation_baseline else torch.zeros_like(x[:, 0])

    def fit_scales(self, x: torch.Tensor, y: torch.Tensor) -> None:
        scale = torch.zeros_like(self.asinh_scale)
        if self.asinh_columns:
            columns = x[:, self.asinh_columns].abs()
            s = columns.median(0).values
            s = torch.where(s > 0, s, columns.mean(0))
            scale[self.asinh_columns] = torch.where(s > 0, s, torch.ones_like(s)).to(scale)
        self.asinh_scale.copy_(scale)
        if self.relation_baseline:
            fit = StellarToHaloRelation.fit(x[:, 0].detach().cpu().numpy(), y.detach().cpu().numpy())
            self.relation.copy_(torch.tensor(fit.params, dtype=self.relation.dtype))
        super().fit_scales(self.encode(x), y - self.baseline(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_sigma = super().forward(self.encode(x))
        return mean + self.baseline(x), log_sigma


@register_model("halo-gaussian-ensemble")
class GaussianEnsemble(torch.nn.Module):
    """A deep ensemble of Gaussian halo models (same inputs and target, different seeds), as one model.

    Its mean is the mean of the members' means; its sigma is that of their equal-weight Gaussian
    mixture, sqrt(mean of sigma^2 + variance of the means), so the seeds' disagreement widens it.
    ``members`` lists each member's registered class and config (weights come with the state dict).
    """

    def __init__(self, members: Sequence[dict[str, Any]]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        self.specs = [{"class": str(m["class"]), "config": dict(m["config"])} for m in members]
        self.members = torch.nn.ModuleList(model_class(m["class"])(**m["config"]) for m in self.specs)

    @property
    def config(self) -> dict[str, Any]:
        return {"members": self.specs}

    @classmethod
    def of(cls, loaded: Sequence[LoadedModel]) -> GaussianEnsemble:
        """The ensemble of models loaded from the catalog (their weights copied)."""
        ensemble = cls([{"class": m.model_class, "config": m.config} for m in loaded]).to(torch.float64)
        for member, source in zip(ensemble.members, loaded, strict=True):
            member.load_state_dict(source.model.state_dict())  # copies into float64: nothing is rounded
        return ensemble

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        means, log_sigmas = zip(*(member(x) for member in self.members), strict=True)
        mean = torch.stack(means).mean(0)
        variance = torch.exp(2 * torch.stack(log_sigmas)).mean(0) + torch.stack(means).var(0, correction=0)
        return mean, 0.5 * torch.log(variance)


def input_variables(model: str, features: xr.Dataset) -> list[str]:
    """The features variables a model reads, in column order. The global model reads the catalog's
    global properties when the training catalog had them, else those measured from particles."""
    if model == "mass-only":
        return ["log_m200m"]
    if model == "global":
        return ["log_m200m", "global" if features.attrs.get("global_source") == "catalog" else "global_particles"]
    if model == "scalars":
        return ["log_m200m", f"scalars{SUBSET_MARK}elementary"]
    if model == "catalog":
        return ["log_m200m", "catalog"]
    raise ValueError(f"unknown halo model {model!r}; choose from {MODELS}")


def design_matrix(features: xr.Dataset, variables: Sequence[str], *, where: str = "features") -> np.ndarray:
    """(halo, columns) float64: the named variables side by side (1-d ones as one column)."""
    if "global" in variables and features.attrs.get("global_source") != "catalog":
        raise ValueError(
            f"{where}: this model was trained on a catalog's own concentration, spin and sigma_v, which this "
            "catalog lacks (global_source = particles); use a model trained on particle-derived global "
            "properties or the scalars model"
        )
    if "catalog" in variables and "catalog" not in features:
        raise ValueError(
            f"{where}: this model reads the halo finder's catalog properties ({', '.join(CATALOG_MODEL_FIELDS)}), "
            "which this catalog lacks (no 'catalog' features); use the mass-only, global or scalars model"
        )
    missing = [v for v in variables if v.split(SUBSET_MARK)[0] not in features]
    if missing:
        raise ValueError(f"{where}: missing feature variable(s) {missing}")
    columns = [
        np.asarray(_variable(features, v).values, dtype=np.float64).reshape(features.sizes["halo"], -1)
        for v in variables
    ]
    return np.concatenate(columns, axis=1)


def _variable(features: xr.Dataset, spec: str) -> xr.DataArray:
    """A features variable, or with ``scalars:elementary`` the scalars that are not products."""
    name, _, subset = spec.partition(SUBSET_MARK)
    if not subset:
        return features[name]
    if (name, subset) != ("scalars", "elementary"):
        raise ValueError(f"unknown variable subset {spec!r}; known: 'scalars{SUBSET_MARK}elementary'")
    kinds = dict(zip(SCALAR_NAMES, SCALAR_KINDS, strict=True))
    return features[name].sel(scalar=[s for s in features["scalar"].values if kinds[str(s)] != "product"])


def usable_rows(features: xr.Dataset, variables: Sequence[str]) -> np.ndarray:
    """Per halo, whether a model reading ``variables`` can use it: for the catalog model, the halos
    whose catalog properties were all measured (``catalog_valid``); every halo otherwise."""
    rows = np.ones(features.sizes["halo"], dtype=bool)
    if "catalog" in variables and "catalog_valid" in features:
        rows &= np.asarray(features["catalog_valid"].values, dtype=bool)
    return rows


# -- what a halo model reads and returns -----------------------------------------------------------

HALO_GROUP = "E(3)"
"""Rotations, reflections and translations of the catalog's positions (velocities rotate)."""
G_UNITS = "kpc km^2 s^-2 Msun^-1"
HALO_INPUTS = (
    Port.single("particle_position", "position", PARTICLE_UNITS["particle_position"]),
    Port.single("particle_velocity", "vector", PARTICLE_UNITS["particle_velocity"]),
    Port.single("particle_mass", "scalar", PARTICLE_UNITS["particle_mass"]),
    Port.single("particle_count", "scalar", HALO_UNITS["particle_count"]),
    Port.single("position", "position", HALO_UNITS["position"]),
    Port.single("M200m", "scalar", HALO_UNITS["M200m"]),
    Port.single("R200m", "scalar", HALO_UNITS["R200m"]),
    Port.single("G", "scalar", G_UNITS),
    Port.single("Msun", "scalar", "Msun"),
)
"""Halos as particles (N rows: the halos' particles one after the other, ``particle_count`` per
halo), per-halo centres, M200m and R200m, and the constants G and Msun (1 Msun, the mass unit of
the features' logarithms)."""
PREDICTION = (Port.single("mean", "scalar", "1"), Port.single("log_sigma", "scalar", "1"))
"""Mean and log sigma of the target (dex), per halo."""


def features_of_particles(
    particle_position: np.ndarray,
    particle_velocity: np.ndarray,
    particle_mass: np.ndarray,
    particle_count: np.ndarray,
    position: np.ndarray,
    M200m: np.ndarray,
    R200m: np.ndarray,
    G: float | np.ndarray = G_KPC_KMS2_MSUN,
    Msun: float | np.ndarray = 1.0,
) -> xr.Dataset:
    """The ``halos.features`` of halos given as arrays (:data:`HALO_INPUTS`), computed as the pipeline
    does (:func:`pipeline.halos.scalars.halo_scalar_array`, :func:`pipeline.halos.features.halo_features`),
    with the constants G (of V200m) and Msun (the unit of log10 M200m) as arguments."""
    counts = np.asarray(particle_count, dtype=np.int64)
    scalars, within = halo_scalar_array(
        particle_position, particle_velocity, particle_mass, counts, position, M200m, R200m, G=float(G)
    )
    ids = ("halo", np.arange(counts.size, dtype=np.int64))
    scalars_ds = xr.Dataset(
        {
            "scalars": (("halo", "scalar"), scalars),
            "particles_within": ("halo", within),
            "valid": ("halo", np.ones(counts.size, dtype=bool)),
        },
        coords={"halo_id": ids},
    )
    catalog = xr.Dataset({"M200m": ("halo", np.asarray(M200m, dtype=np.float64) / Msun)}, coords={"halo_id": ids})
    return halo_features(catalog, scalars_ds)


def sample_halos(n: int, rng: np.random.Generator, particles: tuple[int, int] = (120, 200)) -> tuple[np.ndarray, ...]:
    """``n`` random halos as :data:`HALO_INPUTS`: anisotropic clouds of unequal particles with some
    shear in their velocities and a few particles beyond R200m, in kpc, km s^-1 and Msun."""
    counts = rng.integers(particles[0], particles[1], n)
    mass = 10 ** rng.uniform(11.0, 13.5, n)
    radius = rng.uniform(100.0, 400.0, n)
    centre = rng.uniform(-1000.0, 1000.0, (n, 3))
    positions, velocities = [], []
    for i, count in enumerate(counts):
        direction = rng.normal(size=(count, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        x = direction * rng.uniform(0.0, 1.15 * radius[i], (count, 1)) * rng.uniform(0.6, 1.0, 3)
        bulk = rng.normal(0.0, 300.0, 3)
        v = rng.normal(size=(count, 3)) * rng.uniform(50.0, 200.0, 3) + 30.0 * x[:, ::-1] / radius[i] + bulk
        positions.append(centre[i] + x)
        velocities.append(v)
    return (
        np.concatenate(positions),
        np.concatenate(velocities),
        rng.uniform(0.5, 2.0, counts.sum()) * 1e8,
        counts,
        centre,
        mass,
        radius,
        np.asarray(G_KPC_KMS2_MSUN),
        np.asarray(1.0),
    )


CATALOG_INPUTS = (
    Port.single("M200m", "scalar", HALO_UNITS["M200m"]),
    Port.single("R200m", "scalar", HALO_UNITS["R200m"]),
    *(Port.single(name, "scalar", HALO_UNITS[name]) for name in CATALOG_MODEL_FIELDS),
    Port.single("G", "scalar", G_UNITS),
    Port.single("Msun", "scalar", "Msun"),
)
"""Halos as a halo finder's catalog: M200m, R200m and the catalog properties (scalars: a rotation
leaves them as they are, a change of units scales them by their units), and the constants G and Msun."""


def features_of_catalog(M200m: np.ndarray, R200m: np.ndarray, *arrays: np.ndarray) -> xr.Dataset:
    """The ``halos.features`` of halos given as :data:`CATALOG_INPUTS` (no particles): M200m, R200m,
    the catalog properties in :data:`~pipeline.halos.features.CATALOG_MODEL_FIELDS` order, then the
    constants G (of V200m) and Msun (the unit of log10 M200m), computed as the pipeline does
    (:func:`pipeline.halos.features.halo_features` with ``scalars=None``)."""
    *properties, G, Msun = arrays
    if len(properties) != len(CATALOG_MODEL_FIELDS):
        raise ValueError(f"expected the {len(CATALOG_MODEL_FIELDS)} catalog properties, got {len(properties)} arrays")
    mass = np.asarray(M200m, dtype=np.float64) / Msun  # in Msun, so G is taken per Msun too
    fields = {
        name: ("halo", np.asarray(a, dtype=np.float64))
        for name, a in zip(CATALOG_MODEL_FIELDS, properties, strict=True)
    }
    catalog = xr.Dataset(
        {"M200m": ("halo", mass), "R200m": ("halo", np.asarray(R200m, dtype=np.float64)), **fields},
        coords={"halo_id": ("halo", np.arange(mass.size, dtype=np.int64))},
    )
    return halo_features(catalog, G=float(np.asarray(G) * np.asarray(Msun)))


def sample_catalog_halos(n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """``n`` random halos as :data:`CATALOG_INPUTS`, with properties in the ranges halo finders report
    (kpc, km s^-1, Msun)."""
    mass = 10 ** rng.uniform(11.0, 13.5, n)
    radius = rng.uniform(100.0, 400.0, n)
    v200 = np.sqrt(G_KPC_KMS2_MSUN * mass / radius)
    b_to_a = rng.uniform(0.5, 1.0, n)
    properties = {
        "concentration": 10 ** rng.uniform(0.5, 1.3, n),
        "spin": 10 ** rng.uniform(-2.0, -1.0, n),
        "sigma_v": rng.uniform(0.5, 0.9, n) * v200,
        "b_to_a": b_to_a,
        "c_to_a": b_to_a * rng.uniform(0.5, 1.0, n),
        "x_offset": rng.uniform(0.0, 0.1, n) * radius,
        "v_offset": rng.uniform(0.0, 0.1, n) * v200,
        "vmax": rng.uniform(1.0, 1.4, n) * v200,
        "virial_ratio": rng.uniform(0.45, 0.8, n),
        "r_half": rng.uniform(0.2, 0.5, n) * radius,
    }
    return (
        mass,
        radius,
        *(properties[name] for name in CATALOG_MODEL_FIELDS),
        np.asarray(G_KPC_KMS2_MSUN),
        np.asarray(1.0),
    )


def model_io(model: str, variables: Sequence[str] | None = None) -> ModelIO:
    """What the halo model ``model`` (one of :data:`MODELS`, or an ``-ensemble`` of one) reads and
    returns: halos as particles (:data:`HALO_INPUTS`), or for the catalog model as catalog properties
    (:data:`CATALOG_INPUTS`), -> (mean, log sigma), E(3)- and units-invariant. ``variables`` are the
    features it reads (its stored ``inputs``; default :func:`input_variables` with global properties
    measured from the particles)."""
    base = model.removesuffix("-ensemble")
    if variables is None:
        variables = input_variables(base, xr.Dataset(attrs={"global_source": "particles"}))
    variables = list(variables)
    if "global" in variables:
        raise ValueError(
            f"halo model {model!r} reads a catalog's own concentration, spin and sigma_v, which the "
            "particle description of ModelIO does not hold; describe models on global_particles"
        )
    reads_catalog = "catalog" in variables
    if reads_catalog and any(v.split(SUBSET_MARK)[0] in ("scalars", "global_particles") for v in variables):
        raise ValueError(f"halo model {model!r} reads both particles and catalog properties: {variables}")
    features_of = features_of_catalog if reads_catalog else features_of_particles

    def apply(module: torch.nn.Module, *arrays: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = design_matrix(features_of(*arrays), variables)
        reference = next(itertools.chain(module.parameters(), module.buffers()))
        return module(torch.as_tensor(x, dtype=reference.dtype, device=reference.device))

    return ModelIO(
        CATALOG_INPUTS if reads_catalog else HALO_INPUTS,
        PREDICTION,
        group=HALO_GROUP,
        units="invariant",
        system="halos",
        description=f"halo model {model!r} on {variables}"
        + (" (catalog properties, no particles)" if reads_catalog else ""),
        apply=apply,
        sampler=sample_catalog_halos if reads_catalog else sample_halos,
        array="numpy",
    )


def loaded_model_io(loaded: LoadedModel) -> ModelIO:
    """The :func:`model_io` of a stored halo model (its ``halo_model`` and ``inputs`` attributes)."""
    return model_io(str(loaded.attrs["halo_model"]), model_json_attr(loaded.ref, loaded.attrs, "inputs"))


def _target(features: xr.Dataset, target: str, where: str) -> np.ndarray:
    if target not in features:
        have = feature_targets(features)
        raise ValueError(f"{where}: no target {target!r} in the features (targets present: {have or 'none'})")
    return np.asarray(features[target].values, dtype=np.float64)


def train_halo_model(
    model: str,
    features: xr.Dataset,
    split: str,
    target: str,
    config: TrainConfig,
    *,
    hidden: Sequence[int] | None = None,
    relation_baseline: bool | None = None,
    checkpoint: str | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> tuple[torch.nn.Module, TrainResult | None, list[str]]:
    """A trained model on the train (and, for MLPs, val) halos of ``split``; its TrainResult (None for
    the least-squares mass-only fit) and the features variables it reads."""
    variables = input_variables(model, features)
    x = design_matrix(features, variables)
    usable = usable_rows(features, variables)
    index = {part: rows[usable[rows]] for part, rows in split_indices(features, split).items()}
    y = _target(features, target, f"training {model}")
    if model == "mass-only":
        relation = StellarToHaloRelation.fit(x[index["train"], 0], y[index["train"]])
        return MassOnlyRelation.from_relation(relation).to(torch.float64), None, variables
    n_in = x.shape[1]
    layers = tuple(hidden or HIDDEN[model])
    asinh = list(range(1, n_in)) if model == "scalars" else []
    baseline = RELATION_BASELINE[model] if relation_baseline is None else relation_baseline
    module, result = train_gaussian_mlp(
        x[index["train"]],
        y[index["train"]],
        x[index["val"]],
        y[index["val"]],
        config,
        hidden=layers,
        checkpoint=checkpoint,
        on_epoch=on_epoch,
        model_factory=lambda: AsinhGaussianMLP(n_in, layers, asinh_columns=asinh, relation_baseline=baseline),
    )
    return module, result, variables


def store_halo_model(
    catalog: Catalog,
    name: str,
    model: str,
    module: torch.nn.Module,
    result: TrainResult | None,
    config: TrainConfig | None,
    *,
    features_ref: str,
    split: str,
    target: str,
    variables: Sequence[str],
    params: dict[str, Any] | None = None,
) -> str:
    """Save a trained halo model with what prediction needs to rebuild its inputs (attributes)."""
    training = (
        None if config is None else {k: v for k, v in config.to_dict().items() if k not in ("device", "progress")}
    )
    return save_model(
        catalog,
        name,
        module,
        parents=(features_ref,),
        params={
            "system": "halos",
            "model": model,
            "split": split,
            "target": target,
            "training": training,
            **(params or {}),
        },
        seed=None if config is None else config.seed,
        training=result,
        attrs={"halo_model": model, "target": target, "inputs": json.dumps(list(variables)), "split": split},
    )


#: The JSON attributes a halo model is rebuilt and run from, with what each must hold (``training``
#: is absent from the least-squares mass-only model).
MODEL_JSON_ATTRS: dict[str, tuple[type, str]] = {
    "config": (dict, "a JSON object of the model's constructor arguments"),
    "training": (dict, "a JSON object (the training summary)"),
    "inputs": (list, 'a JSON list of feature variable names, e.g. ["log_m200m"]'),
}


def model_json_attr(ref: str, attrs: Mapping[str, Any], name: str) -> Any:
    """Attribute ``name`` of the stored model ``ref`` parsed as JSON and checked against
    :data:`MODEL_JSON_ATTRS`; :class:`ModelArtifactError` names the model, the attribute and what it
    must hold (json's own "Expecting value: line 1 column 1" names neither)."""
    kind, expected = MODEL_JSON_ATTRS[name]
    where = f"model {ref}: attribute {name!r}"
    if name not in attrs:
        raise ModelArtifactError(f"{where} is missing; expected {expected}")
    text = attrs[name]
    if isinstance(text, (bytes, np.bytes_)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise ModelArtifactError(f"{where} holds binary data, not UTF-8 text; expected {expected}") from None
    if not isinstance(text, str):
        raise ModelArtifactError(f"{where} is a {type(text).__name__} ({text!r:.60}); expected {expected}")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ModelArtifactError(f"{where} is not valid JSON ({exc}: {text!r:.60}); expected {expected}") from None
    if not isinstance(value, kind) or (kind is list and not all(isinstance(v, str) for v in value)):
        raise ModelArtifactError(f"{where} holds {text!r:.60}; expected {expected}")
    return value


def check_model_attrs(ref: str, attrs: Mapping[str, Any]) -> None:
    """Every JSON attribute of a stored halo model (:data:`MODEL_JSON_ATTRS`) parses to what it must hold."""
    for name in MODEL_JSON_ATTRS:
        if name in attrs or name != "training":
            model_json_attr(ref, attrs, name)


def load_halo_model(catalog: Catalog, ref: str) -> LoadedModel:
    """The halo model at ``ref`` on the CPU in float64, its JSON attributes checked before it is rebuilt."""
    resolved = catalog.resolve(ref)
    check_model_attrs(resolved, catalog.info(resolved, variables=False).attrs)
    return load_model(catalog, resolved, device="cpu", dtype=torch.float64)


def predict_loaded(loaded: LoadedModel, features: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sigma (target units) of a loaded halo model on every halo of ``features``."""
    variables = model_json_attr(loaded.ref, loaded.attrs, "inputs")
    return predict_gaussian(loaded.model, design_matrix(features, variables, where=loaded.ref))


def evaluate_halo_model(catalog: Catalog, model_ref: str, features_ref: str, split: str) -> str:
    """Store a ``halos.evaluation`` of a model: on the test halos of ``split`` (``random`` or
    ``mass_threshold``), or on every halo of ``features_ref`` (any other split name, e.g. ``subsampled``)."""
    loaded = load_halo_model(catalog, model_ref)
    features = catalog.open(features_ref).load()
    target = str(loaded.attrs["target"])
    rows = (
        split_indices(features, split)["test"]
        if split in ("random", "mass_threshold")
        else np.arange(features.sizes["halo"])
    )
    usable = usable_rows(features, model_json_attr(loaded.ref, loaded.attrs, "inputs"))
    part = features.isel(halo=rows[usable[rows]])
    mean, sigma = predict_loaded(loaded, part)
    ds = evaluation_dataset(
        part["halo_id"].values,
        part["log_m200m"].values,
        _target(part, target, model_ref),
        mean,
        sigma,
        model=catalog.resolve(model_ref),
        data=catalog.resolve(features_ref),
        split=split,
        target=target,
        extra_attrs={
            "system": "halos",
            "halo_model": str(loaded.attrs["halo_model"]),
            "left_out_unmeasured": int((~usable[rows]).sum()),  # catalog properties a halo finder did not measure
        },
    )
    name = f"{parse_ref(model_ref).name}-on-{split}"
    return catalog.write(ds, name, kind=EVALUATION_KIND, parents=(model_ref, features_ref))


def store_halo_ensemble(catalog: Catalog, model_refs: Sequence[str], name: str) -> str:
    """Store the :class:`GaussianEnsemble` of ``model_refs`` (one kind of model, one target, one split,
    the same inputs) as ``name``, with the members as parents; its ref."""
    loaded = [load_halo_model(catalog, ref) for ref in model_refs]
    shared = {key: {str(m.attrs.get(key)) for m in loaded} for key in ("halo_model", "target", "split", "inputs")}
    differing = sorted(key for key, values in shared.items() if len(values) != 1)
    if differing:
        raise ValueError(f"an ensemble's members must share {differing}; {list(model_refs)} do not")
    first = loaded[0].attrs
    model = f"{first['halo_model']}-ensemble"
    return save_model(
        catalog,
        name,
        GaussianEnsemble.of(loaded),
        parents=tuple(model_refs),  # the catalog resolves them to concrete versions
        params={"system": "halos", "model": model, "split": first["split"], "target": first["target"]},
        attrs={"halo_model": model, "target": first["target"], "inputs": first["inputs"], "split": first["split"]},
    )


def asinh_scaled(x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Columns mapped to asinh(x / s), s the median |x| of ``x_train`` (the scalars model's transform)."""
    s = np.median(np.abs(x_train), axis=0)
    s = np.where(s > 0, s, np.abs(x_train).mean(axis=0))
    s = np.where(s > 0, s, 1.0)
    return [np.arcsinh(a / s) for a in (x_train, *others)]


RIDGES = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def _ridge_sigma68(a: np.ndarray, r: np.ndarray, b: np.ndarray, r_val: np.ndarray) -> float:
    """The best validation sigma68 of ridge regressions on every (standardised) column over :data:`RIDGES`
    (times the number of rows, as forward_selection scales its ridge): the all-features reference."""
    from pipeline.metrics import sigma68

    mu, sd = a.mean(0), a.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    design = np.column_stack([np.ones(len(a)), (a - mu) / sd])
    val = np.column_stack([np.ones(len(b)), (b - mu) / sd])
    gram, rhs = design.T @ design, design.T @ r
    eye = np.eye(design.shape[1])
    return min(sigma68(r_val - val @ np.linalg.solve(gram + ridge * len(a) * eye, rhs)) for ridge in RIDGES)


def feature_importance(catalog: Catalog, features_ref: str, target: str, steps: int = IMPORTANCE_STEPS) -> str:
    """Store a ``halos.importance`` ranking: greedy forward selection of the (asinh-scaled) scalars that
    explain the residuals of the mass-only relation, train / val halos of the random split."""
    features = catalog.open(features_ref).load()
    index = split_indices(features, "random")
    log_m = features["log_m200m"].values
    y = _target(features, target, "feature importance")
    relation = StellarToHaloRelation.fit(log_m[index["train"]], y[index["train"]])
    residual = y - relation.predict(log_m)[0]
    scalars = features["scalars"].values
    a, b = asinh_scaled(scalars[index["train"]], scalars[index["val"]])
    r, r_val = residual[index["train"]], residual[index["val"]]
    names = [str(n) for n in features["scalar"].values]
    rows = forward_selection(a, r, b, r_val, names, steps=steps)
    ds = importance_dataset(rows, all_features_sigma68=_ridge_sigma68(a, r, b, r_val), target=target, data=features_ref)
    name = f"{parse_ref(features_ref).name}-importance-{target}"
    return catalog.write(ds, name, kind=IMPORTANCE_KIND, parents=(features_ref,), params={"steps": steps})
