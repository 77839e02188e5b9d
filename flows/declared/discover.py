"""``eqs discover``: the symmetries of a declared system found from its data alone (docs/discovery.md).

Read-only: the data and declaration are checked as ``eqs fit`` checks them, an unconstrained model
is fitted in memory, and the result goes to the terminal (and ``--out``); nothing is written to the
catalog.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..cli.core import (
    UsageFailure,
    _emit_json,
    checked_output,
    force_option,
    json_option,
    write_atomic,
    write_summary,
)
from .cli import PRESET_HELP, _input_problem

DERIVED_FILES = ("declaration.json", "data.nc")
AXIS = "axis"  # the name of the discovered axis among the derived system's inputs (with _ added while taken)
# discovery reads the fitted model's derivatives; above this median relative error they say more about the
# model than about the data (the acceptance cases need about 1 %; docs/discovery.md)
TRUSTED_MODEL_ERROR = 0.1


def discover_symmetries(
    data: str,
    declaration: str,
    targets: list[str] | None,
    preset: str,
    seed: int,
    threshold: float,
    gap: float,
    derive: Path | None = None,
) -> dict[str, Any]:
    """Per target: the fitted model's error and what it respects (``surrogates.declared.discovery``);
    with ``derive``, the system with the discovered group declared is written there (:func:`derived_system`)."""
    from pipeline.declared.splits import random_split
    from surrogates.declared import discovery
    from surrogates.declared.models import fit_surrogate

    from .flow import checked_input, preset_settings, training_config

    # no Pi-group model is built: a target whose units the inputs cannot make (constants left out) is fine
    decl, canonical, conditions, chosen = checked_input(data, declaration, None, targets, units_equivariant=False)
    names = [q.name for q in decl.inputs_only().quantities]
    values = {n: np.asarray(canonical[n].values, dtype=np.float64) for n in names}
    parts = random_split(canonical.sizes["sample"], decl.fit.split)
    constant = discovery.constant_inputs(decl, values)
    out: dict[str, Any] = {"system": decl.name, "symmetry_declared": decl.symmetry, "targets": []}
    for target in chosen:
        y = np.asarray(canonical[target].values, dtype=np.float64)

        def take(part: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
            index = parts[part]
            return {n: v[index] for n, v in values.items()}, y[index]

        model, _ = fit_surrogate(
            decl.to_dict(),
            target,
            "raw",
            take("train"),
            take("val"),
            training_config(preset, seed),
            hidden=preset_settings(preset)["hidden"],
            signed=list(conditions.signed),
            zero=list(conditions.zero),
        )
        test_values, test_target = take("test")
        found = discovery.discover(model, test_values, threshold, constant, gap)
        found["model_error"] = discovery.median_error(model, test_values, test_target)
        found["model_trusted"] = found["model_error"] <= TRUSTED_MODEL_ERROR
        out["targets"].append(found)
    if derive is not None:
        spec, derived, added = derived_system(decl, canonical, common_group(out["targets"]))
        write_atomic(derive / "declaration.json", (json.dumps(spec, indent=1) + "\n").encode("utf-8"))
        tmp = derive / ".data.nc.tmp"
        try:
            derived.to_netcdf(tmp, engine="h5netcdf")
            tmp.replace(derive / "data.nc")
        finally:
            tmp.unlink(missing_ok=True)
        out["derived"] = {"folder": str(derive), "symmetry": spec["symmetry"], "inputs_added": added}
    return out


def common_group(targets: list[dict[str, Any]]):
    """The one group every target's discovery describes (pipeline.discovery.discovered_group); a ValueError
    when a target's is none a declaration can state or the targets' differ."""
    from pipeline.discovery import ANGLE_TOLERANCE, discovered_group

    groups = []
    for t in targets:
        if "linear" not in t:
            raise ValueError(f"--derive: target {t['target']}: the declaration has no vector or tensor inputs to move")
        try:
            groups.append(discovered_group(t["linear"]))
        except ValueError as exc:
            raise ValueError(f"--derive: target {t['target']}: {exc}") from None
    first = groups[0]
    for t, g in zip(targets[1:], groups[1:]):
        same_axis = g.axis is None or abs(float(np.dot(g.axis, first.axis))) > np.cos(np.radians(ANGLE_TOLERANCE))
        if g.linear != first.linear or not same_axis:
            raise ValueError(
                f"--derive: targets {targets[0]['target']} and {t['target']} have different symmetries; "
                "derive one at a time with --target"
            )
    return first


def derived_system(decl, canonical, group) -> tuple[dict[str, Any], Any, list[str]]:
    """The declaration (a dict), data and the names of the inputs added, of the system
    with the discovered ``group`` declared: its symmetry, and for the rotations about one axis the axis as a
    dimensionless vector parameter (rotations about an axis are the rotations of the inputs and the axis)."""
    spec = decl.to_dict()
    spec["symmetry"] = group.symmetry(translations=decl.group in ("E", "SE"))
    spec["description"] = f"{decl.name} with the symmetry eqs discover found in its data ({spec['symmetry']})"
    derived = canonical.copy()
    added = []
    if group.axis is not None:
        taken = {q.name for q in decl.quantities}
        name = AXIS
        while name in taken:
            name += "_"
        axis = np.tile(np.asarray(group.axis, dtype=np.float64), (canonical.sizes["sample"], 1))
        derived[name] = (("sample", "space"), axis, {"units": "1", "long_name": "the discovered rotation axis"})
        quantity = {"name": name, "units": "1", "kind": "vector", "role": "parameter"}
        quantity["description"] = "the axis of the rotations eqs discover found (the same for every sample)"
        spec["quantities"].insert(next(i for i, q in enumerate(spec["quantities"]) if q["role"] == "target"), quantity)
        added.append(name)
    return spec, derived, added


def checked_folder(ctx: click.Context, given: str | None, force: bool) -> Path | None:
    """--derive's folder, created, its files checked before any work as --out is."""
    if given is None:
        return None
    folder = Path(given)
    if folder.exists() and not folder.is_dir():
        raise UsageFailure(f"--derive {given}: not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageFailure(f"--derive {given}: cannot be created ({exc.strerror})") from None
    for name in DERIVED_FILES:
        checked_output(ctx, "--derive", str(folder / name), force)
    return folder.resolve()


def _angles(values: list[float]) -> str:
    return ", ".join(f"{a:.2g}" for a in values) + " degrees" if values else "none"


def _residuals(values: list[float], dimension: int) -> str:
    shown = values[: dimension + 2]
    return " ".join(f"{v:.3g}" for v in shown[:dimension]) + " | " + " ".join(f"{v:.3g}" for v in shown[dimension:])


def summary_text(result: dict[str, Any]) -> str:
    lines = [f"system {result['system']!r} (declared symmetry {result['symmetry_declared']})"]
    for t in result["targets"]:
        lines.append("")
        lines.append(
            f"target {t['target']}: an unconstrained MLP, median relative error {t['model_error']:.3g} on the "
            f"{t['samples']} held-out samples the discovery reads (threshold {t['threshold']:g}, gap {t['gap']:g})"
        )
        if t["model_error"] > TRUSTED_MODEL_ERROR:
            lines.append(
                f"  caution: that error is above {TRUSTED_MODEL_ERROR:g}. Discovery reads the model's derivatives, so "
                "neither what is found below nor what is not can be trusted; more samples or --preset full may fit better."
            )
        if "linear" in t:
            lin = t["linear"]
            d = lin["space_dim"]
            lines.append(
                f"  linear symmetries of the {d}-D vector space: {lin['dimension']} generator(s); "
                f"relative residuals {_residuals(lin['relative_residuals'], lin['dimension'])}"
            )
            if lin["dimension"]:
                lines.append(f"    principal angles to so({d}): {_angles(lin['angles_to_rotations'])}")
                if "angles_to_lorentz" in lin:
                    lines.append(f"    principal angles to so(1,{d - 1}): {_angles(lin['angles_to_lorentz'])}")
                if "axis" in lin:
                    axis = ", ".join(f"{c:+.3f}" for c in lin["axis"])
                    lines.append(
                        f"    a rotation about ({axis}); angle to so(2) about that axis: "
                        f"{_angles(lin['angles_to_rotations_about_axis'])}"
                    )
        sc = t["scalings"]
        lines.append(
            f"  scalings: {sc['dimension']} found, {sc['expected_dimension']} predicted by the units "
            f"({', '.join(sc['base_dimensions'])}); relative residuals {_residuals(sc['relative_residuals'], sc['dimension'])}"
        )
        if sc["dimension"]:
            lines.append(f"    principal angles to the dimensional analysis: {_angles(sc['angles_to_dimensional'])}")
            for row in sc["exponents"]:
                row = np.asarray(row) / np.abs(row).max()
                terms = ", ".join(f"{q} {e:+.3f}" for q, e in zip(sc["quantities"], row))
                lines.append(f"    exponents: {terms}")
        if sc["left_out_as_constant"]:
            lines.append(f"    left out (constant in the data): {', '.join(sc['left_out_as_constant'])}")
    return "\n".join(lines)


@click.command("discover")
@click.argument("data", type=click.Path(dir_okay=True))
@click.option(
    "--declaration",
    required=True,
    type=click.Path(dir_okay=False),
    help="The declaration of DATA (as for eqs fit): which variables are vectors, their units, the targets.",
)
@click.option("--target", "targets", multiple=True, help="A declared target (repeat) [default: every target].")
@click.option(
    "--preset", type=click.Choice(["smoke", "quick", "full"]), default="quick", show_default=True, help=PRESET_HELP
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Training seed.")
@click.option(
    "--threshold",
    type=click.FloatRange(min=0, min_open=True, max=1),
    default=0.2,
    show_default=True,
    help="A direction is a symmetry when its residual is below this fraction of the typical direction's.",
)
@click.option(
    "--gap",
    type=click.FloatRange(min=1),
    default=2.5,
    show_default=True,
    help="...and the first direction that is not a symmetry has at least this many times the last one's residual.",
)
@click.option("--out", default=None, help="Also write the result here (JSON for a .json name, else text).")
@click.option(
    "--derive",
    default=None,
    type=click.Path(file_okay=False),
    help="Write DIR/declaration.json and DIR/data.nc: the system with the discovered group declared (the rotations "
    "about one axis: SO(3) with the axis as an input), for eqs fit.",
    metavar="DIR",
)
@force_option
@json_option
@click.pass_context
def discover(
    ctx: click.Context,
    data: str,
    declaration: str,
    targets: tuple[str, ...],
    preset: str,
    seed: int,
    threshold: float,
    gap: float,
    out: str | None,
    derive: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Find the symmetries of DATA's targets from the data alone.

    An MLP of the raw components (no symmetry built in) is fitted to each target, differentiated at
    held-out samples, and the linear transformations of the declared vectors (a Lie algebra, compared
    with the rotations and, under O(1,d), the Lorentz algebra) and the scalings of the quantities
    (compared with their units) that leave it invariant, or equivariant for a vector target, are
    found by one SVD (LieGG's method). The declared symmetry group is not used.
    """
    from sims.declaration import DeclarationError

    out_path = checked_output(ctx, "--out", out, force)
    derive_dir = checked_folder(ctx, derive, force)
    try:
        result = discover_symmetries(data, declaration, list(targets) or None, preset, seed, threshold, gap, derive_dir)
    except DeclarationError as exc:
        raise _input_problem(exc, data, declaration) from None
    except ValueError as exc:
        raise UsageFailure(f"{data}: {exc}") from None
    text = summary_text(result)
    if "derived" in result:
        d = result["derived"]
        added = f", with {', '.join(d['inputs_added'])} added to the inputs" if d["inputs_added"] else ""
        text += f"\n\nwritten to {d['folder']}: the system declared {d['symmetry']}{added} ({', '.join(DERIVED_FILES)})"
    write_summary(out_path, out, result, text)
    if as_json:
        _emit_json(result)
    else:
        click.echo(text)
