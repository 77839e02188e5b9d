"""Shared fixtures: a temporary catalog (the test kind is registered by importing support)."""

from __future__ import annotations

import pytest
import support  # noqa: F401  (registers the test kind)

from data_catalog import Catalog


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    return Catalog(tmp_path / "catalog")
