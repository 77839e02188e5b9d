"""``eqs fit`` and ``eqs predict``: a system of your own, from a data file and a declaration.

Bad declarations and data are input errors: status 2, a message naming the file, the variable and
what was expected, and nothing written to the catalog (every check runs before the first write).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from pipeline.declared.methods import METHODS

from ..cli.core import (
    UsageFailure,
    _catalog,
    _emit_json,
    _flow_result,
    _refuse_inside_catalog,
    checked_output,
    force_option,
    json_option,
    write_summary,
)

PRESET_HELP = (
    "smoke: tiny networks, 20 epochs, 1 seed (a check that everything runs); quick: 64x64 networks, up to 400 "
    "epochs with early stopping, 3 seeds; full: 128x128x128 networks, up to 2000 epochs, 3 seeds."
)


def _input_problem(exc: Exception, data: str, declaration: str) -> UsageFailure:
    """The message names the option or file at fault; one about the system alone comes from the declaration."""
    text = str(exc)
    named = declaration in text or str(data) in text or text.startswith("--")
    return UsageFailure(text if named else f"--declaration {declaration}: {text}")


@click.command("fit")
@click.argument("data", type=click.Path(dir_okay=True))
@click.option(
    "--declaration",
    required=True,
    type=click.Path(dir_okay=False),
    help="JSON or TOML file declaring the system: every variable's units, kind (scalar, vector, position, tensor) "
    "and role (parameter, state, target), the symmetry group (none, O(d), SO(d), E(d), SE(d), O(1,d)), and "
    "optionally a relabelled set of members and fit settings; see docs/fit.md and docs/examples.",
)
@click.option(
    "--target", "targets", multiple=True, help="A declared target to fit (repeat for several) [default: every target]."
)
@click.option(
    "--shift-by",
    default=None,
    help="The quantity of the range-shift test: a declared scalar input or an invariant such as 'v.v' "
    "[default: the declaration's fit.shift_by].",
)
@click.option(
    "--preset", type=click.Choice(["smoke", "quick", "full"]), default="quick", show_default=True, help=PRESET_HELP
)
@click.option(
    "--seeds", type=click.IntRange(min=1), default=None, help="Training seeds per model [default: the preset's]."
)
@click.option(
    "--method",
    "methods",
    multiple=True,
    type=click.Choice(METHODS),
    help="Methods to train (repeat) [default: pi, the invariant and units-equivariant model; scalars and raw, the "
    "two baselines]. Also: frame (frame averaging over PCA frames, exact; O(d), SO(d), E(d), SE(d)), canonical "
    "(one PCA frame), augment (randomly moved samples), penalty (an equivariance penalty), e3nn (irreps tensor "
    "products; 3-D systems), emlp (equivariant MLP layers; O(d), SO(d), E(d), SE(d)) and relaxed (invariant scalars plus a penalised raw pathway, for a symmetry the data "
    "break), for comparison.",
)
@click.option("--name", default=None, help="Catalog name of the data [default: fit-<the declaration's name>].")
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where report.html and report.md go [default: reports/fit-<the declaration's name> in the working directory].",
)
@click.option("--out", default=None, help="Also write the summary table here (Markdown, or JSON for a .json name).")
@click.option(
    "--dask-address",
    default=None,
    help="dask scheduler of the feature extraction [default: $EQS_DASK_ADDRESS, else threads].",
)
@force_option
@json_option
@click.pass_context
def fit(
    ctx: click.Context,
    data: str,
    declaration: str,
    targets: tuple[str, ...],
    shift_by: str | None,
    preset: str,
    seeds: int | None,
    methods: tuple[str, ...],
    name: str | None,
    report_dir: str | None,
    out: str | None,
    dask_address: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Fit exactly equivariant surrogates of a system of your own, and evaluate them out of distribution.

    DATA is a netCDF/HDF5 file (or a zarr folder) with a 'sample' dimension: one variable per declared
    quantity, a 'units' attribute on each (else the declared units are assumed), and vectors with their
    components on a second dimension. Steps, each cached in the catalog: ingest (checked against the
    declaration), features (invariant scalars and Pi groups), splits and test sets (held out; moved by
    the symmetry group; in other units; rescaled; range shift), training of three methods per target
    and seed, evaluation, and the report section.

    \b
    Example:
      python docs/examples/charged-particle/generate.py --out particles.nc
      eqs fit particles.nc --declaration docs/examples/charged-particle/declaration.json
    """
    from sims.declaration import DeclarationError

    out_path = checked_output(ctx, "--out", out, force)
    if name is not None:
        from data_catalog.names import validate_name

        try:
            validate_name(name)
        except ValueError as exc:
            raise UsageFailure(f"--name {name}: {exc}") from None
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from pipeline.declared.methods import DEFAULT_METHODS

    from ..conventions import dask_address_for
    from .flow import checked_input, fit_flow, result_name

    try:  # every check before the first write: a bad input leaves nothing in the catalog
        pi = "pi" in (methods or DEFAULT_METHODS)  # only the Pi-group model needs the target's units made
        decl, canonical, _, chosen = checked_input(data, declaration, shift_by, list(targets) or None, pi)
    except DeclarationError as exc:
        raise _input_problem(exc, data, declaration) from None
    from .flow import method_refusals

    for method, why in method_refusals(methods, decl).items():
        raise UsageFailure(f"--method {method}: {why}")
    where = report_dir or os.path.join("reports", result_name(decl.name))
    _refuse_inside_catalog(ctx, "--report-dir", where, os.path.realpath(where))
    cat = _catalog(ctx)
    if "units_assumed" in canonical.attrs:
        click.echo(
            f"note: {data}: no 'units' attribute on {canonical.attrs['units_assumed']}; taken in the declared units",
            err=True,
        )
    click.echo(  # progress on stderr: stdout holds only the result (JSON with --json)
        f"fitting {', '.join(chosen)} of {decl.name!r} ({canonical.sizes['sample']} samples, {decl.symmetry}) "
        f"with preset {preset}",
        err=True,
    )
    state = fit_flow(
        data=data,
        declaration=declaration,
        targets=list(chosen),
        shift_by=shift_by,
        preset=preset,
        seeds=seeds,
        methods=list(methods) or None,
        name=name,
        catalog=str(cat.root),
        dask_address=dask_address_for(dask_address),  # None would start a local cluster
        report_dir=where,
        return_state=True,
    )
    result = _flow_result(state, "eqs fit")
    from pipeline.declared.summary import summary_markdown

    text = summary_markdown(result)
    write_summary(out_path, out, result.to_dict(), text)
    if as_json:
        _emit_json({"catalog": str(cat.root), "report": str(Path(where) / "report.html"), "result": result.to_dict()})
    else:
        click.echo(text)
        click.echo(f"report: {Path(where) / 'report.html'}")


