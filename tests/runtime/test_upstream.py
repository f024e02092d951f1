"""The framework names runtime/ overrides still exist upstream, with the parameters it expects.

A failure here means an upgrade changed something a patch in runtime/ depends on: read the
patch (runtime/README.md says which does what) before changing this test.
"""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import version

import pytest

from runtime.patches import UPSTREAM, WRITTEN_AGAINST


def _resolve(target: str):
    module_name, _, qualname = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
    return obj


@pytest.mark.parametrize("entry", UPSTREAM, ids=[entry.target for entry in UPSTREAM])
def test_overridden_name_exists_with_the_expected_parameters(entry):
    """Each overridden or relied-on name resolves, and its parameters start as the patch expects."""
    obj = _resolve(entry.target)
    if entry.params is None:
        return
    function = obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
    params = [p.name for p in inspect.signature(function).parameters.values()]
    if params and params[0] == "self":
        params = params[1:]
    assert params[: len(entry.params)] == list(entry.params), f"{entry.target} ({entry.used_by}): {params}"


@pytest.mark.parametrize("package", sorted(WRITTEN_AGAINST))
def test_installed_minor_version_is_the_one_the_patches_were_written_for(package):
    """requirements.txt pins these minors; a different one means the patches were not re-checked."""
    installed = version(package).split(".")
    assert ".".join(installed[:2]) == WRITTEN_AGAINST[package], f"{package} {version(package)}"


def test_every_runtime_module_that_patches_is_listed():
    """A module of runtime/ that subclasses framework classes appears in the registry."""
    listed = {entry.used_by for entry in UPSTREAM}
    for name in (
        "runtime.serve",
        "runtime.uvserve",
        "runtime.layers",
        "runtime.consumer",
        "runtime.origin",
        "runtime.async_db",
        "runtime.http",
    ):
        assert name in listed


def test_daphnes_requests_skip_twisteds_own_form_parsing():
    """runtime.serve's channel builds every request with ``parsePOSTFormSubmission=False``:
    Twisted would otherwise parse each multipart upload whole into ``request.args`` (unused by
    daphne) -- ~650 MiB of memory for a 50 MiB file (docs/PERFORMANCE.md, S10)."""
    from daphne.http_protocol import WebRequest

    from runtime.serve import HeaderBoundHTTPChannel

    channel = HeaderBoundHTTPChannel()
    channel.requestFactory = WebRequest  # what daphne's HTTPFactory.buildProtocol does
    made = channel.requestFactory
    assert made.func is WebRequest and made.keywords == {"parsePOSTFormSubmission": False}
