"""Bad-input sweep: no input gives a 5xx, HTML or a closed socket; every error is ``{code, detail}``.

Against a live ``python -m runtime.serve`` in production mode (``DEBUG=false``). The REST
operations and their fields are read from the OpenAPI schema, so a new endpoint or field is
swept without touching this test:

* every string field of every request body gets each of :data:`BAD_STRINGS` (lone surrogates,
  NUL, huge, invisible-only, bidi overrides, ...) and each of :data:`WRONG_TYPES` (which must be
  refused as ``validation_error`` naming the field: a number is not a string);
* every query and path parameter gets the bad strings, percent-encoded (lone surrogates as the
  invalid UTF-8 ``%ED%A0%80``);
* every operation with a body gets depth bombs (33 and 100 000 levels: ``invalid_json``; 32
  levels parse), non-UTF-8 bytes and a body over the upload limit (``413 too_large``);
* a disallowed ``Host`` (``bad_host``), too many query parameters (``bad_request``), and
  header blocks over 16 KiB (``431 headers_too_large``, one long line and many short ones).

Every socket frame type gets the same strings and types in each of its fields and depth bombs.
Oracle: status < 500; an error is JSON ``{"code": <documented in PROTOCOL §8>, "detail": ...}``;
every frame is answered without a close and never with ``server_error``; the server's log has
no traceback. The counts per class are printed (figures in docs/RELIABILITY.md).
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import socket
import uuid
from collections import Counter
from urllib.parse import quote

import pytest
from drf_spectacular.generators import SchemaGenerator
from websockets.sync.client import connect

from chats.consumers import ChatConsumer
from ops.jsonio import MAX_DEPTH

from .live import ENTRY_POINTS, ROOT

pytestmark = pytest.mark.django_db(transaction=True)

STRONG = "Purple-Otter-Tango-91"
UPLOAD_LIMIT = 2_621_440  # Django's DATA_UPLOAD_MAX_MEMORY_SIZE
BAD_STRINGS = {
    "lone high surrogate": "\ud800",
    "lone low surrogate inside": "a\udfffb",
    "reversed surrogate pair": "\ude00\ud83d",
    "NUL": "a\x00b",
    "huge": "x" * 100_000,
    "huge multibyte": "\U0001f600" * 20_000,
    "zero-width only": "\u200b\u200c\u200d\u2060\ufeff",
    "invisible mix": " \u200b\u3164\u2800\u034f\ufe0f\t",
    "bidi override": "abc\u202edef.txt",
    "bidi isolate unclosed": "\u2067abc",
    "whitespace only": " \t\r\n\u00a0\u3000",
    "empty": "",
    "control characters": "\x01\x1b[31m\x7f",
    "non-characters": "\ufffe\uffff\U0010ffff",
    "unassigned and private use": "\U000e0001\ue000\U000f0000",
    "looks like JSON": '{"code": 1}',
    "template and SQL": "{{7*7}}'; DROP TABLE x;--",
}
WRONG_TYPES = {
    "integer": 12345,
    "huge integer": 10**30,
    "float": 1.5,
    "boolean": True,
    "list": ["x"],
    "object": {"x": "y"},
}


def documented_error_codes() -> set[str]:
    """The codes in docs/PROTOCOL.md's error table (§8)."""
    text = (ROOT / "docs" / "PROTOCOL.md").read_text()
    section = text.split("## 8. Errors and error codes", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))


DOCUMENTED = documented_error_codes()


# --- HTTP ---------------------------------------------------------------------------------


class Results:
    """Answers per input class; every answer is checked as it comes."""

    def __init__(self):
        self.cases: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()

    def check(self, kind: str, status: int, body: bytes, content_type: str, what: str) -> dict | None:
        self.cases[kind] += 1
        assert status < 500, f"{what}: {status} {body[:300]!r}"
        if status < 400:
            return None
        assert content_type.startswith("application/json"), f"{what}: {status} {content_type} {body[:300]!r}"
        error = json.loads(body)
        assert isinstance(error, dict) and isinstance(error.get("code"), str) and "detail" in error, (what, error)
        assert error["code"] in DOCUMENTED, f"{what}: undocumented code {error['code']!r}"
        self.codes[error["code"]] += 1
        return error


