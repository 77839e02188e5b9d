"""Results for the report tests: small but real evaluation datasets written to a catalog, summarised and
returned as the :class:`~pipeline.results.SystemResult` a system's flow returns (the flows are not run).

``make_result(system, catalog, ...)`` knows the three built-in systems ("pendulum", "rietkerk", "halos")
and makes any other name a toy system with no report section of its own: its summary rows are read
from evaluation datasets like every other system's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from data_catalog import Catalog
from pipeline import metrics
from pipeline.halos import evaluation as he
from pipeline.halos import halos_summary
from pipeline.halos import summary_rows as halos_rows
from pipeline.pendulum import PUBLISHED, pendulum_summary
from pipeline.pendulum import summary_rows as pendulum_rows
from pipeline.results import SummaryRow, SystemResult
from pipeline.rietkerk import rietkerk_summary
from pipeline.rietkerk import summary_rows as rietkerk_rows
from pipeline.rietkerk.features import TARGETS as RIETKERK_TARGETS
from pipeline.rietkerk.regimes import REGIMES_KIND, regime_map
from pipeline.summaries import sample_std
from sims.pendulum import protocols as pp
from sims.pendulum.system import RAW_KIND
from surrogates.pendulum.runs import MODELS_BY_PROTOCOL, POSITION_MOMENTUM_BLOCKS, STATE_COMPONENTS
from surrogates.rietkerk.discovery import DISCOVERY_KIND, discovery_dataset

# few catalog writes (the bulk of the time): two seeds only where a std is looked at, three Rietkerk splits
SEEDS = {"dimensionless-hnn": 2, "scalars": 2, "toy-b": 2}
# the method comparison's models with published rows (the EMLP HNNs), as `--model` adds them
EXTRA_MODELS = {"emlp": tuple(m for (p, m, _) in PUBLISHED if p == "emlp" and m.startswith("emlp-hnn-"))}
MEASURED = {"emlp": ("symmetry_error", "symmetry_error_about_gravity"), "units": ("symmetry_error", "units_error")}


def symmetry_error(model_index: int, seed: int) -> float:
    """The pendulum evaluations' made-up measured symmetry errors: one order of magnitude per model."""
    return 10.0 ** -(model_index + 1) * (seed + 1)


RIETKERK_SPLITS = ("test", "units", "rainfall")
STATE_VECTORS = [c[0] for c in STATE_COMPONENTS]


def make_result(system: str, catalog: Catalog, **options) -> SystemResult:
    """The result of ``system``'s flow on tiny data written to ``catalog``.

    Options: pendulum: ``protocols`` (default both), ``evaluated`` (False: the protocols ran with no
    evaluation); rietkerk: ``regime_maps`` and ``discovery`` (False: not computed); any other system:
    ``groups`` (default ("", )), ``published`` (model -> the published number on the in-distribution split).
    """
    makers = {"pendulum": _pendulum, "rietkerk": _rietkerk, "halos": _halos}
    return makers.get(system, _toy)(catalog, system=system, **options)


# -- the pendulum: per protocol, test datasets simulated for real and evaluations that drift ----------


def _pendulum(
    cat: Catalog, *, system: str, protocols: Sequence[str] = ("emlp", "units"), evaluated: bool = True
) -> SystemResult:
    """As ``flows.pendulum.flow`` merges its protocols: details per protocol, the evaluations of every
    protocol's models together (model -> split -> refs)."""
    details, evaluations, data = {}, {}, {}
    for protocol in protocols:
        splits, mine = _pendulum_protocol(cat, protocol) if evaluated else ({}, {})
        summary = pendulum_summary(cat, protocol, mine, "reference")
        summary.update(activation="silu", substeps=1, preset="smoke", dtype="float64")  # as the flow adds them
        data[protocol] = {"splits": splits}
        evaluations.update(mine)
        details[protocol] = summary
    rows = tuple(row for summary in details.values() for row in pendulum_rows(summary))
    return SystemResult(system, data=data, evaluations=evaluations, rows=rows, details=details)


