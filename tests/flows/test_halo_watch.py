"""The watched-directory ingest flow: new files are ingested once, changed files again, bad ones name themselves."""

from __future__ import annotations

import os

import pytest

import sims.halos.ingest
from data_catalog import Catalog
from flows.halos.watch import dataset_name, halo_watch
from sims.halos.population import PopulationConfig, generate_population
from sims.halos.readers import write_canonical


@pytest.fixture
def watched(tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    write_canonical([generate_population(PopulationConfig(n_halos=8, max_particles=120, seed=3))], folder / "a.hdf5")
    (folder / "notes.txt").write_text("not a catalog")
    return folder


def test_new_files_are_ingested_once(watched, tmp_path, monkeypatch):
    catalog = tmp_path / "catalog"
    first = halo_watch(str(watched), format="hdf5", catalog=str(catalog))
    assert list(first["ingested"]) == ["a.hdf5"]
    ref = first["ingested"]["a.hdf5"]
    assert Catalog(catalog).info(ref).kind == "halos.catalog"

    calls = []
    real = sims.halos.ingest.ingest_halos
    monkeypatch.setattr(sims.halos.ingest, "ingest_halos", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    assert halo_watch(str(watched), format="hdf5", catalog=str(catalog))["ingested"] == {"a.hdf5": ref}
    assert calls == []  # unchanged file: not read again

    write_canonical([generate_population(PopulationConfig(n_halos=5, max_particles=120, seed=4))], watched / "b.hdf5")
    stat = (watched / "a.hdf5").stat()
    os.utime(watched / "a.hdf5", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same content
    out = halo_watch(str(watched), format="hdf5", catalog=str(catalog))
    assert sorted(calls) == [str(watched / "a.hdf5"), str(watched / "b.hdf5")]
    assert out["ingested"]["a.hdf5"] == ref  # same content, same version
    assert out["ingested"]["b.hdf5"].startswith("halos-b@")


def test_bad_directory_format_and_file_are_named(watched, tmp_path):
    catalog = str(tmp_path / "catalog")
    with pytest.raises(FileNotFoundError, match="missing"):
        halo_watch(str(tmp_path / "missing"), catalog=catalog)
    with pytest.raises(ValueError, match="format must be one of"):
        halo_watch(str(watched), format="fits", catalog=catalog)
    (watched / "broken.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    with pytest.raises(Exception, match="broken.hdf5"):
        halo_watch(str(watched), format="hdf5", catalog=catalog)


def test_dataset_names_are_valid_catalog_names():
    from pathlib import Path

    from data_catalog import parse_ref

    for stem in ("run 42 (z=0)", "..hidden", "snap_099.final", "é"):
        name = dataset_name(Path(f"{stem}.hdf5"))
        parse_ref(f"{name}@v1")


def test_the_halo_flow_takes_only_a_halo_catalog_as_raw_ref(watched, tmp_path):
    from support import demo_dataset

    from flows.halos.flow import halos_flow

    catalog = Catalog(tmp_path / "catalog")
    other = catalog.write(demo_dataset(0), "not-halos")
    with pytest.raises(ValueError, match="expected a 'halos.catalog'"):
        halos_flow(preset="smoke", catalog=str(catalog.root), raw_ref=other)
    with pytest.raises(ValueError, match="not both"):
        halos_flow(
            preset="smoke", catalog=str(catalog.root), raw_ref=other, source=str(watched / "a.hdf5"), format="hdf5"
        )
