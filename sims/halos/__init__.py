"""Dark-matter halos in ``sims``: the canonical halo catalog (kind ``halos.catalog``) every reader and
generator writes (:mod:`sims.halos.catalog`), the synthetic population (:mod:`sims.halos.population`),
the readers of simulation formats (:mod:`sims.halos.readers`: the canonical HDF5; :mod:`sims.halos.rockstar`: Rockstar and consistent-trees;
:mod:`sims.halos.tng`: IllustrisTNG) and their ingestion into the catalog (:mod:`sims.halos.ingest`)."""

from sims.halos.catalog import (
    HALO_UNITS,
    HALOS_KIND,
    PARTICLE_UNITS,
    TARGETS,
    HaloCatalogError,
    HaloInputWarning,
    HaloOptionError,
    NegativeRedshiftWarning,
    catalog_dataset,
    check_catalog,
    halo_particles,
    subsample_catalog,
)
from sims.halos.ingest import (
    FORMATS,
    canonical_dataset,
    ingest_halos,
    iter_source,
    store_catalog,
)
from sims.halos.population import (
    MAX_HALOS,
    MAX_SEED,
    PopulationConfig,
    generate_population,
    iter_population,
)
from sims.halos.readers import iter_hdf5, open_canonical, write_canonical
from sims.halos.rockstar import iter_ctrees, iter_rockstar, iter_rockstar_binary
from sims.halos.tng import iter_tng

__all__ = [
    "FORMATS",
    "HALOS_KIND",
    "HALO_UNITS",
    "MAX_HALOS",
    "MAX_SEED",
    "PARTICLE_UNITS",
    "TARGETS",
    "HaloCatalogError",
    "HaloInputWarning",
    "HaloOptionError",
    "NegativeRedshiftWarning",
    "PopulationConfig",
    "canonical_dataset",
    "catalog_dataset",
    "check_catalog",
    "generate_population",
    "halo_particles",
    "ingest_halos",
    "iter_ctrees",
    "iter_hdf5",
    "iter_population",
    "iter_rockstar",
    "iter_rockstar_binary",
    "iter_source",
    "iter_tng",
    "open_canonical",
    "store_catalog",
    "subsample_catalog",
    "write_canonical",
]
