"""The layers of docs/architecture.md: each package imports only the layers before it in LAYERS."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["data_catalog", "sims", "pipeline", "surrogates", "flows"]


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("index, layer", list(enumerate(LAYERS)))
def test_layer_imports_only_layers_above(index, layer):
    allowed = set(LAYERS[: index + 1])
    forbidden = set(LAYERS) - allowed
    for path in sorted((ROOT / layer).rglob("*.py")):
        bad = _imported_packages(path) & forbidden
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}, which lie above {layer} in docs/architecture.md"


def test_data_catalog_does_not_import_prefect_or_torch():
    for path in sorted((ROOT / "data_catalog").rglob("*.py")):
        assert not _imported_packages(path) & {"prefect", "torch", "dask", "pint"}, path
