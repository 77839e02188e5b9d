"""Which halo model predicts which halo: the best model a catalog supports, and why.

A halo model reads features that come from the catalog's quantities (:func:`catalog_needs`): the
scalars model the particles, the catalog-properties model the halo finder's measured properties,
the global model concentration, spin and sigma_v, the mass-only model M200m alone. For each target,
:func:`choose_models` takes the newest stored model of each kind (a seeds' ensemble before a single
seed; models trained on the random split only) and picks the first of :data:`PREFERENCE` whose
quantities the catalog has, saying the sigma68 each scored on its test halos (its stored evaluation). Halos that model cannot use (too few particles within R200m,
properties the halo finder wrote 0 for) go to the next model that can, down to mass-only; the
choice and every fallback are said in words.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from data_catalog import Catalog, parse_ref
from pipeline.halos.evaluation import EVALUATION_KIND
from pipeline.halos.features import CATALOG_MODEL_FIELDS, GLOBAL_FIELDS, catalog_inputs_valid
from sims.halos.catalog import HALOS_KIND, PARTICLE_FIELDS, has_particles
from surrogates.artifacts import MODEL_KIND

#: The kinds of halo model, best first: what a catalog supports decides which is used.
PREFERENCE = ("scalars", "catalog", "global", "mass-only")
WHAT = {
    "scalars": "the invariant scalars of the particles",
    "catalog": "the halo finder's catalog properties",
    "global": "concentration, spin and velocity dispersion",
    "mass-only": "M200m alone",
}


#: Names ``eqs reproduce halos`` gives the models it trains on the random split (a seed's, or the
#: seeds' ensemble): ``halos-<catalog>-<target>-s<seed>-<kind>``, ``halos-<catalog>-<target>-<kind>-ensemble``.
MODEL_NAME = re.compile(rf"halos-.+-(?:{'|'.join(map(re.escape, PREFERENCE))})(?:-ensemble)?")


class ModelChoiceError(ValueError):
    """A model that needs what the catalog lacks, or no model for some halos; the message names them."""


def base_kind(halo_model: str) -> str:
    return halo_model.removesuffix("-ensemble")


#: The features variables measured from a halo's particles.
PARTICLE_VARIABLES = ("scalars", "global_particles")


def reads_particles(inputs: Sequence[str]) -> bool:
    """Whether a model reading the features ``inputs`` needs the catalog's particles."""
    return any(variable.split(":")[0] in PARTICLE_VARIABLES for variable in inputs)


def catalog_needs(inputs: Sequence[str]) -> tuple[str, ...]:
    """The catalog quantities a model reading the features ``inputs`` needs."""
    needs: list[str] = []
    for variable in inputs:
        name = variable.split(":")[0]
        if name == "log_m200m":
            needs.append("M200m")
        elif name == "global":
            needs += GLOBAL_FIELDS
        elif name in PARTICLE_VARIABLES:
            needs += PARTICLE_FIELDS
        elif name == "catalog":
            needs += CATALOG_MODEL_FIELDS
        else:
            raise ModelChoiceError(f"unknown model input {variable!r}")
    return tuple(dict.fromkeys(needs))


def missing_quantities(catalog: xr.Dataset, inputs: Sequence[str]) -> list[str]:
    """What a model reading ``inputs`` needs and ``catalog`` lacks (the particles as one item)."""
    needs = catalog_needs(inputs)
    missing = [n for n in needs if n not in PARTICLE_FIELDS and n not in catalog]
    if any(n in PARTICLE_FIELDS for n in needs) and not has_particles(catalog):
        missing.insert(0, "particles (particle_position, particle_velocity, particle_mass)")
    return missing