@click.command("predict")
@click.argument("model")
@click.argument("data", type=click.Path(dir_okay=True))
@click.option("--out", required=True, help="netCDF file of the predictions (the target, and its sigma when noisy).")
@click.option(
    "--declaration",
    default=None,
    type=click.Path(dir_okay=False),
    help="The declaration of DATA, when it has one of its own: checked against the model's.",
)
@force_option
@json_option
@click.pass_context
def predict(
    ctx: click.Context, model: str, data: str, out: str, declaration: str | None, force: bool, as_json: bool
) -> None:
    """Apply a stored surrogate MODEL (NAME[@vN], from eqs fit) to new DATA.

    Surrogates are named fit-<data>-<target>-<method>-<split>-s<seed> (eqs catalog list shows them;
    the report cites them); the pi ones trained on the random split are the ones to use.

    DATA has the model's input variables (targets are not needed; those present are scored), with
    units attributes in any units pint converts to the declared ones.
    """
    from pipeline.declared.data import DataError
    from sims.declaration import DeclarationError

    out_path = checked_output(ctx, "--out", out, force)
    if out_path is not None and os.path.exists(out_path) and os.path.exists(data) and os.path.samefile(out_path, data):
        raise UsageFailure(f"--out {out}: is DATA; write the predictions to another file")
    from .predict import predict_file

    try:
        summary = predict_file(_catalog(ctx), model, data, out_path, declaration)
    except (DeclarationError, DataError) as exc:
        raise UsageFailure(str(exc)) from None
    if as_json:
        _emit_json(summary)
    else:
        scored = summary.get("median_relative_error")
        score = f"; median relative error {scored:.4g} where DATA has the target" if scored is not None else ""
        click.echo(f"{summary['samples']} predictions of {summary['model']} -> {summary['out']}{score}")