def _pendulum_protocol(cat: Catalog, protocol: str) -> tuple[dict, dict]:
    cfg = pp.preset(protocol, "smoke", n_train=1, n_val=1, n_test=3, n_times=12)
    tests = {split: ds for split, ds in pp.generate(cfg).items() if split in pp.TEST_SPLITS[protocol]}
    data = {
        split: cat.write(ds, f"pendulum-{protocol}-smoke-{split}", kind=RAW_KIND, params=cfg.to_dict(), seed=cfg.seed)
        for split, ds in tests.items()
    }
    rng = np.random.default_rng(1)
    evaluations: dict[str, dict[str, list[str]]] = {}
    for m, model in enumerate(MODELS_BY_PROTOCOL[protocol] + EXTRA_MODELS.get(protocol, ())):
        for seed in range(SEEDS.get(model, 1)):
            for s, (split, ref) in enumerate(data.items()):
                ds = tests[split]
                truth = np.concatenate([ds[v].transpose("sample", "time", "space").values for v in STATE_VECTORS], -1)
                times = ds["time"].values
                drift = 1e-3 * (m + 1) * (s + 1) * (1 + 0.1 * seed) * (1 + times[None, :, None])
                predicted = truth * (1 + drift * rng.standard_normal(truth.shape))
                ev = metrics.evaluation_dataset(
                    predicted,
                    truth,
                    times,
                    blocks=POSITION_MOMENTUM_BLOCKS,
                    components=STATE_COMPONENTS,
                    model=f"pendulum-{protocol}-smoke-{model}@v{seed + 1}",
                    data=ref,
                    split=split,
                    extra_attrs={"protocol": protocol},
                )
                for key in MEASURED[protocol]:  # as surrogates.pendulum.runs.evaluate_model stores them
                    ev[key] = ((), symmetry_error(m, seed), {"units": "1"})
                name = f"pendulum-{protocol}-smoke-{model}-s{seed}-on-{split}"
                evaluations.setdefault(model, {}).setdefault(split, []).append(
                    cat.write(ev, name, kind=metrics.EVALUATION_KIND, parents=(ref,))
                )
    return data, evaluations


# -- Rietkerk: emulator evaluations as surrogates.rietkerk.runs.evaluate_emulator stores them, regime maps, discovery


def _rietkerk(cat: Catalog, *, system: str, regime_maps: bool = True, discovery: bool = True) -> SystemResult:
    rng = np.random.default_rng(2)
    evaluations: dict[str, dict[str, list[str]]] = {}
    n = 16
    for e, kind in enumerate(("pi", "dimensional")):
        for seed in range(SEEDS.get(kind, 1)):
            for s, split in enumerate(RIETKERK_SPLITS):
                true = rng.uniform(0.1, 1.0, (n, len(RIETKERK_TARGETS)))
                scale = 0.02 * (1 + s * (1 + 4 * e)) * (1 + 0.1 * seed)
                predicted = true * (1 + scale * rng.standard_normal(true.shape))
                ds = metrics.evaluation_dataset(
                    predicted[:, None, :],
                    true[:, None, :],
                    np.zeros(1),
                    blocks=[(j, j + 1) for j in range(len(RIETKERK_TARGETS))],
                    components=[(t, j, j + 1, "1") for j, t in enumerate(RIETKERK_TARGETS)],
                    model=f"rietkerk-smoke-{kind}-emulator@v{seed + 1}",
                    data=f"rietkerk-smoke-{split}-features@v1",
                    split=split,
                    extra_attrs={"system": "rietkerk", "emulator": kind},
                )
                ds = ds.assign_coords(time=("time", [20.0], {"units": "d"}))
                ds["true"] = (("sample", "target"), true, {"units": "1"})
                ds["abs_error"] = (("sample", "target"), np.abs(predicted - true), {"units": "1"})
                ds["rmse"] = (("target",), np.sqrt(np.mean((predicted - true) ** 2, axis=0)), {"units": "1"})
                ds = ds.assign_coords(target=list(RIETKERK_TARGETS))
                ref = cat.write(ds, f"rietkerk-smoke-{kind}-s{seed}-on-{split}", kind=metrics.EVALUATION_KIND)
                evaluations.setdefault(kind, {}).setdefault(split, []).append(ref)
    maps = {}
    if regime_maps:
        maps = {
            name: cat.write(
                regime_map(name, L=32.0, dl=2.0, T=4.0, rainfall=rain),
                f"rietkerk-regimes-{name}-smoke",
                kind=REGIMES_KIND,
            )
            for name, rain in (("talk", [0.3, 0.4, 0.5]), ("rietkerk2002", [0.75, 1.0, 1.25]))
        }
    found = None
    if discovery:
        study = {
            "discovery": {
                "table": [
                    {"equation": "v", "term": "v w/(1+w)", "true": 2.0, "fitted": 2.01},
                    {"equation": "v", "term": "v", "true": -1.25, "fitted": -1.2497},
                    {"equation": "w", "term": "v", "true": 0.0, "fitted": 1e-4},  # a spurious term
                ]
            },
            "noise_study": [{"noise": 0.0, "stencil": "5-point", "max_relative_error": 0.005, "spurious": []}],
            "rollouts": [
                {R: {"mean": 10.0 + i, "regime": "spots"} for R in ("truth", "sparse", "mlp")} | {"R": R}
                for i, R in enumerate((0.75, 1.0))
            ],
        }
        found = cat.write(discovery_dataset(study), "rietkerk-discovery-smoke", kind=DISCOVERY_KIND, seed=0)
    summary = {**rietkerk_summary(cat, evaluations), "preset": "smoke"}
    return SystemResult(
        system,
        evaluations=evaluations,
        rows=rietkerk_rows(summary),
        details=summary,
        artifacts={"regime_maps": maps, "discovery": found},
    )