def usable_halos(catalog: xr.Dataset, inputs: Sequence[str], particles_within: np.ndarray | None) -> np.ndarray:
    """Per halo, whether a model reading ``inputs`` can predict it: every quantity measured (a halo
    finder writes 0 for what it could not measure) and, for particle models, enough particles."""
    usable = np.ones(catalog.sizes["halo"], dtype=bool)
    if reads_particles(inputs):
        usable &= particles_within if particles_within is not None else False
    for name in {variable.split(":")[0] for variable in inputs}:
        if name == "global":
            for field_name in GLOBAL_FIELDS:
                usable &= np.asarray(catalog[field_name].values) > 0
        elif name == "catalog":
            usable &= catalog_inputs_valid(catalog)
    return usable


@dataclass
class Candidate:
    """A stored halo model: its ref, kind (``scalars`` ...), target and the features it reads."""

    ref: str
    kind: str
    target: str
    inputs: list[str]
    created: str = ""
    #: sigma68 of the target on the model's test halos (its stored evaluation on the random split)
    score: float | None = None

    @classmethod
    def of(cls, catalog: Catalog, ref: str) -> Candidate:
        info = catalog.info(ref, variables=False)
        attrs = info.attrs
        if not {"target", "inputs", "halo_model"} <= set(attrs):
            raise ModelChoiceError(f"{info.ref} is not a halo model (no 'halo_model', 'target' and 'inputs')")
        return cls(
            info.ref, base_kind(str(attrs["halo_model"])), str(attrs["target"]), json.loads(attrs["inputs"]),
            info.created_utc,
        )  # fmt: skip


def stored_candidates(catalog: Catalog) -> dict[str, dict[str, Candidate]]:
    """Per target and kind, the newest halo model trained on the random split (an ensemble first)."""
    best: dict[tuple[str, str], tuple[tuple[Any, ...], Candidate]] = {}
    for name in catalog.names():
        if not MODEL_NAME.fullmatch(name):  # read only what may be a model: each info opens a file
            continue
        info = catalog.info(name, variables=False)
        attrs = info.attrs
        if info.kind != MODEL_KIND or not {"target", "inputs", "halo_model"} <= set(attrs):
            continue
        if str(attrs.get("split", "random")) != "random":
            continue
        halo_model = str(attrs["halo_model"])
        candidate = Candidate(info.ref, base_kind(halo_model), str(attrs["target"]), json.loads(attrs["inputs"]))
        key = (halo_model.endswith("-ensemble"), info.created_utc, info.version)
        slot = (candidate.target, candidate.kind)
        if slot not in best or key > best[slot][0]:
            best[slot] = (key, candidate)
    out: dict[str, dict[str, Candidate]] = {}
    names = set(catalog.names())
    for (target, kind), (_, candidate) in best.items():
        candidate.score = _test_score(catalog, candidate.ref, names)
        out.setdefault(target, {})[kind] = candidate
    return out


def _test_score(catalog: Catalog, ref: str, names: set[str]) -> float | None:
    """The sigma68 of the model's evaluation on its random split's test halos, when stored (the
    flow names it ``<model>-on-random``)."""
    name = f"{parse_ref(ref).name}-on-random"
    if name not in names:
        return None
    info = catalog.info(name, variables=False)
    if info.kind != EVALUATION_KIND or str(info.attrs.get("model")) != ref:
        return None
    with catalog.open(info.ref) as ds:
        return float(ds["sigma68"].values)


@dataclass
class TargetChoice:
    """The models of one target: ``refs[k]`` predicts the halos where ``model_index == k``."""

    target: str
    refs: list[str]
    model_index: np.ndarray
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        counts = np.bincount(self.model_index, minlength=len(self.refs))
        return {
            "target": self.target,
            "models": {ref: int(n) for ref, n in zip(self.refs, counts, strict=True) if n},
            "why": self.reasons,
        }


