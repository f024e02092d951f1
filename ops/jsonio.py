"""JSON from and to clients: one parser for REST bodies and socket frames, one safe renderer.

:func:`loads` is the only way client JSON is read (DRF's parser below, ``chats.frames.parse``).
It refuses, as :class:`InvalidJSON`, whatever cannot be handled safely further on:

* nesting deeper than :data:`MAX_DEPTH` levels (objects and arrays; a flat object is 1 level):
  no request of the protocol needs more than 3, and deep nesting makes every recursive
  consumer of the value (validation, rendering an error that quotes it) fail;
* unpaired surrogates (``"\\ud800"``): valid JSON escapes, but no such string can be stored
  in PostgreSQL or encoded as UTF-8 to be echoed back;
* ``NaN`` and ``Infinity``, which are not JSON (RFC 8259).

:class:`JSONRenderer` is the net underneath: a response holding a string that cannot be encoded
as UTF-8 is rendered with ``\\u`` escapes instead of failing with a 500.
"""

from __future__ import annotations

import json

from django.conf import settings
from rest_framework import parsers, renderers
from rest_framework.exceptions import ParseError

from ops.errors import TooLarge

MAX_DEPTH = 32


class InvalidJSON(ValueError):
    """The text is not JSON we accept; ``str(exc)`` says why (safe to send to the client)."""


def _refuse_constant(name: str):
    raise InvalidJSON(f"{name} is not a JSON value.")


def loads(text: str) -> object:
    """The JSON value in ``text``, or InvalidJSON (see the module docstring for the rules)."""
    if not _encodable(text):
        raise InvalidJSON("The text holds an unpaired surrogate.")
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise InvalidJSON(f"Nested deeper than {MAX_DEPTH} levels.") from None
    except InvalidJSON:
        raise
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4 300 digits
        raise InvalidJSON(str(exc)) from None
    deep = text.count("[") + text.count("{") > MAX_DEPTH
    escapes = "\\u" in text
    if deep or escapes:
        _check(data, depth=deep, surrogates=escapes)
    return data


def _check(data: object, *, depth: bool, surrogates: bool) -> None:
    """Walk the parsed value without recursion, for the depth and/or lone surrogates."""
    stack = [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict | list):
            if depth and level > MAX_DEPTH:
                raise InvalidJSON(f"Nested deeper than {MAX_DEPTH} levels.")
            if isinstance(value, dict):
                if surrogates:
                    for key in value:
                        _check_string(key)
                stack.extend((item, level + 1) for item in value.values())
            else:
                stack.extend((item, level + 1) for item in value)
        elif surrogates and isinstance(value, str):
            _check_string(value)


def _encodable(value: str) -> bool:
    """Whether UTF-8 can hold ``value`` (it cannot hold a lone surrogate)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_string(value: str) -> None:
    if not _encodable(value):
        raise InvalidJSON("The JSON holds an unpaired surrogate escape (\\ud800-\\udfff).")


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser through :func:`loads`, reading at most ``DATA_UPLOAD_MAX_MEMORY_SIZE``.

    DRF hands the parser Django's request as a stream, which (unlike ``request.body``) does
    not check the upload limit, so the limit is applied here: a bigger body is ``too_large``.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise TooLarge()
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return loads(raw.decode(encoding))
        except (UnicodeDecodeError, LookupError):
            raise ParseError(f"JSON parse error - the body is not valid {encoding}.") from None
        except InvalidJSON as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class JSONRenderer(renderers.JSONRenderer):
    """DRF's renderer (UTF-8), falling back to ``\\u`` escapes for a string UTF-8 cannot hold."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            return _ASCII_RENDERER.render(data, accepted_media_type, renderer_context)


class _AsciiJSONRenderer(renderers.JSONRenderer):
    ensure_ascii = True


_ASCII_RENDERER = _AsciiJSONRenderer()