def call(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        connection.close()


def encode(body) -> bytes:
    """JSON with \\u escapes, so lone surrogates travel as the escapes a client would send."""
    return json.dumps(body).encode()


def resolve(schema: dict, node: dict) -> dict:
    """``node`` with references followed (also a lone ``allOf``, spectacular's $ref with siblings)."""
    while True:
        if "$ref" in node:
            node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
        elif len(node.get("allOf", [])) == 1:
            node = {**{k: v for k, v in node.items() if k != "allOf"}, **node["allOf"][0]}
        else:
            return node


def body_shapes(schema: dict, operation: dict) -> list[dict]:
    """The object schemas a request body may take (each alternative of a oneOf)."""
    content = (operation.get("requestBody") or {}).get("content", {}).get("application/json")
    if not content:
        return []
    root = resolve(schema, content["schema"])
    return [resolve(schema, alternative) for alternative in root.get("oneOf", [root])]


class Context:
    """A user with a group (owner) and a friend in it, made through the live server's API."""

    def __init__(self, server):
        self.server = server
        self.user = server.register(f"sweep{uuid.uuid4().hex[:8]}")
        self.friend = server.register(f"friend{uuid.uuid4().hex[:8]}")
        tokens = server.login(self.user)
        self.access, self.refresh = tokens["access"], tokens["refresh"]
        status, chat = server.http(
            "POST",
            "/api/chats",
            {"kind": "group", "title": "Sweep", "member_ids": [self.friend["id"]]},
            token=self.access,
        )
        assert status == 201, chat
        self.chat_id = chat["id"]

    def valid(self, name: str, prop: dict):
        """A valid value for a body field, so the one bad field is what the server judges."""
        if "enum" in prop:
            return prop["enum"][0]
        fresh = uuid.uuid4().hex[:10]
        return {
            "username": f"new{fresh}",
            "email": f"new{fresh}@example.com",
            "password": STRONG,
            "refresh": self.refresh,
            "title": "Title",
            "client_id": fresh,
            "text": "hello",
            "user_id": self.friend["id"],
            "member_ids": [self.friend["id"]],
            "up_to_seq": 0,
            "from_chat_id": self.chat_id,
            "seqs": [1],
            "client_ids": [fresh],
        }.get(name, "x" if prop.get("type") == "string" else 1)

    def path(self, template: str, values: dict[str, str] | None = None) -> str:
        values = {
            "id": str(self.chat_id),
            "chat_id": str(self.chat_id),
            "user_id": str(self.friend["id"]),
            "seq": "1",
            "emoji": percent("👍"),
            "upload_id": "1",
            **(values or {}),
        }
        return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


def percent(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@pytest.fixture(scope="module", params=ENTRY_POINTS)
def server(start_server, request):
    env = {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "SEND_RATE_LIMIT": "0",
    }
    return start_server(f"bad_input-{request.param}", serve=request.param, **env)


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema: dict):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield path, method.upper(), operation


def test_every_string_field_of_every_body_survives_bad_strings_and_wrong_types(server, schema):
    """Bad strings in any body field: never a 5xx, errors as {code, detail}; non-strings are validation_error."""
    context, results = Context(server), Results()
    swept_fields = set()
    for template, method, operation in operations(schema):
        for shape in body_shapes(schema, operation):
            props = {name: resolve(schema, prop) for name, prop in shape.get("properties", {}).items()}
            strings = [
                name for name, prop in props.items() if prop.get("type") == "string" and not prop.get("readOnly")
            ]
            for field in strings:
                swept_fields.add((method, template, field))
                for label, value in {**BAD_STRINGS, **WRONG_TYPES}.items():
                    body = {name: context.valid(name, prop) for name, prop in props.items()}
                    body[field] = value
                    status, raw, content_type = call(
                        server.port,
                        method,
                        context.path(template),
                        encode(body),
                        {"Authorization": f"Bearer {context.access}"},
                    )
                    kind = "wrong type" if label in WRONG_TYPES else label
                    error = results.check(kind, status, raw, content_type, f"{method} {template} {field}={label}")
                    if label in WRONG_TYPES:
                        assert status == 400 and error["code"] == "validation_error", (template, field, label, error)
                        assert field in error["detail"], (template, field, label, error)
    # The sweep reached the string fields the API has (a schema change shows up here).
    assert {field for _, _, field in swept_fields} >= {
        "username", "email", "password", "refresh", "title", "client_id", "text", "kind", "role",
    }  # fmt: skip
    print(f"\nbody fields swept: {len(swept_fields)}; cases: {dict(results.cases)}; codes: {dict(results.codes)}")
    assert "Traceback" not in server.log(), server.log()[-5000:]


def test_every_query_and_path_parameter_survives_bad_strings(server, schema):
    """Bad strings in query strings and path segments: never a 5xx, errors as {code, detail}."""
    context, results = Context(server), Results()
    swept = 0
    for template, method, operation in operations(schema):
        params = [p for p in operation.get("parameters", []) if p["in"] in {"query", "path"}]
        for param in params:
            swept += 1
            for label, long_value in BAD_STRINGS.items():
                value = long_value[:500]  # the URL stays under the 16 KiB header limit
                if param["in"] == "path":
                    path = context.path(template, {param["name"]: percent(value) or "%20"})
                else:
                    path = f"{context.path(template)}?{param['name']}={percent(value)}"
                body = encode({}) if method in {"POST", "PATCH", "PUT"} else None
                status, raw, content_type = call(
                    server.port, method, path, body, {"Authorization": f"Bearer {context.access}"}
                )
                results.check(f"{param['in']} {label}", status, raw, content_type, f"{method} {path[:80]}")
    assert swept >= 8
    print(f"\nparameters swept: {swept}; cases: {sum(results.cases.values())}; codes: {dict(results.codes)}")
    assert "Traceback" not in server.log(), server.log()[-5000:]


def nested(levels: int) -> bytes:
    return (b'{"a": ' * (levels - 1)) + b"[1]" + (b"}" * (levels - 1))


def test_every_body_refuses_depth_bombs_bad_bytes_and_oversized_bodies(server, schema):
    """Depth over the limit is 400 invalid_json on every body endpoint (unauthenticated ones too);
    non-UTF-8 is invalid_json; a body over the upload limit is 413 too_large."""
    context, results = Context(server), Results()
    with_body = [(t, m) for t, m, op in operations(schema) if body_shapes(schema, op)]
    assert {"/api/auth/register", "/api/auth/token", "/api/auth/token/refresh"} <= {t for t, _ in with_body}
    oversized = b'{"text": "' + b"a" * UPLOAD_LIMIT + b'"}'
    for template, method in with_body:
        path, auth = context.path(template), {"Authorization": f"Bearer {context.access}"}
        for kind, body, code in [
            ("depth bomb 100 000", nested(100_000), "invalid_json"),
            (f"depth {MAX_DEPTH + 1}", nested(MAX_DEPTH + 1), "invalid_json"),
            # At the limit the body parses: the view answers it (its fields are unknown, so a
            # validation error, or a no-op where every field is optional, as PATCH /api/users/me).
            (f"depth {MAX_DEPTH}", nested(MAX_DEPTH), None),
            ("lone surrogate escape", b'{"x": "\\ud800"}', "invalid_json"),
            ("invalid UTF-8", b'{"x": "\xed\xa0\x80\xff"}', "invalid_json"),
            ("NaN", b'{"x": NaN}', "invalid_json"),
            ("over the upload limit", oversized, "too_large"),
        ]:
            status, raw, content_type = call(server.port, method, path, body, auth)
            error = results.check(kind, status, raw, content_type, f"{method} {template} {kind}")
            if code is None:
                assert status < 500 and (error is None or error["code"] != "invalid_json"), (
                    template,
                    kind,
                    status,
                    error,
                )
                continue
            assert error is not None and error["code"] == code, (template, kind, status, error)
            if code == "too_large":
                assert status == 413
    print(f"\nbody endpoints: {len(with_body)}; cases: {dict(results.cases)}")
    assert "Traceback" not in server.log(), server.log()[-5000:]


def test_django_level_refusals_are_json_with_stable_codes(server):
    """A disallowed Host and too many query parameters are JSON errors, not Django's HTML 400."""
    context, results = Context(server), Results()
    auth = {"Authorization": f"Bearer {context.access}"}
    for path, method in [("/api/users/me", "GET"), ("/api/auth/token", "POST"), ("/nowhere", "GET")]:
        status, raw, content_type = call(server.port, method, path, b"{}", {"Host": "evil.example", **auth})
        assert results.check("bad host", status, raw, content_type, path) == {
            "code": "bad_host",
            "detail": "The Host header names a host this server does not serve.",
        }
        assert status == 400
    query = "&".join(f"f{n}=1" for n in range(1_001))
    status, raw, content_type = call(server.port, "GET", f"/api/users?{query}", None, auth)
    assert (
        status == 400 and results.check("too many fields", status, raw, content_type, "query")["code"] == "bad_request"
    )
    assert "Traceback" not in server.log(), server.log()[-5000:]


def raw_request(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    "headers",
    [
        [b"X-Pad: " + b"a" * (17 * 1024)],  # one line over 16 KiB: Twisted closed without an answer
        [b"X-Pad-%d: %s" % (n, b"a" * 1000) for n in range(20)],  # 20 KiB in short lines: a bare 400
    ],
    ids=["one long header", "many headers"],
)
def test_a_header_block_over_16_kib_is_431_json(server, headers):
    """A request whose headers add up to more than 16 KiB is answered 431 with the JSON error body."""
    head = b"GET /api/users/me HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\n"
    answer = raw_request(server.port, head)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large", answer[:300]
    header_block, _, body = rest.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in header_block
    assert json.loads(body) == {"code": "headers_too_large", "detail": "The request header block is over 16 KiB."}
    # Just under the limit is served as usual.
    ok = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Pad: " + b"a" * 15_000 + b"\r\n\r\n"
    assert raw_request(server.port, ok).startswith(b"HTTP/1.1 200")


def test_a_body_over_the_upload_limit_is_413_json_before_it_is_read(server):
    """A Content-Length over MAX_UPLOAD_BYTES plus framing is refused at once, not read first."""
    head = (
        b"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        b"Content-Length: 1000000000000\r\n\r\n" + b"x" * 1000
    )
    answer = raw_request(server.port, head)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Content Too Large", answer[:300]
    assert json.loads(rest.partition(b"\r\n\r\n")[2]) == {
        "code": "too_large",
        "detail": "The request body is over the upload limit.",
    }


# --- socket frames ---------------------------------------------------------------------------


def test_every_field_of_every_frame_type_survives_bad_strings_wrong_types_and_depth(server):
    """Each frame type, each field: bad strings, wrong types, depth bombs; every frame is answered."""
    context = Context(server)
    base_frames = {
        "message.send": {"chat_id": context.chat_id, "client_id": "c", "text": "hello"},
        "message.read": {"chat_id": context.chat_id, "up_to_seq": 0},
        "typing": {"chat_id": context.chat_id},
        "message.edit": {"chat_id": context.chat_id, "seq": 1, "text": "hello"},
        "message.delete": {"chat_id": context.chat_id, "seqs": [1]},
        "message.forward": {
            "from_chat_id": context.chat_id,
            "seqs": [1],
            "to_chat_id": context.chat_id,
            "client_ids": ["f"],
        },
        "reaction.add": {"chat_id": context.chat_id, "seq": 1, "emoji": "👍"},
        "reaction.remove": {"chat_id": context.chat_id, "seq": 1, "emoji": "👍"},
        "message.pin": {"chat_id": context.chat_id, "seq": 1, "pinned": True},
        "channel.watch": {"chat_id": context.chat_id},
        "ping": {},
        "auth.refresh": {"token": context.access},
    }
    assert set(base_frames) == set(ChatConsumer.HANDLERS), "a new frame type: add its fields here"
    # Frames stay under the 64 KiB frame cap (over it the socket is closed with 1009, by design).
    strings = {**BAD_STRINGS, "huge": "x" * 5000, "huge multibyte": "\U0001f600" * 3000}
    values = {**strings, **WRONG_TYPES, "nested under the limit": json.loads(nested(MAX_DEPTH - 1))}
    codes: Counter[str] = Counter()
    cases = 0
    with connect(server.ws_url(context.access), open_timeout=10, proxy=None, max_size=None) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "session.ready"

        def exchange(text: str, what: str) -> None:
            ws.send(text)
            ws.send(json.dumps({"type": "ping", "ref": "barrier"}))
            while True:
                reply = json.loads(ws.recv(timeout=30))
                assert isinstance(reply, dict) and isinstance(reply.get("type"), str), (what, reply)
                if reply["type"] == "error":
                    assert reply["code"] in DOCUMENTED and reply["code"] != "server_error", (what, reply)
                    assert "detail" in reply, (what, reply)
                    codes[reply["code"]] += 1
                if reply == {"type": "pong", "ref": "barrier"}:
                    return

        for kind, fields in base_frames.items():
            for field in [*fields, "ref", "type"]:
                for label, value in values.items():
                    frame = {"type": kind, "ref": "r", **fields, field: value}
                    if field == "client_id":
                        frame["client_id"] = value if not isinstance(value, str) else f"{value}{uuid.uuid4().hex}"
                    exchange(json.dumps(frame), f"{kind}.{field}={label}")
                    cases += 1
            for levels in (MAX_DEPTH + 1, 20_000):  # the frame object is level 1
                text = json.dumps({"type": kind, "ref": "d", **fields, "x": 0})
                text = text.replace('"x": 0', '"x": ' + "[" * (levels - 1) + "]" * (levels - 1))
                exchange(text, f"{kind} depth {levels}")
                cases += 1
    assert codes["invalid_json"] >= 5 * 3  # surrogate escapes and depth bombs, per frame type
    print(f"\nframes: {cases}; error codes: {dict(codes)}")
    assert "Traceback" not in server.log(), server.log()[-5000:]
