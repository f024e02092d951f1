"""The shipped nginx in front of two app processes, as Compose runs it, with Debian's nginx.

The config is ``deploy/nginx.conf`` with only what a test must change: the upstream servers
(two ``runtime.serve`` processes on free ports against the test database), the listening
address, log and pid files, temp paths and one worker. Every proxy directive is the shipped
one. Through it, a browser-like client logs in to the Django admin (the CSRF origin check
needs the Host with its port) and opens a socket; the login throttle counts each real client
once whatever it writes into X-Forwarded-For, and directly (not through the trusted proxy)
the header is ignored.

Clients bind distinct loopback addresses (127.0.0.2, ...) so that nginx (127.0.0.1, the one
trusted proxy) and each client have their own address.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
import subprocess
import uuid
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest
import websockets

from tests.conftest import PASSWORD
from tests.live import ROOT, ServerProcess, port_accepts

from .live import server_env

NGINX_CONF = ROOT / "deploy" / "nginx.conf"
APP_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "nginx-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGH",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "false",
    "TRUSTED_PROXIES": "127.0.0.1",
    "AUTH_THROTTLE_RATE": "5/min",
    "SOCKET_CONNECTS_PER_ADDRESS": "3",
    "SOCKET_CONNECTS_PER_USER": "100",
}


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.fail(
            "nginx is not installed: these tests run Debian's nginx (apt-get install -y nginx; .ci/run installs it)",
            pytrace=False,
        )
    return found


def nginx_config(shipped: str, *, listen: int, upstreams: list[int], directory: Path) -> str:
    """``deploy/nginx.conf`` pointed at this test's processes and files; proxy directives untouched."""
    conf = shipped
    servers = iter(upstreams)
    conf, replaced = re.subn(r"server app\d:8000", lambda _m: f"server 127.0.0.1:{next(servers)}", conf)
    assert replaced == len(upstreams) == 2, "the upstream of deploy/nginx.conf changed shape"
    # The object store is not part of these tests: an address nothing listens on (nginx needs
    # every upstream host to resolve when it starts).
    conf, replaced = re.subn(r"server minio:9000;", "server 127.0.0.1:9;", conf)
    assert replaced == 1, "the attachments upstream of deploy/nginx.conf changed shape"
    conf = conf.replace("listen 8000;", f"listen 127.0.0.1:{listen};")
    conf = conf.replace("access_log /dev/stdout json;", f"access_log {directory}/access.log json;")
    conf = conf.replace("error_log /dev/stderr warn;", f"error_log {directory}/error.log warn;")
    conf = re.sub(r"^worker_processes \S+;", "worker_processes 1;", conf, flags=re.MULTILINE)
    temp = "".join(
        f"    {kind}_temp_path {directory}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = conf.replace("http {\n", "http {\n" + temp, 1)
    head = f"pid {directory}/nginx.pid;\n" + ("user root;\n" if os.geteuid() == 0 else "")
    return head + conf


@pytest.fixture(scope="module")
def stack(start_server, tmp_path_factory):
    """Two app processes and nginx in front of them."""
    binary = nginx_binary()
    apps = [start_server(f"app{n}", serve=True, **APP_ENV) for n in (1, 2)]
    directory = tmp_path_factory.mktemp("nginx")
    conf_path = directory / "nginx.conf"

    def argv(port: int) -> list[str]:
        conf_path.write_text(
            nginx_config(NGINX_CONF.read_text(), listen=port, upstreams=[app.port for app in apps], directory=directory)
        )
        return [
            binary,
            "-p",
            str(directory),
            "-e",
            str(directory / "error.log"),
            "-c",
            str(conf_path),
            "-g",
            "daemon off;",
        ]

    nginx = ServerProcess(directory / "nginx.out", server_env(), argv, ready=port_accepts)
    nginx.start()
    yield nginx, apps
    nginx.stop()


def call(port: int, method: str, path: str, *, source: str, body: bytes | None = None, headers=None):
    """One HTTP request from the loopback address ``source``: (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15, source_address=(source, 0))
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def cookies(headers) -> dict[str, str]:
    jar = SimpleCookie()
    for value in headers.get_all("Set-Cookie") or []:
        jar.load(value)
    return {name: morsel.value for name, morsel in jar.items()}


def cookie_header(values: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in values.items())


@pytest.mark.django_db(transaction=True)
def test_admin_login_through_nginx(stack, django_user_model):
    """GET the login page, POST it with its CSRF token as a browser does (Origin with the port):
    a redirect to the admin index, which then renders for the new session."""
    nginx, _ = stack
    admin = django_user_model.objects.create_superuser(
        username=f"root{uuid.uuid4().hex[:6]}", email=f"{uuid.uuid4().hex[:6]}@example.com", password=PASSWORD
    )
    origin = f"http://127.0.0.1:{nginx.port}"
    status, headers, page = call(nginx.port, "GET", "/admin/login/?next=/admin/", source="127.0.0.2")
    assert status == 200, page[:500]
    jar = cookies(headers)
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
    form = urlencode(
        {"csrfmiddlewaretoken": token, "username": admin.username, "password": PASSWORD, "next": "/admin/"}
    )
    status, headers, page = call(
        nginx.port,
        "POST",
        "/admin/login/?next=/admin/",
        source="127.0.0.2",
        body=form.encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": cookie_header(jar),
            "Origin": origin,
            "Referer": f"{origin}/admin/login/?next=/admin/",
        },
    )
    assert status == 302, (status, page[:2000])
    assert headers["Location"] == "/admin/"
    jar.update(cookies(headers))
    status, _, page = call(nginx.port, "GET", "/admin/", source="127.0.0.2", headers={"Cookie": cookie_header(jar)})
    assert status == 200 and b"Site administration" in page, page[:500]


def api(port: int, method: str, path: str, body: dict, *, source: str, forwarded: str | None = None):
    headers = {"Content-Type": "application/json"}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    status, _, raw = call(port, method, path, source=source, body=json.dumps(body).encode(), headers=headers)
    return status, json.loads(raw)


def register_and_login(port: int, source: str) -> dict:
    username = f"n{uuid.uuid4().hex[:10]}"
    body = {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
    assert api(port, "POST", "/api/auth/register", body, source=source)[0] == 201
    status, tokens = api(port, "POST", "/api/auth/token", {"username": username, "password": PASSWORD}, source=source)
    assert status == 200, tokens
    return tokens


async def _socket(port: int, token: str, *, source: str, headers=None):
    return await websockets.connect(
        f"ws://127.0.0.1:{port}/ws/?token={token}", local_addr=(source, 0), additional_headers=headers, open_timeout=10
    )


def test_socket_through_nginx(stack):
    """A socket through nginx gets session.ready; the connect limit per address sees the real
    client (the 4th handshake of 127.0.0.6 is refused with 4429 whatever its X-Forwarded-For says)
    and not nginx (127.0.0.7 still connects)."""
    nginx, _ = stack
    tokens = register_and_login(nginx.port, "127.0.0.6")

    async def scenario():
        opened = []
        for n in range(3):
            ws = await _socket(
                nginx.port, tokens["access"], source="127.0.0.6", headers={"X-Forwarded-For": f"10.0.0.{n}"}
            )
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "session.ready"
            opened.append(ws)
        refused = await _socket(
            nginx.port, tokens["access"], source="127.0.0.6", headers={"X-Forwarded-For": "10.9.9.9"}
        )
        frame = json.loads(await asyncio.wait_for(refused.recv(), 10))
        assert frame["code"] == "rate_limited" and frame["retry_after"] > 0
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(refused.recv(), 10)
        assert closed.value.rcvd.code == 4429
        other = await _socket(nginx.port, tokens["access"], source="127.0.0.7")
        assert json.loads(await asyncio.wait_for(other.recv(), 10))["type"] == "session.ready"
        for ws in [*opened, other]:
            await ws.close()

    asyncio.run(scenario())


def _wrong_login(port: int, *, source: str, forwarded: str | None = None) -> int:
    # A new username each time: only the per-address throttle is in play, not the per-account limit.
    body = {"username": f"nobody-{uuid.uuid4().hex[:8]}", "password": "wrong-password-1"}
    return api(port, "POST", "/api/auth/token", body, source=source, forwarded=forwarded)[0]


def test_login_throttle_through_nginx_counts_each_real_client_once(stack):
    """nginx appends the address it saw to the client's X-Forwarded-For; behind it a new
    client-chosen prefix on every attempt is still one client (5/min: the 6th is 429, across
    both app processes), and another client is not throttled by it."""
    nginx, _ = stack
    codes = [_wrong_login(nginx.port, source="127.0.0.3", forwarded=f"198.51.100.{n}") for n in range(6)]
    assert codes == [401] * 5 + [429]
    assert _wrong_login(nginx.port, source="127.0.0.4") == 401
    # Claiming to be another client changes nothing either way.
    assert _wrong_login(nginx.port, source="127.0.0.4", forwarded="127.0.0.3") == 401
    assert _wrong_login(nginx.port, source="127.0.0.3", forwarded="127.0.0.4") == 429


def test_login_throttle_directly_ignores_the_header(stack):
    """Straight to an app process from an address that is not a trusted proxy: X-Forwarded-For is
    ignored, so a new one per attempt still ends in 429."""
    _, apps = stack
    codes = [_wrong_login(apps[n % 2].port, source="127.0.0.5", forwarded=f"198.51.100.{n}") for n in range(6)]
    assert codes == [401] * 5 + [429]


def test_the_generated_config_keeps_every_proxy_directive():
    """What the tests above ran is the shipped proxying: every proxy_set_header and map is there."""
    shipped = NGINX_CONF.read_text()
    generated = nginx_config(shipped, listen=1, upstreams=[2, 3], directory=Path("/tmp/x"))
    for line in shipped.splitlines():
        if re.match(r"\s*(proxy_\w+|map |location |upstream )", line):
            assert line in generated, line
    assert subprocess.run([nginx_binary(), "-v"], capture_output=True, check=False).returncode == 0
