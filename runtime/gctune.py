"""Cyclic garbage collector settings for the long-running server (``python -m runtime.serve``).

Measured (docs/PERFORMANCE.md, S2): with 1 000 open sockets the process tracks ~280 000
container objects, and each full (generation 2) collection stopped the event loop for
~185 ms, about every 10 s, even at 1 message/s. That was the whole p99 of "last recipient
of a 1 000-member group" (234 ms against a 150 ms target). Two standard remedies:

* :func:`gc.freeze` once the application is loaded: Django, DRF, the URL conf and every
  module-level object (~50 000 objects) move to a permanent generation that no collection
  walks again. They live as long as the process anyway, so nothing is kept that would
  otherwise be freed.
* Full collections considered 10 times less often (``GC_THRESHOLDS``, default ``700,10,100``
  against CPython's ``700,10,10``). Young collections keep CPython's pace on purpose:
  cyclic garbage holding big buffers (a 64 KiB frame caught in an exception's traceback,
  say) is freed as soon as before -- a first threshold of 10 000 let a client flooding
  64 KiB frames grow the server by 27.5 MiB instead of 8.7 (tests/security/test_slow_client.py).
  And not 100 times less often: a closed socket leaves cyclic garbage that only a full
  collection frees, so with ``700,10,1000`` 16 000 connect/close cycles grew the server by
  +356 MiB and still rising, against a plateau of +75 MiB with CPython's defaults and
  +120 MiB with ``700,10,100``.

Measured on S2 (1 000-member group, full bench): last-recipient p99 234 -> 79 ms at
1 msg/s. A full collection still stops the loop for as long as before (~185 ms with 1 000
sockets), about every 100 s instead of every 10 s under that load: it shows at p99.9, not p99.

``GC_FREEZE=false`` and ``GC_THRESHOLDS=700,10,10`` give CPython's defaults back.
"""

from __future__ import annotations

import gc
import logging

from django.conf import settings

logger = logging.getLogger(__name__)


def settle() -> None:
    """Load what loads lazily, then freeze it and set the thresholds (call once, before serving)."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - import every view module now, not on the first request
    if settings.GC_FREEZE:
        gc.collect()
        gc.freeze()
    gc.set_threshold(*settings.GC_THRESHOLDS)
    thresholds = ",".join(str(n) for n in gc.get_threshold())
    logger.info("gc.settled", extra={"frozen": gc.get_freeze_count(), "thresholds": thresholds})
