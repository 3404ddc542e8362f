"""Provider lookup: registered names, entry points, and missing drivers."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint
from types import ModuleType
from typing import Any

import pytest

import websession
from websession import Manager, MissingDependencyError
from websession.providers import memory


def test_entry_point_providers_are_found(monkeypatch: pytest.MonkeyPatch) -> None:
    module = ModuleType("fake_ws_plugin")
    module.Plugin = memory.MemoryProvider  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_ws_plugin", module)
    ep = EntryPoint("plugged", "fake_ws_plugin:Plugin", "websession.providers")

    def fake_entry_points(**kwargs: Any) -> list[EntryPoint]:
        assert kwargs["group"] == "websession.providers"
        return [ep] if kwargs.get("name", "plugged") == "plugged" else []

    monkeypatch.setattr("websession.providers.entry_points", fake_entry_points)
    assert "plugged" in websession.registered()
    assert isinstance(Manager("plugged").provider, memory.MemoryProvider)


def test_missing_driver_names_the_extra() -> None:
    error = MissingDependencyError("redis", "redis", "redis")
    assert "pip install 'websession[redis]'" in str(error)
    assert isinstance(error, ImportError) and isinstance(error, websession.WebSessionError)


def test_register_rejects_nonsense() -> None:
    with pytest.raises(websession.ConfigurationError):
        websession.register("", memory.MemoryProvider)
    with pytest.raises(websession.ConfigurationError):
        websession.register("none-provider", None)


def test_public_names_are_exported_and_documented() -> None:
    # Submodules appear as attributes once anything imported them (the framework
    # adapters, websession.testing...): they are not names of the package's own.
    public = sorted(name for name in dir(websession) if not name.startswith("_")
                    and not isinstance(getattr(websession, name), ModuleType))
    assert public == sorted(websession.__all__)
    assert websession.__all__ == sorted(websession.__all__)
    for name in websession.__all__:
        assert getattr(websession, name).__doc__, name
