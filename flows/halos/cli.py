"""The halo commands of ``eqs``: ``sim halos``, ``ingest halos``, ``predict-galaxies``, ``reproduce halos``.

Registered as the halo system's commands in :mod:`flows.registry`. Invalid halo files and bad
options are input errors: status 2 and the reader's message (file or option, field, expectation).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from sims.halos.catalog import HaloOptionError
from sims.halos.formats import checked_options, get_reader, readers

from ..cli.core import (
    UsageFailure,
    _catalog,
    _console,
    _emit_json,
    _flow_result,
    benchmark_command,
    checked_output,
    force_option,
    json_option,
    write_summary,
)

# the readers' options shared by ingest halos and predict-galaxies (sims.halos.formats checks which apply)
snapshot_option = click.option(
    "--snapshot", type=click.IntRange(min=0), default=None, help="Snapshot number (tng; ctrees tree files)."
)
particles_option = click.option(
    "--particles",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Rockstar .particles file(s) [default: those found beside the halo list; with none, the halos are read "
    "without particles].",
)
# particles for a catalog without them, from a simulation snapshot (sims.halos.snapshot)
particles_snapshot_option = click.option(
    "--particles-snapshot",
    "particles_snapshot",
    multiple=True,
    type=click.Path(exists=True),
    help="A Gadget-HDF5 snapshot (Gadget-4, Arepo/TNG, SWIFT: one file, its numbered files, or their folder): "
    "each halo gets its dark-matter particles within R200m (docs/snapshots.md).",
)
drop_empty_option = click.option(
    "--drop-empty",
    is_flag=True,
    help="With --particles-snapshot: leave out halos without a particle within R200m (counted in the catalog).",
)

# the registered halo readers (sims.halos.formats): their names, and what each reads
FORMAT_CHOICE = click.Choice(list(readers()))
FORMAT_HELP = "; ".join(f"{r.name}: {r.description}" for r in readers().values())


@click.command("halos")
@click.option(
    "--halos", "n_halos", type=click.IntRange(min=1), default=20_000, show_default=True, help="Number of halos."
)
@click.option("--seed", type=click.IntRange(min=0), default=42, show_default=True, help="Population seed.")
@click.option(
    "--max-particles",
    type=click.IntRange(min=10),
    default=20_000,
    show_default=True,
    help="Most particles per halo (heavier halos get heavier particles).",
)
@click.option("--name", default=None, help="Catalog name [default: halos-synthetic-N-sSEED].")
@json_option
@click.pass_context
def sim_halos(ctx: click.Context, n_halos: int, seed: int, max_particles: int, name: str | None, as_json: bool) -> None:
    """Write a synthetic halo population with galaxies (docs/protocols.md#halos) to the catalog."""
    from sims.halos.ingest import store_catalog
    from sims.halos.population import (
        MAX_HALOS,
        MAX_SEED,
        PopulationConfig,
        iter_population,
    )

    # refused at once: not by a MemoryError, nor by the catalog once the population is simulated
    if n_halos > MAX_HALOS:
        raise UsageFailure(f"--halos {n_halos}: at most {MAX_HALOS:,} halos (their properties are held in memory)")
    if seed > MAX_SEED:
        raise UsageFailure(f"--seed {seed}: at most 2**63 - 1 = {MAX_SEED} (the catalog stores seeds as int64)")
    config = PopulationConfig(n_halos=n_halos, seed=seed, max_particles=max_particles)
    cat = _catalog(ctx)
    name = name or f"halos-synthetic-{n_halos}-s{seed}"
    # catalog errors go to the command line's handler: a full disk is a failure (1), a bad name usage (2)
    with _console().status(f"simulating {n_halos} halos"):
        ref = store_catalog(
            cat,
            iter_population(config, chunk_halos=500),
            name,
            params={"population": json.loads(config.to_json())},
            seed=seed,
        )
    _emit_json({"ref": ref, "halos": n_halos}) if as_json else click.echo(ref)


def _catalog_stem(name: str) -> str:
    """A file's name without the suffixes of halo files, so that hlist_0.07812.list and
    hlist_0.50000.list get two names, not one."""
    for suffix in (".gz", ".list", ".ascii", ".bin", ".dat", ".hdf5", ".h5"):
        name = name.removesuffix(suffix)
    return name


def _snapshot_files(paths: tuple[str, ...]) -> str | list[str] | None:
    """--particles-snapshot as sims.halos.snapshot reads it: one path (a file or a folder) or the files in order."""
    return None if not paths else paths[0] if len(paths) == 1 else list(paths)


@contextmanager
def _input_warnings() -> Iterator[None]:
    """Warnings about the input (a negative redshift, halos left out) as 'warning: ...' lines on
    stderr, shown also when the command then fails; other warnings go on as usual."""
    from sims.halos.catalog import HaloInputWarning

    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", HaloInputWarning)
            yield
    finally:
        for w in caught:
            if issubclass(w.category, HaloInputWarning):
                click.echo(f"warning: {w.message}", err=True)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


@click.command("halos")
@click.argument("path", type=click.Path(exists=True))
@click.option(
    "--format",
    "fmt",
    type=FORMAT_CHOICE,
    required=True,
    help=f"{FORMAT_HELP}.",
)
@snapshot_option
@particles_option
@click.option(
    "--matching",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="TNG dark-to-hydro matching file (with --hydro): attaches the galaxy targets.",
)
@click.option(
    "--hydro",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="The hydro twin's output folder (with --matching).",
)
@click.option(
    "--min-log-mass",
    type=float,
    default=None,
    help="tng only: keep halos with log10 M200m >= this, in Msun/h (docs/protocols.md#halos uses 10.25) [default: all].",
)
@particles_snapshot_option
@drop_empty_option
@click.option("--name", default=None, help="Catalog name [default: halos-<file or folder name>[-<snapshot>]].")
@json_option
@click.pass_context
def ingest_halos_command(
    ctx: click.Context,
    path: str,
    fmt: str,
    snapshot: int | None,
    particles: tuple[str, ...],
    matching: str | None,
    hydro: str | None,
    min_log_mass: float | None,
    particles_snapshot: tuple[str, ...],
    drop_empty: bool,
    name: str | None,
    as_json: bool,
) -> None:
    """Convert a halo catalog to the canonical form and store it; all or nothing."""
    from sims.halos.catalog import HaloCatalogError, HaloOptionError
    from sims.halos.ingest import ingest_halos

    if (matching is None) != (hydro is None):
        raise UsageFailure("--matching and --hydro go together: give both (to attach targets) or neither")
    cat = _catalog(ctx)
    stem = _catalog_stem(Path(path).absolute().name)
    name = name or (f"halos-{stem}" if snapshot is None else f"halos-{stem}-{snapshot:03d}")
    try:
        with _input_warnings(), _console().status(f"ingesting {path} ({fmt})"):
            ref = ingest_halos(
                cat,
                path,
                fmt,
                name,
                snapshot=snapshot,
                particles=particles or None,
                matching=matching,
                hydro=hydro,
                min_log_mass=min_log_mass,
                particles_snapshot=_snapshot_files(particles_snapshot),
                drop_empty=drop_empty,
            )
    except HaloOptionError as exc:
        raise UsageFailure(str(exc)) from None
    except HaloCatalogError as exc:  # a bad input file is an input error, like a bad option: status 2
        raise UsageFailure(f"{exc}\nnothing was written to the catalog") from None
    except ValueError as exc:  # (catalog errors go to the command line's handler, as in sim halos)
        raise UsageFailure(str(exc)) from None
    with cat.open(ref) as ds:
        n_halos, particles = int(ds.sizes["halo"]), int(ds.sizes.get("particle", 0))
    if as_json:
        _emit_json({"ref": ref, "halos": n_halos, "particles": particles})
    else:
        if not particles:  # said on stderr, so that stdout stays the ref alone
            click.echo(f"note: {path} has no particles: {n_halos} halos with their catalog properties only", err=True)
        click.echo(ref)


@click.command("predict-galaxies")
@click.argument("source")
@click.option(
    "--format",
    "fmt",
    type=click.Choice([*readers(), "catalog"]),
    default="hdf5",
    show_default=True,
    help=f"SOURCE is a file or folder ({FORMAT_HELP}) or a catalog ref NAME[@vN] (catalog).",
)
@snapshot_option
@particles_option
@particles_snapshot_option
@drop_empty_option
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Model ref NAME@vN (repeatable, one per target) [default: per target, the best stored model SOURCE "
    "supports: scalars with particles, else catalog properties, else mass only; seeds' ensembles first].",
)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Output file: .h5 or .csv.")
@force_option
@click.option(
    "--dask-address",
    default="threads",
    show_default=True,
    help="Dask scheduler for the scalars: 'threads', 'synchronous', 'local' or an address.",
)
@json_option
@click.pass_context
def predict_galaxies_command(
    ctx: click.Context,
    source: str,
    fmt: str,
    snapshot: int | None,
    particles: tuple[str, ...],
    particles_snapshot: tuple[str, ...],
    drop_empty: bool,
    models: tuple[str, ...],
    out: str,
    force: bool,
    dask_address: str,
    as_json: bool,
) -> None:
    """Predict galaxy properties (mean and uncertainty) for every halo of SOURCE, each by the best
    model SOURCE supports; says which model and why."""
    from pipeline.halos.scalars import HaloScalarsError
    from pipeline.outputs import atomic_path
    from sims.halos.catalog import HaloCatalogError
    from sims.halos.ingest import canonical_dataset, iter_source
    from surrogates.halos.choice import ModelChoiceError
    from surrogates.halos.predict import (
        FORMATS,
        NoHaloModelError,
        best_predictions,
        require_models,
        write_predictions,
    )

    cat = _catalog(ctx)
    options = {"snapshot": snapshot, "particles": list(particles) or None}
    if fmt == "catalog" and (snapshot is not None or particles or particles_snapshot or drop_empty):
        raise UsageFailure(
            "--snapshot, --particles, --particles-snapshot and --drop-empty read a halo file, not --format catalog "
            "(ingest the file with them first)"
        )
    if fmt != "catalog":  # the reader's own options, checked before any work
        try:
            checked_options(get_reader(fmt), source, options)
        except HaloOptionError as exc:
            raise UsageFailure(str(exc)) from None
    if Path(out).suffix.lower() not in FORMATS:
        raise UsageFailure(f"--out {out}: unknown output format; use one of {', '.join(FORMATS)}")
    out_path = checked_output(ctx, "--out", out, force)
    if fmt != "catalog" and out_path == Path(os.path.realpath(source)):  # even --force must not eat the input
        raise UsageFailure(f"--out {out}: is SOURCE {source}; give another name")
    try:
        candidates = require_models(cat, models)  # before SOURCE is read
        with _input_warnings(), _console().status(f"predicting for {source}"):
            if fmt == "catalog":
                concrete = cat.resolve(source)
                with cat.open(concrete) as ds:
                    predictions, choices, notes = best_predictions(
                        cat, ds, models=models, candidates=candidates, dask_address=dask_address, source=concrete
                    )
            else:
                if not os.path.exists(source):
                    raise UsageFailure(f"{source}: no such file or folder")
                given = {k: v for k, v in options.items() if v is not None}
                with cat.scratch() as folder:
                    snapshot_files = _snapshot_files(particles_snapshot)
                    chunks = iter_source(
                        source, fmt, particles_snapshot=snapshot_files, drop_empty=drop_empty, scratch=folder, **given
                    )
                    with canonical_dataset(chunks, cat) as ds:
                        predictions, choices, notes = best_predictions(
                            cat, ds, models=models, candidates=candidates, dask_address=dask_address, source=source
                        )
        with atomic_path(out_path) as tmp:  # synced, 0644, and renamed over --out only when complete
            write_predictions(predictions, tmp)
    except HaloCatalogError as exc:  # a bad halo file or option (HaloOptionError): an input error, status 2
        raise UsageFailure(str(exc)) from None
    except HaloScalarsError as exc:  # halos of SOURCE the scalars cannot use: an input error too
        raise UsageFailure(f"{source}: {exc}") from None
    except (NoHaloModelError, ModelChoiceError, ValueError) as exc:  # (catalog errors: the handler)
        raise UsageFailure(str(exc)) from None
    summary = {
        "out": out,
        "halos": int(predictions.sizes["halo"]),
        "models": list(predictions.attrs["models"]),
        "targets": [c.target for c in choices],
        "choices": [c.summary() for c in choices],
        "warnings": notes,
    }
    if as_json:
        _emit_json(summary)
        return
    for note in notes:
        click.echo(f"warning: {note}", err=True)
    for choice in choices:
        click.echo(f"{choice.target}: " + "; ".join(choice.reasons))
    click.echo(f"{summary['halos']} halos, {', '.join(summary['models'])} -> {out}")


@click.command("halos")
@click.option(
    "--preset",
    type=click.Choice(["smoke", "quick", "paper"]),
    default="quick",
    show_default=True,
    help="smoke: 300 halos, seconds; quick: 4,000 halos, minutes on 2 CPU cores; paper: 31,000 halos at TNG100-Dark particle mass.",
)
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Training seeds per MLP.")
@click.option(
    "--model",
    "models",
    multiple=True,
    type=click.Choice(["mass-only", "global", "scalars", "catalog"]),
    help="Only these models (repeatable) [default: all of them; those the catalog lacks the inputs of are left out].",
)
@click.option("--target", "targets", multiple=True, help="Targets (repeatable) [default: log_mstar].")
@click.option(
    "--source",
    type=click.Path(exists=True),
    default=None,
    help="Train on this halo file instead of the synthetic population (with --format).",
)
@click.option("--format", "fmt", type=FORMAT_CHOICE, default=None, help="Format of --source.")
@click.option("--snapshot", type=click.IntRange(min=0), default=None, help="Snapshot number (tng only).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the summary here (.json or .md).")
@force_option
@json_option
@click.pass_context
def reproduce_halos(
    ctx: click.Context,
    preset: str,
    seeds: int,
    models: tuple[str, ...],
    targets: tuple[str, ...],
    source: str | None,
    fmt: str | None,
    snapshot: int | None,
    out: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Galaxy properties from halos: catalog, scalars, models with OOD tests, sigma68 table, feature ranking."""
    out_path = checked_output(ctx, "--out", out, force)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from pipeline.halos.summary import halos_table as markdown_table

    from .flow import halos_flow

    if (source is None) != (fmt is None):
        raise UsageFailure("--source and --format go together")
    cat = _catalog(ctx)
    state = halos_flow(
        preset=preset,
        seeds=seeds,
        catalog=str(cat.root),
        source=source,
        format=fmt,
        snapshot=snapshot,
        targets=list(targets) or None,
        models=list(models) or None,
        return_state=True,
    )
    summary = dict(_flow_result(state, "halos").details)
    text = f"### Galaxy properties from halos, preset {preset} ({summary['catalog']})\n\n{markdown_table(summary)}"
    write_summary(out_path, out, summary, text)
    _emit_json(summary) if as_json else click.echo(text)


bench_halos = benchmark_command(
    "halos", "pipeline.halos.benchmark:main", "Halo-scalar throughput and the workers' peak memory."
)