# -- halos: a population whose models recover more and more of the scatter about the relation ----------


def _halos(cat: Catalog, *, system: str) -> SystemResult:
    rng = np.random.default_rng(3)
    n = 240
    log_mass = rng.uniform(10.3, 13.6, n)
    true = 10.0 + 0.8 * (log_mass - 11.5) - 0.3 * np.maximum(log_mass - 12, 0) + 0.2 * rng.standard_normal(n)
    relation = 10.0 + 0.8 * (log_mass - 11.5) - 0.3 * np.maximum(log_mass - 12, 0)
    evaluations: dict[str, dict[str, list[str]]] = {}
    top = log_mass >= np.quantile(log_mass, 0.8)
    for m, model in enumerate(("mass-only", "global", "scalars")):
        for seed in range(SEEDS.get(model, 1)):
            for split, rows, extra in (
                ("random", slice(None), 0.0),
                ("mass_threshold", top, 0.05),
                ("subsampled", slice(None), 0.02),
            ):
                if seed and split != "random":
                    continue  # a second seed where the std is looked at only
                scatter = true[rows] - relation[rows]
                noise = (extra + 0.01 * seed) * rng.standard_normal(scatter.size)
                mean = relation[rows] + 0.25 * m * scatter + noise  # each model recovers more of the scatter
                ds = he.evaluation_dataset(
                    np.arange(n)[rows],
                    log_mass[rows],
                    true[rows],
                    mean,
                    np.full(np.size(mean), 0.2),
                    model=f"halos-smoke-log_mstar-s{seed}-{model}@v1",
                    data="halos-smoke-synthetic-features@v1",
                    split=split,
                    target="log_mstar",
                    extra_attrs={"system": "halos", "halo_model": model},
                )
                ref = cat.write(ds, f"halos-smoke-log_mstar-s{seed}-{model}-on-{split}", kind=he.EVALUATION_KIND)
                evaluations.setdefault(f"log_mstar/{model}", {}).setdefault(split, []).append(ref)
    steps = [{"feature": f"scalar_{i}", "column": i, "sigma68": 0.2 - 0.01 * i} for i in range(4)]
    importance = he.importance_dataset(steps, all_features_sigma68=0.15, target="log_mstar", data="features@v1")
    imp = cat.write(importance, "halos-smoke-importance-log_mstar", kind=he.IMPORTANCE_KIND)
    summary = {**halos_summary(cat, evaluations, {"log_mstar": imp}), "preset": "smoke"}
    return SystemResult(
        system,
        evaluations=evaluations,
        rows=halos_rows(summary),
        details=summary,
        artifacts={"importance": {"log_mstar": imp}},
    )


# -- a toy system that registers no report section -------------------------------------------------


def _toy(
    cat: Catalog, *, system: str, groups: Sequence[str] = ("",), published: dict[str, float] | None = None
) -> SystemResult:
    """Two models on an in-distribution split ("train-like") and two OOD splits, per group; the score of
    each evaluation dataset, mean and std over seeds."""
    rng = np.random.default_rng(4)
    published = published or {}
    rows, evaluations = [], {}
    for g, group in enumerate(groups):
        for m, model in enumerate(("toy-a", "toy-b")):
            for s, split in enumerate(("train-like", "wider", "shifted")):
                refs, scores = [], []
                for seed in range(SEEDS.get(model, 1)):
                    true = rng.uniform(1.0, 2.0, (8, 3, 2))
                    scale = 0.01 * (1 + m) * (1 + 3 * s) * (1 + g) * (1 + 0.2 * seed)
                    ds = metrics.evaluation_dataset(
                        true * (1 + scale * rng.standard_normal(true.shape)),
                        true,
                        np.arange(3.0),
                        blocks=[(0, 2)],
                        components=[("x", 0, 2, "m")],
                        model=f"{system}-{model}@v{seed + 1}",
                        data=f"{system}-{split}@v1",
                        split=split,
                    )
                    name = f"{system}-{group or 'all'}-{model}-s{seed}-on-{split}"
                    refs.append(cat.write(ds, name, kind=metrics.EVALUATION_KIND))
                    scores.append(float(ds["score"]))
                in_distribution = split == "train-like"
                evaluations.setdefault(f"{group}/{model}", {})[split] = refs
                rows.append(
                    SummaryRow(
                        group=group,
                        model=model,
                        split=split,
                        metric="score",
                        mean=float(np.mean(scores)),
                        std=sample_std(scores),
                        seeds=len(scores),
                        refs=tuple(refs),
                        in_distribution=in_distribution,
                        published=published.get(model) if in_distribution else None,
                    )
                )
    return SystemResult(system, evaluations=evaluations, rows=tuple(rows))
