"""The interface every dataset generator (a PDE plus its input sampler and solver) implements."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from neurop.registry import Registry

PDES: Registry[type[PDEGenerator]] = Registry("pde")


@dataclass(frozen=True)
class FieldSpec:
    """Layout of one stored per-sample field.

    Attributes
    ----------
    dims : tuple of str
        Dimension names *without* the leading ``"sample"`` axis, e.g. ``("t", "x")``.
    shape : tuple of int
        Stored shape without the sample axis, e.g. ``(n_t, n_x)``.
    """

    dims: tuple[str, ...]
    shape: tuple[int, ...]


def sample_generator(seed: int) -> torch.Generator:
    """CPU generator for one sample; inputs are drawn on CPU so CPU and CUDA runs agree."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as float or raise ``ValueError`` naming the key."""
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


class PDEGenerator(abc.ABC):
    """A PDE family that produces data samples.

    Subclasses take only primitives (numbers, strings, lists) as constructor arguments, validate
    them with errors naming the key, the value and what is allowed, and are registered with
    ``@PDES.register(name)``.

    Sample ``i`` of a data set is produced from its own integer seed (see
    :func:`neurop.data.generate.sample_seed`), so results do not depend on batch size, sharding or
    resumption.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """JSON-serialisable physical parameters (stored as the ``params`` attribute)."""

    @abc.abstractmethod
    def solver_info(self) -> dict[str, Any]:
        """JSON-serialisable scheme name and settings (stored as the ``solver`` attribute)."""

    @abc.abstractmethod
    def coords(self) -> dict[str, np.ndarray]:
        """1-D coordinates of the stored grid, e.g. ``{"x": ..., "y": ...}``."""

    @abc.abstractmethod
    def fields(self) -> dict[str, FieldSpec]:
        """Per-sample fields and their layouts, e.g. ``{"a": FieldSpec(("x","y"), (85, 85))}``."""

    def static_fields(self) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
        """Fields shared by all samples, e.g. the Navier–Stokes forcing ``f``: name -> (dims, array)."""
        return {}

    @abc.abstractmethod
    def solve_batch(
        self, seeds: Sequence[int], device: str | torch.device = "cpu"
    ) -> dict[str, torch.Tensor]:
        """Draw inputs for each seed, solve, and return the stored fields.

        Returns
        -------
        dict of str to Tensor
            Each tensor has shape ``(len(seeds), *fields()[name].shape)``, on any device; the
            caller converts to float32 numpy.
        """
