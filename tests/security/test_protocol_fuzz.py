"""Protocol fuzzer: random and mutated frames against a live server over real sockets.

Hypothesis draws each frame from a mix of: random JSON values; valid frames of every type
(with real chat ids, the caller's own and foreign ones) mutated by dropping, retyping or
replacing fields (huge and negative ints, floats, booleans, lone surrogates and other unicode,
nested containers, extra fields); unknown and internal-looking types (``event.deliver``,
``session.revoke``, ...); deeply nested JSON; binary frames; empty frames; broken JSON; and
frames just under and just over the 64 KiB cap. Each frame is followed by a ``ping`` whose
``pong`` must come back (the socket is alive and everything before it was answered).

Oracle, over the whole run:
* the socket is never closed except with 1009 for a frame over 64 KiB -- never 1011;
* every reply is a JSON object with a ``type``; no ``error`` frame has code ``server_error``;
* the server's output has no traceback; its resident memory stays bounded.

CI sends ``FUZZ_FRAMES`` frames (default 2 000); the long run is
``FUZZ_FRAMES=10000 ./test.sh tests/security/test_protocol_fuzz.py -s`` (figures in
docs/RELIABILITY.md).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from contextlib import ExitStack

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .live import ENTRY_POINTS

pytestmark = pytest.mark.django_db(transaction=True)

FRAMES = int(os.environ.get("FUZZ_FRAMES", "2000"))
CAP = 64 * 1024
MiB = 1024 * 1024
# Error codes the protocol may answer a bad frame with (docs/PROTOCOL.md).
KNOWN_CODES = {
    "invalid_json", "unknown_type", "validation_error", "not_found", "forbidden", "rate_limited",
    "conflict", "token_not_valid", "service_unavailable",
}  # fmt: skip
INTERNAL_LOOKING_TYPES = [
    "event.deliver", "session.revoke", "layer.resync", "websocket.connect", "websocket.receive",
    "websocket.disconnect", "websocket.close", "chat.created", "message.new", "message.ack", "error",
    "session.ready", "pong", "chat.read", "http.request", "_on_send", "HANDLERS", "__init__", "dispatch",
]  # fmt: skip
HUGE_INTS = [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1, 10**100, -(10**400)]
WEIRD_STRINGS = ["", " ", "\x00", "\ud800", "\udfff", "a\ud83d", "\U0001f600" * 5000, "é" * 70_000, "\u202e", "null"]


# --- strategies ---------------------------------------------------------------------------

# Any code point, lone surrogates included (json.dumps sends those as \\udXXX escapes).
any_text = st.text(st.characters(exclude_categories=()), max_size=40)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(HUGE_INTS)
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text
    | st.sampled_from(WEIRD_STRINGS)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(any_text, children, max_size=5),
    max_leaves=20,
)


def valid_frames(context: dict) -> st.SearchStrategy[dict]:
    chat_ids = st.sampled_from(context["chat_ids"])
    client_ids = st.text(st.characters(exclude_categories=()), min_size=1, max_size=64).filter(str.strip)
    return st.one_of(
        st.builds(
            lambda chat, cid, text: {"type": "message.send", "chat_id": chat, "client_id": cid, "text": text},
            chat_ids, client_ids, st.text(st.characters(exclude_categories=()), min_size=1, max_size=300),
        ),
        st.builds(lambda chat, seq: {"type": "message.read", "chat_id": chat, "up_to_seq": seq}, chat_ids, st.integers(0, 10**6)),
        st.builds(lambda chat: {"type": "typing", "chat_id": chat}, chat_ids),
        st.just({"type": "ping"}),
        st.sampled_from(context["tokens"]).map(lambda token: {"type": "auth.refresh", "token": token}),
    ).flatmap(
        lambda frame: st.one_of(st.just(frame), any_text.map(lambda ref: {**frame, "ref": ref}))
    )  # fmt: skip


@st.composite
def mutated(draw, base: st.SearchStrategy[dict]) -> dict:
    frame = dict(draw(base))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["drop", "retype", "extra", "type"]))
        keys = sorted(frame)
        if action == "drop" and keys:
            frame.pop(draw(st.sampled_from(keys)))
        elif action == "retype" and keys:
            frame[draw(st.sampled_from(keys))] = draw(json_values)
        elif action == "extra":
            frame[draw(any_text)] = draw(json_values)
        else:
            frame["type"] = draw(st.sampled_from(INTERNAL_LOOKING_TYPES) | any_text | json_values)
    return frame


def sized_frame(size: int) -> str:
    """A valid ``ping`` frame of exactly ``size`` bytes (padded with an ignored field)."""
    head = '{"type":"ping","ref":"sized","pad":"'
    return head + "p" * (size - len(head) - 2) + '"}'


def nested(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


def frames(context: dict) -> st.SearchStrategy[tuple[str, str | bytes]]:
    """(category, payload): a str is sent as a text frame, bytes as a binary frame."""
    valid = valid_frames(context)
    return st.one_of(
        json_values.map(lambda v: ("random_json", json.dumps(v))),
        valid.map(lambda f: ("valid", json.dumps(f))),
        mutated(valid).map(lambda f: ("mutated", json.dumps(f))),
        st.sampled_from(INTERNAL_LOOKING_TYPES).map(lambda t: ("internal_type", json.dumps({"type": t, "text": "x"}))),
        any_text.map(lambda t: ("unknown_type", json.dumps({"type": t}))),
        st.builds(nested, st.sampled_from([10, 500, 5_000, 20_000]), st.sampled_from(["list", "dict"])).map(lambda s: ("nested", s)),
        st.binary(max_size=300).map(lambda b: ("binary", b)),
        valid.map(lambda f: ("binary_json", json.dumps(f).encode())),
        st.sampled_from([("empty_text", ""), ("empty_binary", b"")]),
        st.text(max_size=80).map(lambda t: ("broken_json", '{"type": "ping", ' + t)),
        st.integers(CAP - 64, CAP).map(lambda n: ("under_cap", sized_frame(n))),
        st.integers(CAP + 1, CAP + 4096).map(lambda n: ("over_cap", sized_frame(n))),
    )  # fmt: skip


# --- the client -------------------------------------------------------------------------------


class FuzzClient:
    """One socket, reopened after an expected close; collects what the oracle needs."""

    def __init__(self, server, token: str):
        self.server = server
        self.token = token
        self.connection = None
        self.stack = ExitStack()
        self.sent = Counter()
        self.closes = Counter()
        self.replies = Counter()
        self.barrier = 0

    def open(self):
        if self.connection is None:
            self.connection = self.stack.enter_context(
                connect(self.server.ws_url(self.token), open_timeout=10, proxy=None, max_size=None)
            )
            assert json.loads(self.connection.recv(timeout=10))["type"] == "session.ready"
        return self.connection

    def close(self) -> None:
        self.stack.close()
        self.connection = None

    def send(self, category: str, payload: str | bytes) -> None:
        connection = self.open()
        self.sent[category] += 1
        size = len(payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload)
        try:
            connection.send(payload)
            self.barrier += 1
            ref = f"barrier-{self.barrier}"
            connection.send(json.dumps({"type": "ping", "ref": ref}))
            while True:
                reply = json.loads(connection.recv(timeout=30))
                assert isinstance(reply, dict) and isinstance(reply.get("type"), str), reply
                self.replies[reply["type"] if reply["type"] != "error" else "error:" + str(reply.get("code"))] += 1
                if reply["type"] == "error":
                    assert reply.get("code") in KNOWN_CODES, (category, payload[:300], reply)
                if reply == {"type": "pong", "ref": ref}:
                    return
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            self.closes[code] += 1
            self.connection = None
            # Over the cap the server closes with 1009; the client, still sending, may instead see
            # the TCP reset that closing a socket with unread input causes (no close frame: None).
            assert size > CAP and code in (1009, None), (
                f"{category} frame of {size} bytes closed the socket with {code}"
            )
            return
        assert size <= CAP, f"a {size}-byte frame was accepted"


@pytest.mark.timeout(max(300, FRAMES // 10))  # a bound against hangs, not a speed requirement
def test_protocol_fuzz(start_server):
    server = start_server("fuzz", serve=True)
    me, friend, stranger = (server.register() for _ in range(3))
    token = server.login(me)["access"]
    other_token = server.login(stranger)["access"]
    chat_ids = []
    for body in (
        {"kind": "direct", "user_id": friend["id"]},
        {"kind": "group", "title": "fuzz", "member_ids": [friend["id"]]},
    ):
        status, chat = server.http("POST", "/api/chats", body, token=token)
        assert status in (200, 201), chat
        chat_ids.append(chat["id"])
    status, foreign = server.http("POST", "/api/chats", {"kind": "direct", "user_id": friend["id"]}, token=other_token)
    assert status == 201
    context = {
        "chat_ids": [*chat_ids, foreign["id"], 0, -1, 2**62, 2**63],
        "tokens": [token, other_token, token[:-4] + "AAAA", "", "x" * 5000],
    }
    client = FuzzClient(server, token)
    samples: list[int] = []

    @settings(
        max_examples=FRAMES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(frame=frames(context))
    def run(frame):
        client.send(*frame)
        total = sum(client.sent.values())
        if total % max(1, FRAMES // 10) == 0:
            samples.append(server.rss_bytes())

    try:
        samples.append(server.rss_bytes())
        run()
        samples.append(server.rss_bytes())
    finally:
        client.close()

    total = sum(client.sent.values())
    print(
        f"\nprotocol fuzz: {total} frames; by kind {dict(sorted(client.sent.items()))}; "
        f"closes {dict(client.closes)}; replies {dict(sorted(client.replies.items()))}; "
        f"server RSS MiB {[round(s / MiB, 1) for s in samples]}"
    )
    assert total >= FRAMES * 0.95  # hypothesis may stop a little short on duplicates
    assert 1011 not in client.closes
    log = server.log()
    assert "Traceback" not in log and "Exception inside application" not in log, log[-8000:]
    # Bounded: after the first tenth (caches, allocator warm), memory stays within 64 MiB.
    assert max(samples[1:]) - samples[1] < 64 * MiB, samples


# --- malformed WebSocket framing (below what a client library lets you send) ---------------------


def _frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0, length: int | None = None
) -> bytes:
    head = bytearray([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload) if length is None else length
    bit = 0x80 if mask else 0
    if n < 126:
        head.append(bit | n)
    elif n < 2**16:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _close_code(sock) -> int | None:
    """Read server frames until its close frame; its code, or None on EOF/reset without one."""
    buffer = b""
    sock.settimeout(10)
    try:
        while True:
            while len(buffer) >= 2:
                opcode, n, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
                if n == 126:
                    n, offset = int.from_bytes(buffer[2:4], "big"), 4
                elif n == 127:
                    n, offset = int.from_bytes(buffer[2:10], "big"), 10
                if len(buffer) < offset + n:
                    break
                payload, buffer = buffer[offset : offset + n], buffer[offset + n :]
                if opcode == 0x8:
                    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            chunk = sock.recv(1 << 16)
            if not chunk:
                return None
            buffer += chunk
    except (ConnectionResetError, BrokenPipeError):
        return None


MALFORMED = {
    "invalid UTF-8 in a text frame": [_frame(0x1, b'{"type":"ping","ref":"\xff\xfe"}')],
    "unmasked client frame": [_frame(0x1, b'{"type":"ping"}', mask=False)],
    "reserved bits set": [_frame(0x1, b'{"type":"ping"}', rsv=0b111)],
    "reserved opcode": [_frame(0x3, b"x")],
    "control frame over 125 bytes": [_frame(0x9, b"p" * 126)],
    "fragmented control frame": [_frame(0x9, b"p", fin=False)],
    "continuation without a start": [_frame(0x0, b"x")],
    "new message inside a fragmented one": [_frame(0x1, b'{"type":', fin=False), _frame(0x1, b'"ping"}')],
    "fragments adding up to more than 64 KiB": [
        _frame(0x1, b'{"type":"ping","pad":"', fin=False),
        *[_frame(0x0, b"p" * 16384, fin=False) for _ in range(5)],
        _frame(0x0, b'"}'),
    ],
    "length header of 2**63 - 1": [_frame(0x1, b"", length=2**63 - 1)],
    "close frame with code 999": [_frame(0x8, (999).to_bytes(2, "big"))],
    "close frame with a 1-byte body": [_frame(0x8, b"\x03")],
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_malformed_websocket_framing_never_breaks_the_server(start_server, entry):
    """Each framing violation closes that socket with a protocol close code (or a reset), never
    1011; the server logs no traceback and keeps serving, fragmented valid messages included."""
    from .live import raw_websocket

    server = start_server(f"framing-{entry}", serve=entry)
    token = server.login(server.register())["access"]
    codes = {}
    for name, frames_ in MALFORMED.items():
        sock = raw_websocket(server.port, token)
        try:
            for data in frames_:
                try:
                    sock.sendall(data)
                except (ConnectionResetError, BrokenPipeError):
                    break
            codes[name] = _close_code(sock)
        finally:
            sock.close()
    # The reader sees close frames: a clean close is answered with 1000.
    sock = raw_websocket(server.port, token)
    try:
        sock.sendall(_frame(0x8, (1000).to_bytes(2, "big")))
        assert _close_code(sock) == 1000
    finally:
        sock.close()
    # autobahn fails a connection by dropping it (failByDrop), hence None rather than 1002/1007.
    print(f"\nmalformed framing -> close codes: {codes}")
    assert not {name: code for name, code in codes.items() if code not in (1002, 1007, 1009, None)}, codes

    # A valid fragmented message is reassembled and answered.
    with connect(server.ws_url(token), open_timeout=10, proxy=None) as connection:
        assert json.loads(connection.recv(timeout=10))["type"] == "session.ready"
        connection.send(iter(['{"type":"ping",', '"ref":"frag', 'mented"}']))
        assert json.loads(connection.recv(timeout=10)) == {"type": "pong", "ref": "fragmented"}
    assert "Traceback" not in server.log()
