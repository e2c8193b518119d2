"""Inference from trained operators: safe loading, export, prediction at any resolution, shipped models.

``neurop.load(source)`` accepts a Lightning checkpoint, an exported directory or a shipped model name
(``"fno-darcy"``, ``"fno-burgers"``) and returns an :class:`InferenceModel` whose ``predict`` takes
tensors, numpy arrays or xarray objects.
"""

from neurop.inference.export import export, read_run, write_exported
from neurop.inference.load import (
    CheckpointError,
    load,
    load_checkpoint,
    load_exported,
    read_checkpoint,
    shipped_models,
)
from neurop.inference.model import InferenceModel, resample, resample_coord
from neurop.inference.predict import (
    DataFile,
    InputFileError,
    evaluate,
    format_table,
    generate_test_data,
    predict_file,
    resolution_label,
)

__all__ = [
    "CheckpointError",
    "DataFile",
    "InferenceModel",
    "InputFileError",
    "evaluate",
    "export",
    "format_table",
    "generate_test_data",
    "load",
    "load_checkpoint",
    "load_exported",
    "predict_file",
    "read_checkpoint",
    "read_run",
    "resample",
    "resample_coord",
    "resolution_label",
    "shipped_models",
    "write_exported",
]
