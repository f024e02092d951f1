"""Client frames are parsed and checked without a socket or a database (chats/frames.py)."""

from __future__ import annotations

import json

import pytest

from chats import frames
from chats.exceptions import InvalidInput


def test_a_frame_parses_into_type_ref_and_fields():
    frame = frames.parse(
        json.dumps({"type": "message.send", "ref": "r1", "chat_id": 7, "client_id": "c", "text": " hi "})
    )
    assert (frame.type, frame.ref) == ("message.send", "r1")
    assert (frame.id("chat_id"), frame.client_id(), frame.data["text"]) == (7, "c", " hi ")


@pytest.mark.parametrize(
    "text, code",
    [
        (None, "invalid_json"),  # a binary frame
        ("{not json", "invalid_json"),
        ('{"type": "ping", "x": "\\ud800"}', "invalid_json"),  # a lone surrogate cannot be stored or echoed
        ("[1, 2]", "validation_error"),
        ('{"type": "ping", "ref": 5}', "validation_error"),
        (json.dumps({"type": "ping", "ref": "x" * (frames.REF_MAX + 1)}), "validation_error"),
    ],
)
def test_malformed_frames_are_refused_with_a_stable_code(text, code):
    with pytest.raises((frames.FrameError, InvalidInput)) as caught:
        frames.parse(text)
    assert caught.value.code == code


def test_a_paired_surrogate_escape_is_fine():
    assert frames.parse('{"type": "ping", "x": "\\ud83d\\ude00"}').data["x"] == "\U0001f600"


def test_an_oversized_frame_is_not_answered_but_closed():
    with pytest.raises(frames.FrameTooBig):
        frames.parse(json.dumps({"type": "ping", "pad": "x" * frames.MAX_FRAME_BYTES}))


def test_a_frame_without_a_string_type_is_an_unknown_type():
    frame = frames.parse('{"type": 3, "ref": "r"}')
    assert frame.type is None and frame.ref == "r"
    assert frames.unknown_type(frame).code == "unknown_type"
    assert "Unknown frame type 'nope'" in str(frames.unknown_type(frames.parse('{"type": "nope"}')).detail)


@pytest.mark.parametrize("value", [0, -1, True, "7", 7.0, 2**63, None])
def test_ids_are_positive_integers_only(value):
    with pytest.raises(InvalidInput) as caught:
        frames.parse(json.dumps({"type": "x", "chat_id": value})).id("chat_id")
    assert "chat_id" in caught.value.detail


@pytest.mark.parametrize("value, ok", [(0, True), (5, True), (-1, False), (False, False), ("1", False)])
def test_seqs_are_non_negative_integers(value, ok):
    frame = frames.parse(json.dumps({"type": "x", "up_to_seq": value}))
    if ok:
        assert frame.seq("up_to_seq") == value
    else:
        with pytest.raises(InvalidInput):
            frame.seq("up_to_seq")
