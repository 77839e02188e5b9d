"""Halo formats are registered readers that declare their options; the checks are generic."""

from __future__ import annotations

import pytest

from sims.halos.catalog import HaloOptionError
from sims.halos.formats import (
    HaloReader,
    ReaderOption,
    checked_options,
    get_reader,
    readers,
    register_reader,
    unregister_reader,
)
from sims.halos.ingest import iter_source
from sims.halos.population import PopulationConfig, generate_population


def test_every_option_of_another_format_is_named_with_the_format_that_reads_it():
    only = "--snapshot is only read with --format tng or --format ctrees, not rockstar"
    with pytest.raises(HaloOptionError, match=only):
        checked_options(get_reader("rockstar"), "x.list", {"snapshot": 3})
    with pytest.raises(HaloOptionError) as both:
        checked_options(get_reader("hdf5"), "x.h5", {"particles": ["p"], "matching": "m.h5"})
    assert "--particles is only read with --format rockstar" in str(both.value)
    assert "--matching is only read with --format tng" in str(both.value)
    with pytest.raises(HaloOptionError, match="--format tng needs --snapshot"):
        checked_options(get_reader("tng"), "run/output", {})
    with pytest.raises(HaloOptionError, match="--min-log-mass"):
        checked_options(get_reader("tng"), "run/output", {"snapshot": 99, "min_log_mass": float("nan")})
    with pytest.raises(HaloOptionError, match="unknown format; choose from tng, rockstar, ctrees, hdf5"):
        get_reader("gadget")
    assert checked_options(get_reader("rockstar"), "x.list", {"particles": [], "snapshot": None}) == {}


def test_a_registered_reader_is_a_format_with_its_own_options():
    def read_population(path, *, chunk_halos, seed):
        yield generate_population(PopulationConfig(n_halos=5, max_particles=50, seed=seed))

    def seed(value, flag):
        if not isinstance(value, int) or value < 0:
            raise HaloOptionError(f"{flag} {value!r}: expected an integer >= 0")
        return value

    option = ReaderOption("seed", "--seed", "its seed", required=True, check=seed)
    reader = HaloReader("toy", "a generated population", read_population, (option,))
    register_reader(reader)
    try:
        assert "toy" in readers()
        (chunk,) = iter_source("anything", "toy", seed=3)
        assert chunk.sizes["halo"] == 5
        with pytest.raises(HaloOptionError, match="--seed -1: expected"):
            next(iter_source("anything", "toy", seed=-1))
        with pytest.raises(
            HaloOptionError, match="--snapshot is only read with --format tng or --format ctrees, not toy"
        ):
            next(iter_source("anything", "toy", seed=1, snapshot=2))
        with pytest.raises(ValueError, match="registered already"):
            register_reader(reader)
    finally:
        unregister_reader("toy")