def choose_models(
    catalog_ds: xr.Dataset,
    candidates: Mapping[str, Mapping[str, Candidate]],
    particles_within: np.ndarray | None,
    *,
    explicit: Sequence[Candidate] = (),
    source: str = "the catalog",
) -> list[TargetChoice]:
    """Per target, the model for each halo and the reasons, in words.

    ``candidates`` are the stored models per target and kind (:func:`stored_candidates`);
    ``explicit`` models (``--model``) replace the choice for their targets and must find every
    quantity they need in the catalog. ``particles_within``: per halo, whether it has enough
    particles within R200m for the scalars (None without particles).
    """
    explicit_by_target: dict[str, Candidate] = {}
    for candidate in explicit:
        if candidate.target in explicit_by_target:
            raise ModelChoiceError(
                f"--model {explicit_by_target[candidate.target].ref} and --model {candidate.ref} both predict "
                f"{candidate.target}; give one per target"
            )
        explicit_by_target[candidate.target] = candidate
    targets = sorted(set(candidates) | set(explicit_by_target))
    choices = []
    for target in targets:
        stored = candidates.get(target, {})
        lacks = {kind: missing_quantities(catalog_ds, c.inputs) for kind, c in stored.items()}
        supported = ranked([c for kind, c in stored.items() if not lacks[kind]])
        reasons: list[str] = []
        if target in explicit_by_target:
            chosen = explicit_by_target[target]
            missing = missing_quantities(catalog_ds, chosen.inputs)
            if missing:
                raise ModelChoiceError(
                    f"--model {chosen.ref}: a {chosen.kind} model reads {', '.join(missing)}, which {source} lacks; "
                    f"choose a model of what it has ({_has(catalog_ds)}), or leave out --model to let eqs choose"
                )
            chain = [chosen]
            reasons.append(f"{chosen.ref}: named with --model")
        else:
            chain = supported[:1]
            if chain:
                reasons.append(
                    f"{chain[0].ref}: the {chain[0].kind} model, on {WHAT[chain[0].kind]}{_score(supported)}"
                )
            reasons += [
                f"not {kind} ({stored[kind].ref}): {source} lacks {', '.join(lacks[kind])}"
                for kind in PREFERENCE
                if lacks.get(kind)
            ]
        # the halos the first model cannot use go to the next one that can
        chain += [c for c in supported if c.ref not in {chosen.ref for chosen in chain}]
        if not chain:
            raise ModelChoiceError(f"no stored model of {target} can use {source}: it has {_has(catalog_ds)}")
        index = np.full(catalog_ds.sizes["halo"], -1, dtype=np.int64)
        for k, candidate in enumerate(chain):
            free = (index < 0) & usable_halos(catalog_ds, candidate.inputs, particles_within)
            index[free] = k
            if k and free.any():
                why = "; ".join(f"not {c.kind}: {_unusable_why(c.kind)}" for c in chain[:k])
                reasons.append(f"{int(free.sum())} halo(s) by {candidate.ref} ({candidate.kind}), {why}")
        if chain and not (index == 0).any():
            reasons[0] += f" (but no halo of {source} can use it: {_unusable_why(chain[0].kind)})"
        if (index < 0).any():
            ids = np.asarray(catalog_ds["halo_id"].values)[index < 0][:5].tolist()
            raise ModelChoiceError(
                f"{int((index < 0).sum())} halo(s) of {source} (halo_id {ids}) cannot be predicted by "
                f"{', '.join(c.ref for c in chain)} ({_unusable_why(chain[-1].kind)}), and there is no stored "
                f"mass-only model of {target} to fall back on; train one with `eqs reproduce halos --model mass-only`"
            )
        used = sorted(set(index.tolist()))
        refs = [chain[k].ref for k in used]
        remap = np.zeros(len(chain), dtype=np.int64)
        remap[used] = np.arange(len(used))
        choices.append(TargetChoice(target, refs, remap[index], reasons))
    return choices


