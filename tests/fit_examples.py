"""The shipped example systems of ``eqs fit`` (docs/examples), loaded for tests: their generators'
``make_dataset`` and their declarations."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from sims.declaration import SystemDeclaration

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
NAMES = ("charged-particle", "ee-to-mumu", "n-body")


@cache
def generator(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name.replace('-', '_')}", EXAMPLES / name / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def declaration_path(name: str) -> Path:
    return EXAMPLES / name / "declaration.json"


def declaration(name: str) -> SystemDeclaration:
    return SystemDeclaration.from_file(declaration_path(name))


def dataset(name: str, n: int = 300, seed: int = 0, **options):
    return generator(name).make_dataset(n, seed, **options)
