"""Tests of the name -> class registry and of the model registry's contents."""

from __future__ import annotations

import pytest

from neurop.models import FNO, MODELS
from neurop.registry import Registry


def test_register_get_build_and_names() -> None:
    reg: Registry[type] = Registry("widget")

    @reg.register("b")
    class B:
        def __init__(self, size: int) -> None:
            self.size = size

    @reg.register("a")
    def make_a(size: int = 1) -> B:
        return B(size + 1)

    assert reg.get("b") is B
    assert reg.names() == ["a", "b"]
    assert "a" in reg and "c" not in reg and len(reg) == 2
    assert reg.build("b", size=3).size == 3
    assert reg.build("a", size=3).size == 4


def test_duplicate_name_raises() -> None:
    reg: Registry[type] = Registry("widget")
    reg.register("x")(int)
    with pytest.raises(ValueError, match="widget 'x' is already registered"):
        reg.register("x")(float)
    assert reg.get("x") is int


def test_unknown_name_lists_known_names() -> None:
    reg: Registry[type] = Registry("widget")
    reg.register("beta")(int)
    reg.register("alpha")(float)
    with pytest.raises(KeyError, match="unknown widget 'gamma'; known widgets: alpha, beta"):
        reg.get("gamma")


def test_models_registry_contains_fno() -> None:
    assert "fno" in MODELS.names()
    assert MODELS.get("fno") is FNO
    with pytest.raises(KeyError, match=r"unknown model 'fnoo'; known models: .*fno"):
        MODELS.build("fnoo", in_channels=1)
    model = MODELS.build("fno", in_channels=1, out_channels=1, n_modes=[4])
    assert isinstance(model, FNO)
    with pytest.raises(ValueError, match="model 'fno' is already registered"):
        MODELS.register("fno")(FNO)
