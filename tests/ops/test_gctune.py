"""runtime.serve freezes what is loaded at startup and sets the GC thresholds (runtime/gctune.py)."""

from __future__ import annotations

import gc

import pytest

from runtime import gctune


@pytest.fixture
def restore_gc():
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_settle_freezes_loaded_objects_and_sets_thresholds(settings, restore_gc):
    settings.GC_FREEZE = True
    settings.GC_THRESHOLDS = (12345, 7, 3)
    gc.unfreeze()
    loaded = object()  # a live object: frozen, so no later collection walks it
    gctune.settle()
    assert gc.get_threshold() == (12345, 7, 3)
    assert gc.get_freeze_count() > 1000
    assert not any(o is loaded for o in gc.get_objects())  # moved out of the collected generations
    # Cyclic garbage made after settling is still collected.
    cycle = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1


def test_settle_without_freeze_only_sets_thresholds(settings, restore_gc):
    settings.GC_FREEZE = False
    settings.GC_THRESHOLDS = (700, 10, 10)
    gc.unfreeze()
    gctune.settle()
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == (700, 10, 10)


def test_server_run_settles_before_serving(monkeypatch):
    """BoundedServer.run applies the settings once the application is loaded, then serves."""
    from daphne.server import Server

    from runtime import serve

    calls = []
    monkeypatch.setattr(gctune, "settle", lambda: calls.append("settle"))
    monkeypatch.setattr(Server, "run", lambda self: calls.append("serve"))
    server = serve.BoundedServer.__new__(serve.BoundedServer)
    server.run()
    assert calls == ["settle", "serve"]


def test_uvserve_settles_after_loading_the_app_and_before_serving(monkeypatch):
    """runtime.uvserve imports the application, applies the settings, then serves."""
    import uvicorn

    from runtime import uvserve

    calls = []
    monkeypatch.setattr(uvicorn.Config, "load", lambda self: calls.append("load"))
    monkeypatch.setattr(gctune, "settle", lambda: calls.append("settle"))
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: calls.append("serve"))
    uvserve.main(["-b", "127.0.0.1", "-p", "0"])
    assert calls == ["load", "settle", "serve"]
