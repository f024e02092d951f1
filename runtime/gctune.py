"""Cyclic garbage collector settings for the long-running server (``python -m runtime.serve``).

:func:`settle` runs once the application is loaded, before serving:

* :func:`gc.freeze` moves everything loaded at startup (Django, DRF, the URL conf, every
  module-level object) to a permanent generation that no collection walks again. They live as
  long as the process anyway, so nothing is kept that would otherwise be freed.
* ``GC_THRESHOLDS`` (default ``700,10,100`` against CPython's ``700,10,10``): full collections,
  which stop the event loop for as long as they walk every tracked object, are considered 10
  times less often; young collections keep CPython's pace, so cyclic garbage holding big
  buffers is freed as soon as before.

``GC_FREEZE=false`` and ``GC_THRESHOLDS=700,10,10`` give CPython's defaults back. Every
collection's pause is recorded in ``messenger_gc_pause_seconds{generation}``. Why these
values and not others, with the figures: docs/PERFORMANCE.md, "Garbage collector settings".
"""

from __future__ import annotations

import gc
import logging
import time

from django.conf import settings

from ops import metrics

logger = logging.getLogger(__name__)


def settle() -> None:
    """Load what loads lazily, then freeze it and set the thresholds (call once, before serving)."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - import every view module now, not on the first request
    if settings.GC_FREEZE:
        gc.collect()
        gc.freeze()
    gc.set_threshold(*settings.GC_THRESHOLDS)
    if _time_collections not in gc.callbacks:
        gc.callbacks.append(_time_collections)
    thresholds = ",".join(str(n) for n in gc.get_threshold())
    logger.info("gc.settled", extra={"frozen": gc.get_freeze_count(), "thresholds": thresholds})


_started: list[float] = []


def _time_collections(phase: str, info: dict) -> None:
    """``gc.callbacks`` hook: each collection's pause into ``messenger_gc_pause_seconds``.

    A collection can start anywhere, also at the bottom of a deep recursion (a JSON depth bomb
    being refused by the decoder): there the few calls of ``labels()`` can exceed the recursion
    limit. That one observation is dropped; an exception escaping a gc callback would be printed
    as "Exception ignored" with a traceback on every such collection."""
    try:
        if phase == "start":
            _started[:] = [time.perf_counter()]
        elif _started:
            metrics.GC_PAUSE.labels(generation=str(info.get("generation", 0))).observe(
                time.perf_counter() - _started[0]
            )
    except RecursionError:
        _started.clear()
