"""Data sets: HDF5 storage, batched generation and (elsewhere in this package) training data modules."""

from neurop.data.generate import (
    default_filename,
    generate_dataset,
    parse_shard,
    sample_seed,
    shard_path,
    shard_range,
)
from neurop.data.store import (
    DatasetWriter,
    combine_shards,
    load_fields,
    open_dataset,
    partial_path,
    read_attrs,
)

__all__ = [
    "DatasetWriter",
    "combine_shards",
    "default_filename",
    "generate_dataset",
    "load_fields",
    "open_dataset",
    "parse_shard",
    "partial_path",
    "read_attrs",
    "sample_seed",
    "shard_path",
    "shard_range",
]
