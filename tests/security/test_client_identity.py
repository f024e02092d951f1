"""Who the client is (ops/client_ip.py): the connecting address, and X-Forwarded-For only as
written by a trusted proxy. A client choosing its own header never changes its identity, so it
cannot step around the per-address login throttle or into /metrics' allow-list."""

from __future__ import annotations

import uuid

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from ops.client_ip import client_address, limit_key

pytestmark = pytest.mark.django_db


def _http(remote: str, forwarded: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def _scope(remote: str | None, *forwarded: str) -> dict:
    return {
        "type": "websocket",
        "client": [remote, 50000] if remote else None,
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }


@pytest.mark.parametrize(
    ("trusted", "remote", "forwarded", "expected"),
    [
        ([], "203.0.113.7", "127.0.0.1", "203.0.113.7"),  # no trusted proxy: the header is ignored
        (["10.0.0.2"], "203.0.113.7", "198.51.100.1", "203.0.113.7"),  # not from the proxy: ignored
        (["10.0.0.2"], "10.0.0.2", "198.51.100.1", "198.51.100.1"),  # through the proxy
        (["10.0.0.2"], "10.0.0.2", "1.2.3.4, 127.0.0.1, 198.51.100.1", "198.51.100.1"),  # client prefix
        (["10.0.0.0/8"], "10.0.0.2", "198.51.100.1, 10.0.0.9", "198.51.100.1"),  # two proxies
        (["10.0.0.2"], "10.0.0.2", "not-an-address", "10.0.0.2"),  # garbage: the proxy itself
        (["10.0.0.2"], "10.0.0.2", None, "10.0.0.2"),
        (["10.0.0.0/8"], "10.0.0.2", "10.0.0.3", "10.0.0.3"),  # all hops trusted: the left-most
        (["::1"], "::1", "[2001:db8::5]:443", "2001:db8::5"),
        ([], "::ffff:192.0.2.1", None, "192.0.2.1"),
    ],
)
def test_client_address_of_requests_and_socket_scopes(settings, trusted, remote, forwarded, expected):
    """The same answer for an HttpRequest and for an ASGI scope with the same connection."""
    settings.TRUSTED_PROXIES = trusted
    assert str(client_address(_http(remote, forwarded))) == expected
    assert str(client_address(_scope(remote, *([forwarded] if forwarded else [])))) == expected


def test_repeated_forwarded_headers_are_one_list(settings):
    """Two X-Forwarded-For headers on a socket handshake read as one list, in order."""
    settings.TRUSTED_PROXIES = ["10.0.0.2"]
    assert str(client_address(_scope("10.0.0.2", "198.51.100.1", "10.0.0.2"))) == "198.51.100.1"
    assert client_address(_scope(None, "198.51.100.1")) is None  # no connecting address at all


def test_ipv6_clients_are_limited_per_64():
    """One host usually holds a whole /64: per-address limits count the network."""
    first, second = (client_address(_http(f"2001:db8:1:2::{n}")) for n in (1, 2))
    assert limit_key(first) == limit_key(second) == "2001:db8:1:2::/64"
    assert limit_key(client_address(_http("192.0.2.1"))) == "192.0.2.1"


def _wrong_login(client: APIClient, **headers):
    # A new username each time: only the per-address throttle is in play, not the per-account limit.
    body = {"username": f"nobody-{uuid.uuid4().hex[:8]}", "password": "wrong-password-1"}
    return client.post("/api/auth/token", body, format="json", **headers)


def test_spoofed_forwarded_for_does_not_escape_the_login_throttle(settings):
    """Without a trusted proxy, a new X-Forwarded-For on every attempt is still one client: 429."""
    settings.AUTH_THROTTLE_RATE = "5/min"
    settings.TRUSTED_PROXIES = []
    client = APIClient(REMOTE_ADDR="192.0.2.10")
    codes = [_wrong_login(client, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code for n in range(6)]
    assert codes == [401] * 5 + [429]
    refused = _wrong_login(client, HTTP_X_FORWARDED_FOR="203.0.113.99")
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    assert int(refused["Retry-After"]) >= 1


def test_behind_a_trusted_proxy_each_real_client_is_one_identity(settings):
    """Through a trusted proxy the client is the address the proxy appended: a client-chosen
    prefix changes nothing, and another client behind the same proxy is not throttled."""
    settings.AUTH_THROTTLE_RATE = "5/min"
    settings.TRUSTED_PROXIES = ["10.0.0.2"]
    proxy = APIClient(REMOTE_ADDR="10.0.0.2")
    codes = [_wrong_login(proxy, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, 192.0.2.20").status_code for n in range(6)]
    assert codes == [401] * 5 + [429]
    assert _wrong_login(proxy, HTTP_X_FORWARDED_FOR="192.0.2.21").status_code == 401
    # Claiming to be the throttled client from another address does not borrow its identity either.
    assert _wrong_login(proxy, HTTP_X_FORWARDED_FOR="192.0.2.20, 192.0.2.22").status_code == 401


def test_metrics_allow_list_sees_the_client_behind_a_trusted_proxy(settings):
    """A proxy on loopback no longer makes every client look like loopback to /metrics."""
    settings.DEBUG = False
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    through_proxy = APIClient(REMOTE_ADDR="127.0.0.1")
    assert through_proxy.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 404
    assert through_proxy.get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1, 203.0.113.7").status_code == 404
    assert through_proxy.get("/metrics").status_code == 200  # from the proxy's host itself


@pytest.mark.parametrize("trusted, kept", [([], False), (["10.0.0.0/8"], True)])
def test_forwarded_proto_counts_only_from_a_trusted_proxy(settings, trusted, kept):
    """A client cannot claim HTTPS with its own X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER would
    believe it); the same header from a trusted proxy is kept."""
    from django.http import HttpResponse
    from django.test import RequestFactory

    from ops.middleware import ProxyHeadersMiddleware

    settings.TRUSTED_PROXIES = trusted
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    seen = []

    def view(request):
        seen.append(request.is_secure())
        return HttpResponse()

    request = RequestFactory().get("/", REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_PROTO="https")
    ProxyHeadersMiddleware(view)(request)
    assert seen == [kept]
