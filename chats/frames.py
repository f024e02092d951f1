"""Client frames of ``/ws/``: parsing and field checks, without sockets or a database.

:func:`parse` turns a WebSocket message into a :class:`Frame` or raises an error that the
consumer sends back as an :func:`error` frame (docs/PROTOCOL.md §8); the field getters check
one field each. Everything here is pure and testable on plain strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from ops import jsonio
from ops.errors import MessengerError

from .exceptions import InvalidInput
from .validation import MAX_ID, clean_client_id, clean_seq

# Largest frame we read; the server is also started with --websocket-max-message-size 65536.
MAX_FRAME_BYTES = 64 * 1024
REF_MAX = 128


class FrameError(MessengerError):
    """A frame-level protocol error with an explicit code (``invalid_json``, ``unknown_type``, ...)."""

    def __init__(self, code: str, detail: str):
        self.code = code
        super().__init__(detail)


class FrameTooBig(Exception):
    """The frame is over MAX_FRAME_BYTES: the socket is closed with 1009, not answered."""


@dataclass(frozen=True)
class Frame:
    type: str | None
    ref: str | None
    data: dict

    def id(self, name: str) -> int:
        """A positive integer id field."""
        value = self.data.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not (1 <= value <= MAX_ID):
            raise InvalidInput({name: ["Must be a positive integer."]})
        return value

    def seq(self, name: str) -> int:
        return clean_seq(self.data.get(name), field=name)

    def client_id(self) -> str:
        return clean_client_id(self.data.get("client_id"))


def parse(text_data: str | None) -> Frame:
    """The frame in a text message. Raises FrameTooBig, FrameError or InvalidInput (with no
    ``ref``: a frame whose ref cannot be read is answered with ``"ref": null``)."""
    if text_data is None:
        raise FrameError("invalid_json", "Binary frames are not supported; send JSON text.")
    if len(text_data) > MAX_FRAME_BYTES // 4 and len(text_data.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise FrameTooBig()
    try:
        # The REST parser's rules (ops/jsonio.py): depth, lone surrogates, no NaN.
        data = jsonio.loads(text_data)
    except jsonio.InvalidJSON as exc:
        raise FrameError("invalid_json", f"The frame is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        # Well-formed JSON of the wrong shape is a validation error, not a parse error.
        raise InvalidInput("A frame must be a JSON object.")
    ref = data.get("ref")
    if ref is not None and (not isinstance(ref, str) or len(ref) > REF_MAX):
        raise InvalidInput({"ref": [f"Must be a string of at most {REF_MAX} characters."]})
    kind = data.get("type")
    return Frame(type=kind if isinstance(kind, str) else None, ref=ref, data=data)


def error(exc: MessengerError, ref: str | None) -> dict:
    """The ``error`` frame: the REST error body (``code``, ``detail``, maybe ``retry_after``) plus ``ref``."""
    return {"type": "error", **exc.as_dict(), "ref": ref}


def unknown_type(frame: Frame) -> FrameError:
    if frame.type is None:
        return FrameError("unknown_type", "A frame needs a string 'type'.")
    return FrameError("unknown_type", f"Unknown frame type {frame.type!r}.")
