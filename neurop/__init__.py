"""neurop: neural PDE solvers and operator learning."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # `neurop.load` imports the inference stack on first use, so `import neurop` stays light.
    if name == "load":
        from neurop.inference import load

        return load
    raise AttributeError(f"module 'neurop' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "load"])
