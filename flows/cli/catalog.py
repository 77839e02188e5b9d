"""``eqs catalog ...``: inspect and verify the versioned dataset catalog."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from rich.tree import Tree

from data_catalog import CatalogError, DatasetInfo

from .core import _catalog, _console, _emit_json, _guard, _size, json_option, main


@main.group()
def catalog() -> None:
    """Inspect and verify the versioned dataset catalog."""


@catalog.command("list")
@click.option("--all", "all_versions", is_flag=True, help="Every version, not only the latest of each name.")
@json_option
@click.pass_context
@_guard
def catalog_list(ctx: click.Context, all_versions: bool, as_json: bool) -> None:
    """List datasets (latest version of each name); unreadable versions are named, exit status 1."""
    cat = _catalog(ctx)
    refs = cat.refs(all_versions=all_versions)
    infos, unreadable = [], []
    for ref in refs:
        try:
            infos.append(cat.info(ref))
        except (CatalogError, OSError) as exc:  # one damaged or unreadable file must not hide the rest
            unreadable.append({"ref": ref, "error": str(exc)})
    if as_json:
        rows = [
            {
                "ref": i.ref,
                "kind": i.kind,
                "versions": len(cat.versions(i.name)),
                "created_utc": i.created_utc,
                "size_bytes": i.size_bytes,
                "content_sha256": i.content_sha256,
            }
            for i in infos
        ]
        _emit_json(rows + [{"ref": u["ref"], "unreadable": u["error"]} for u in unreadable])
    elif not refs:
        click.echo(f"catalog {cat.root} is empty")
    else:
        table = Table(title=f"catalog {cat.root}", title_justify="left")
        for column in ("ref", "kind", "versions", "created (UTC)", "size", "sha256"):
            table.add_column(column, justify="right" if column in ("versions", "size") else "left")
        for i in infos:
            created = i.created_utc.replace("T", " ").removesuffix("+00:00")
            cells = (i.ref, i.kind, str(len(cat.versions(i.name))), created, _size(i.size_bytes), i.content_sha256[:12])
            table.add_row(*map(escape, cells))
        _console().print(table)
        for u in unreadable:
            click.echo(f"UNREADABLE {u['ref']}: {u['error']}", err=True)
    if unreadable:
        ctx.exit(1)


def _show_table(info: DatasetInfo) -> None:
    console = _console()
    meta = Table(show_header=False, title=info.ref, title_justify="left")
    meta.add_column(style="bold")
    meta.add_column()
    for key in ("kind", "created_utc", "code_version", "content_sha256", "path"):
        meta.add_row(key, escape(str(getattr(info, key))))
    meta.add_row("size", _size(info.size_bytes))
    meta.add_row("seed", str(info.seed))
    meta.add_row("params", escape(json.dumps(info.params, sort_keys=True)))
    meta.add_row("parents", escape(", ".join(info.parents) or "-"))
    for key, value in info.attrs.items():
        meta.add_row(escape(f"attr {key}"), escape(str(value)))
    console.print(meta)
    variables = Table(title="variables", title_justify="left")
    for column in ("name", "dims", "shape", "dtype", "units", "coordinate"):
        variables.add_column(column)
    for v in info.variables:
        cells = (v.name, ", ".join(v.dims), "x".join(map(str, v.shape)) or "scalar", v.dtype, v.units or "-")
        variables.add_row(*map(escape, cells), "yes" if v.is_coord else "")
    console.print(variables)


@catalog.command("show")
@click.argument("ref")
@json_option
@click.pass_context
@_guard
def catalog_show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show metadata and variables of NAME[@vN] (the latest version when no version is given)."""
    info = _catalog(ctx).info(ref)
    if as_json:
        _emit_json(info.to_dict())
    else:
        _show_table(info)


@catalog.command("verify")
@click.argument("ref", required=False)
@json_option
@click.pass_context
@_guard
def catalog_verify(ctx: click.Context, ref: str | None, as_json: bool) -> None:
    """Recompute checksums of NAME[@vN], or of every version; exit status 1 on any corruption."""
    cat = _catalog(ctx)
    if sys.stderr.isatty() and not as_json:
        with Progress(transient=True, console=Console(stderr=True)) as bar:
            job = bar.add_task("verifying", total=1 if ref else len(cat.refs()))
            report = cat.verify(ref, progress=lambda result: bar.update(job, advance=1, description=result.ref))
    else:
        report = cat.verify(ref)
    if as_json:
        _emit_json({"catalog": str(cat.root), **report.to_dict()})
    else:
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
        for result in report.corrupt:
            click.echo(f"CORRUPT {result.ref}: {result.path}", err=True)
            for problem in result.problems:
                click.echo(f"  - {problem}", err=True)
        status = "ok" if report.ok else f"{len(report.corrupt)} corrupt"
        click.echo(f"verified {len(report.results)} version(s) in {cat.root}: {status}")
    if not report.ok:
        ctx.exit(1)


@catalog.command("lineage")
@click.argument("ref")
@json_option
@click.pass_context
@_guard
def catalog_lineage(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show the parents graph of NAME@vN, back to the raw datasets."""
    graph = _catalog(ctx).lineage(ref)
    root = next(iter(graph))
    if as_json:
        _emit_json({"ref": root, "nodes": graph})
        return

    def label(node: str) -> str:
        entry = graph[node]
        if entry["missing"]:
            return escape(f"{node}  (missing)")
        if entry["error"]:
            return escape(f"{node}  (unreadable: {entry['error']})")
        return escape(f"{node}  [{entry['kind']}, {entry['created_utc']}]")

    def grow(branch: Tree, node: str, path: tuple[str, ...]) -> None:
        for parent in graph[node]["parents"]:
            child = branch.add(label(parent))
            if parent not in path:
                grow(child, parent, path + (parent,))

    tree = Tree(label(root))
    grow(tree, root, (root,))
    _console().print(tree)
