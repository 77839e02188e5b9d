"""Particle rows read by the halo-scalar tasks: which variables are read straight from their file, and
that the blocks read into reused buffers hold exactly the stored rows, in the catalog's units."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from data_catalog.h5read import open_netcdf
from pipeline.halos.rows import FileRows, block_readers, stored_dataset
from pipeline.halos.scalars import halo_scalars
from tests.pipeline.test_halo_scalars import random_catalog

PARTICLES = ("particle_position", "particle_velocity", "particle_mass")


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    ds = random_catalog(n_halos=5, seed=11)
    path = tmp_path_factory.mktemp("rows") / "halos.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    return ds, str(path)


@pytest.mark.parametrize(
    "opener",
    [
        lambda p: open_netcdf(p),
        lambda p: open_netcdf(p, chunks={}),
        lambda p: xr.open_dataset(p, engine="h5netcdf"),
        lambda p: xr.open_dataset(p, engine="h5netcdf", chunks={"particle": 100}),
    ],
    ids=["catalog-reader", "catalog-reader-dask", "h5netcdf", "h5netcdf-dask"],
)
def test_variables_as_opened_are_read_from_their_file(stored, opener):
    _, path = stored
    with opener(path) as ds:
        assert all(stored_dataset(ds[n].variable, n) == path for n in PARTICLES)


def test_anything_else_is_read_through_xarray(stored, tmp_path):
    ds, path = stored
    assert stored_dataset(ds["particle_position"].variable, "particle_position") is None  # in memory
    with open_netcdf(path, chunks={}) as lazy:
        assert stored_dataset((lazy["particle_position"] * 1).variable, "particle_position") is None
        assert stored_dataset(lazy["particle_mass"].fillna(0).variable, "particle_mass") is None
        assert (
            stored_dataset(lazy["particle_position"].isel(particle=slice(1, None)).variable, "particle_position")
            is None
        )
    with open_netcdf(path) as lazy:
        swapped = lazy.rename(particle_position="tmp").rename(particle_velocity="particle_position")
        assert stored_dataset(swapped["particle_position"].variable, "particle_position") is None
        assert stored_dataset(lazy["particle_mass"].astype(np.float32).variable, "particle_mass") is None
    packed = tmp_path / "packed.nc"
    encoding = {"particle_mass": {"dtype": "int32", "scale_factor": 1e6, "_FillValue": -1}}
    ds.to_netcdf(packed, engine="h5netcdf", encoding=encoding)
    with xr.open_dataset(packed, engine="h5netcdf") as lazy:
        assert stored_dataset(lazy["particle_mass"].variable, "particle_mass") is None  # decoded on read


@pytest.mark.parametrize("chunks", [None, {}], ids=["lazy", "dask"])
def test_a_swapped_catalog_gives_the_swapped_scalars(stored, chunks):
    """Names that point at another stored dataset are read through xarray, not by name from the file."""
    ds, path = stored

    def swapped(catalog: xr.Dataset) -> xr.Dataset:
        out = catalog.rename({"particle_position": "v", "particle_velocity": "x"})
        out = out.rename({"x": "particle_position", "v": "particle_velocity"})
        out["particle_position"].attrs["units"], out["particle_velocity"].attrs["units"] = "kpc", "km s^-1"
        return out

    expected = halo_scalars(swapped(ds), dask_address="synchronous", too_few="mark")
    unswapped = halo_scalars(ds, dask_address="synchronous")["particles_within"].values
    assert not np.array_equal(expected["particles_within"].values, unswapped)  # the swap changes them
    with open_netcdf(path, chunks=chunks) as lazy:
        assert stored_dataset(swapped(lazy)["particle_position"].variable, "particle_position") is None
        got = halo_scalars(swapped(lazy), dask_address="synchronous", too_few="mark")
    np.testing.assert_array_equal(got["scalars"].values, expected["scalars"].values)
    np.testing.assert_array_equal(got["particles_within"].values, expected["particles_within"].values)


def test_blocks_are_the_stored_rows_in_reused_buffers(tmp_path):
    rng = np.random.default_rng(0)
    position = rng.normal(size=(1000, 3)).astype(np.float32)
    mass = rng.uniform(1, 2, 1000)
    path = tmp_path / "rows.h5"
    xr.Dataset({"p": (("n", "s"), position), "m": ("n", mass)}).to_netcdf(path, engine="h5netcdf")
    sources = [FileRows(str(path), "p", 100, 900), FileRows(str(path), "m", 100, 900), mass[100:900]]
    with block_readers(sources, [1e-3, 1.0, 2.0]) as (read_p, read_m, read_in_memory):
        first = read_p(0, 300)
        assert first.dtype == np.float64  # a factor applies: the product in float64
        np.testing.assert_array_equal(first, position[100:400] * np.float64(1e-3))
        address = first.__array_interface__["data"][0]
        second = read_p(300, 500)
        assert second.__array_interface__["data"][0] == address  # the same buffer, not a fresh one
        np.testing.assert_array_equal(second, position[400:600] * np.float64(1e-3))
        np.testing.assert_array_equal(read_p(0, 800), position[100:900] * np.float64(1e-3))  # grown
        as_stored = read_m(10, 20)
        assert as_stored.dtype == np.float64
        np.testing.assert_array_equal(as_stored, mass[110:120])
        assert read_m(5, 5).shape == (0,)
        np.testing.assert_array_equal(read_in_memory(0, 3), mass[100:103] * 2.0)
