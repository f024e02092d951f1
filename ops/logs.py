"""Log rendering: JSON lines in production, aligned ``key=value`` lines in development.

Code logs through the standard library -- ``logger.info("http.request", extra={...})`` -- and
structlog's ``ProcessorFormatter`` renders every record, ours and Django's and daphne's alike:
one JSON object per line (``LOG_FORMAT=json``, the default with ``DEBUG=false``) or a readable
console line (``LOG_FORMAT=console``, the default in development). Staying on stdlib records
keeps ``ops.logsafe.RedactSecrets`` (a handler filter) in front of every line.

What a line may carry: the message, level, logger, timestamp, the ``request_id`` of the HTTP
request being served, any ``extra=`` field whose value is a plain scalar, and the traceback.
Objects passed as extras (Django attaches the ``request`` itself, whose repr holds the query
string) are dropped, and every string goes through ``logsafe.redact`` once more on the way out.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from contextvars import ContextVar

import structlog

from ops.logsafe import redact

# The request id of the HTTP request this code runs for (set by ops.middleware).
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# An incoming X-Request-ID is kept only when it looks like an id: no spaces, quotes or controls.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")
# LogRecord's own attributes; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_SCALARS = (str, int, float, bool, type(None))


def request_id_from(value: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is a sane token, else a fresh one."""
    if value and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Stamps the current request id on records logged while a request is served."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request_id = request_id_var.get()
            if request_id is not None:
                record.request_id = request_id
        return True


class ClientRefusalFilter(logging.Filter):
    """Django's ``django.security.*`` records (a disallowed Host, too many fields, a body over
    the limit) are refusals of a client's request, answered 400/413: one warning line each,
    without the traceback Django attaches, so a client cannot fill the log with tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security.") and record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def _add_extras(logger, method_name: str, event_dict: dict) -> dict:
    record = event_dict.get("_record")
    if record is None:
        return event_dict
    for key, value in vars(record).items():
        if key in _STANDARD or key.startswith("_") or key in event_dict:
            continue
        if isinstance(value, _SCALARS):
            event_dict[key] = value
    return event_dict


_FIRST = ("timestamp", "level", "logger", "event")


def _redact_and_order(logger, method_name: str, event_dict: dict) -> dict:
    """Every string redacted; the fixed keys first, so lines read alike."""
    ordered = {key: event_dict.pop(key) for key in _FIRST if key in event_dict}
    ordered.update(event_dict)
    return {key: redact(value) if isinstance(value, str) else value for key, value in ordered.items()}


_PRE_CHAIN = [
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _add_extras,
]


def build_formatter(style: str = "console") -> logging.Formatter:
    """The formatter for ``LOGGING``: ``"json"`` or ``"console"``."""
    if style == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_PRE_CHAIN,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become a string field, so they are redacted and fit on one JSON line.
            structlog.processors.format_exc_info,
            _redact_and_order,
            renderer,
        ],
    )
