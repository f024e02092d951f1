"""A logging filter that keeps credentials out of log lines.

Our own code never logs a token or a password. This is the safety net for log lines written by
libraries that may carry one -- above all Django's SQL log (``django.db.backends`` at DEBUG with
``DEBUG=True``), whose parameters include the refresh token simplejwt stores in its
outstanding-token table. JWTs and ``token=`` query-string values are replaced by ``[redacted]``
in the message, its arguments and any extra attributes (``sql``, ``params``) a structured
formatter could print. Settings attach it to the console handler and to ``django.db.backends``.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_QUERY_TOKEN = re.compile(r"(?<=[?&]token=)[^&\s\"']+")
# LogRecord's own attributes; everything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def redact(text: str) -> str:
    if "eyJ" not in text and "token=" not in text:
        return text
    return _QUERY_TOKEN.sub(REDACTED, _JWT.sub(REDACTED, text))


def _redact_value(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(item) for item in value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    return value


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the handler's problem, not ours
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, _redact_value(value))
        return True
