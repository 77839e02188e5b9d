"""Versioned, content-addressed HDF5/xarray datasets (the bottom layer: xarray, h5py, h5netcdf only)."""

from .errors import (
    CatalogError,
    CorruptionError,
    InvalidNameError,
    NotFoundError,
    SchemaError,
    UnreadableDatasetError,
)
from .hashing import content_sha256, file_sha256
from .names import Ref, parse_ref, validate_name
from .schema import (
    RESERVED_ATTRS,
    DatasetSchema,
    VariableSpec,
    check_dataset,
    get_schema,
    register_schema,
    registered_kinds,
    validate_dataset,
)
from .store import (
    SCHEMA_VERSION,
    Catalog,
    DatasetInfo,
    VerifyReport,
    VerifyResult,
    default_root,
    read_dataset_file,
    read_file_attrs,
)
from .version import code_version, package_version

__all__ = [
    "SCHEMA_VERSION",
    "RESERVED_ATTRS",
    "Catalog",
    "CatalogError",
    "CorruptionError",
    "DatasetInfo",
    "DatasetSchema",
    "InvalidNameError",
    "NotFoundError",
    "Ref",
    "SchemaError",
    "UnreadableDatasetError",
    "VariableSpec",
    "VerifyReport",
    "VerifyResult",
    "check_dataset",
    "code_version",
    "content_sha256",
    "default_root",
    "file_sha256",
    "get_schema",
    "package_version",
    "parse_ref",
    "read_dataset_file",
    "read_file_attrs",
    "register_schema",
    "registered_kinds",
    "validate_dataset",
    "validate_name",
]
