"""Client JSON is read by one parser with one set of rules, and any string can be rendered (ops/jsonio.py)."""

from __future__ import annotations

import json

import pytest

from chats import frames
from ops import jsonio


def nested(levels: int, leaf: str = "1") -> str:
    return '{"a": ' * (levels - 1) + "[" + leaf + "]" + "}" * (levels - 1)


def test_nesting_up_to_the_limit_is_read():
    value = jsonio.loads(nested(jsonio.MAX_DEPTH))
    for _ in range(jsonio.MAX_DEPTH - 1):
        value = value["a"]
    assert value == [1]


@pytest.mark.parametrize("levels", [jsonio.MAX_DEPTH + 1, 1_000, 100_000])
def test_deeper_nesting_is_invalid_json_not_a_recursion_error(levels):
    with pytest.raises(jsonio.InvalidJSON, match="Nested deeper than 32 levels"):
        jsonio.loads(nested(levels))


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = json.dumps({"text": "[" * 500 + "{" * 500})
    assert jsonio.loads(text) == {"text": "[" * 500 + "{" * 500}


@pytest.mark.parametrize(
    "text",
    [
        '{"x": "\\ud800"}',
        '{"\\udfff": 1}',
        '["ok", ["a\\ud83d"]]',
        '"\\udc00"',
        '{"x": "\ud800"}',  # a raw lone surrogate in the text itself
    ],
)
def test_unpaired_surrogates_anywhere_are_invalid_json(text):
    with pytest.raises(jsonio.InvalidJSON):
        jsonio.loads(text)


def test_paired_surrogate_escapes_are_characters():
    assert jsonio.loads('{"x": "\\ud83d\\ude00"}') == {"x": "\U0001f600"}


@pytest.mark.parametrize("text", ["NaN", '{"x": Infinity}', "[-Infinity]", "{", "", "1" * 5000])
def test_non_json_is_invalid_json(text):
    with pytest.raises(jsonio.InvalidJSON):
        jsonio.loads(text)


def test_socket_frames_use_the_same_rules():
    """One definition of the limit: a frame one level too deep is invalid_json, one at the limit is not."""
    inner = nested(jsonio.MAX_DEPTH - 1)
    assert frames.parse('{"type": "ping", "x": ' + inner + "}").type == "ping"
    for text in ('{"type": "ping", "x": ' + nested(jsonio.MAX_DEPTH) + "}", '{"type": "ping", "x": NaN}'):
        with pytest.raises(frames.FrameError) as caught:
            frames.parse(text)
        assert caught.value.code == "invalid_json"


def test_the_renderer_encodes_any_string():
    """A lone surrogate that reaches a response is escaped rather than failing the response."""
    body = jsonio.JSONRenderer().render({"code": "x", "detail": "bad \ud800 value é"})
    assert json.loads(body) == {"code": "x", "detail": "bad \ud800 value é"}
    assert jsonio.JSONRenderer().render({"detail": "é"}) == '{"detail":"é"}'.encode()