def ranked(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Best first, in the order of :data:`PREFERENCE`: the models that read more of a halo first."""
    return sorted(candidates, key=lambda c: PREFERENCE.index(c.kind))


def _score(chain: Sequence[Candidate]) -> str:
    if chain[0].score is None:
        return ""
    others = ", ".join(f"{c.kind} {c.score:.3f}" for c in chain[1:] if c.score is not None)
    return f": sigma68 {chain[0].score:.3f} on its test halos" + (
        f" (the others it supports: {others})" if others else ""
    )


def _unusable_why(kind: str) -> str:
    return {
        "scalars": "fewer than the scalars' minimum of particles within R200m",
        "catalog": "a catalog property the halo finder did not measure (written as 0)",
        "global": "a spin or velocity dispersion of 0 (not measured)",
    }.get(kind, "not usable")


def _has(catalog_ds: xr.Dataset) -> str:
    held = ["particles"] if has_particles(catalog_ds) else ["no particles"]
    held += [n for n in ("M200m", *GLOBAL_FIELDS, *CATALOG_MODEL_FIELDS) if n in catalog_ds]
    return ", ".join(dict.fromkeys(held))


# -- what the models were trained on ------------------------------------------------------------------


def training_catalog(catalog: Catalog, model_ref: str) -> str | None:
    """The ``halos.catalog`` a model was trained on (its nearest such ancestor), or None."""
    for ref, node in catalog.lineage(model_ref).items():
        if node.get("kind") == HALOS_KIND and not node.get("missing"):
            return ref
    return None


def particle_mass_range(ds: xr.Dataset) -> tuple[float, float] | None:
    """The smallest and largest particle mass (Msun) of a catalog: its particles', or the halo
    finder's stated particle mass; None when it gives neither."""
    if has_particles(ds) and ds.sizes.get("particle", 0):
        return float(ds["particle_mass"].min()), float(ds["particle_mass"].max())
    if "particle_mass_msun" in ds.attrs:
        mass = float(ds.attrs["particle_mass_msun"])
        return mass, mass
    return None


def range_warnings(catalog: Catalog, catalog_ds: xr.Dataset, refs: Sequence[str], source: str) -> list[str]:
    """Sentences for each model whose training catalog had another redshift or particle mass than
    ``catalog_ds``: its predictions are extrapolations there (mass-only models read M200m alone)."""
    messages = []
    seen: dict[str, tuple[float | None, tuple[float, float] | None, tuple[float, float]]] = {}
    redshift = float(catalog_ds.attrs.get("redshift", 0.0))
    masses = particle_mass_range(catalog_ds)
    halo_masses = np.asarray(catalog_ds["M200m"].values)
    for ref in refs:
        trained_on = training_catalog(catalog, ref)
        if trained_on is None:
            continue
        if trained_on not in seen:
            with catalog.open(trained_on) as train:
                seen[trained_on] = (
                    float(train.attrs.get("redshift", 0.0)),
                    particle_mass_range(train),
                    (float(train["M200m"].min()), float(train["M200m"].max())),
                )
        z_train, m_train, (low, high) = seen[trained_on]
        outside = int(((halo_masses < low) | (halo_masses > high)).sum())
        if outside:
            messages.append(
                f"{ref} was trained on halos of M200m {low:.3g} to {high:.3g} Msun ({trained_on}); {outside} of "
                f"{halo_masses.size} halo(s) of {source} lie outside that range: extrapolations"
            )
        if z_train is not None and not math.isclose(1 / (1 + redshift), 1 / (1 + z_train), abs_tol=0.01):
            messages.append(
                f"{ref} was trained on halos at z = {z_train:g} ({trained_on}); {source} is at z = {redshift:.4g}"
            )
        kind = base_kind(str(catalog.info(ref, variables=False).attrs.get("halo_model", "")))
        if (
            kind != "mass-only"
            and masses
            and m_train
            and (masses[0] < 0.99 * m_train[0] or masses[1] > 1.01 * m_train[1])
        ):
            messages.append(
                f"{ref} was trained on particles of {_mass_text(m_train)} Msun ({trained_on}); {source} has "
                f"{_mass_text(masses)} Msun: its resolution differs, so do the measured properties"
            )
    return messages


def _mass_text(masses: tuple[float, float]) -> str:
    low, high = masses
    return f"{low:.3g}" if math.isclose(low, high, rel_tol=1e-3) else f"{low:.3g} to {high:.3g}"
