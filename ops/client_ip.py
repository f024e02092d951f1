"""Who the client is: the one answer every limit, allow-list and log line uses.

The client is the connecting address (``REMOTE_ADDR``, the ASGI scope's ``client``), unless
that address is a trusted proxy (``TRUSTED_PROXIES``: addresses or CIDR networks, default
none). Then ``X-Forwarded-For`` is read from the right: each trusted proxy appends the address
it was connected from, so the right-most address that is *not* a trusted proxy is the client.
Everything left of it was written by the client and is ignored; without a trusted proxy the
header is never read at all.

:func:`limit_key` is the identity rate limits count under: the address, or for IPv6 its /64
network (one host is usually given a whole /64, so counting single IPv6 addresses would give
it 2^64 identities).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """The parsed networks of an allow-list setting (addresses become /32 or /128 networks)."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def parse(value: str | None) -> Address | None:
    """An address from a header or scope value (``[v6]:port`` and ``v4:port`` tolerated), else None.
    IPv4-mapped IPv6 addresses are answered as the IPv4 address."""
    if not value:
        return None
    value = value.strip()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else value
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address) -> bool:
    return any(address in network for network in networks(tuple(settings.TRUSTED_PROXIES)))


def _connection(source: Any) -> tuple[str | None, list[str]]:
    """(connecting address, X-Forwarded-For values in order) of an HttpRequest or an ASGI scope."""
    if isinstance(source, dict):
        client = source.get("client") or (None,)
        forwarded = [
            value.decode("latin-1") for name, value in source.get("headers") or [] if name == b"x-forwarded-for"
        ]
        return client[0], forwarded
    meta = source.META
    header = meta.get("HTTP_X_FORWARDED_FOR")
    return meta.get("REMOTE_ADDR"), [header] if header else []


def from_trusted_proxy(source: Any) -> bool:
    """Whether the request or scope came straight from a trusted proxy (so its forwarding headers count)."""
    address = parse(_connection(source)[0])
    return address is not None and _trusted(address)


def client_address(source: Any) -> Address | None:
    """The client of an ``HttpRequest`` or an ASGI ``scope``: the connecting address, or behind
    trusted proxies the right-most untrusted ``X-Forwarded-For`` entry. None when the connection
    has no address (a unix socket, a test communicator)."""
    remote, forwarded = _connection(source)
    address = parse(remote)
    if address is None or not forwarded or not _trusted(address):
        return address
    hops = [hop for value in forwarded for hop in value.split(",")]
    for hop in reversed(hops):
        previous, address = address, parse(hop)
        if address is None:
            # Not an address: nothing a trusted proxy writes. The last trusted hop is the client.
            return previous
        if not _trusted(address):
            return address
    return address  # every hop is a trusted proxy: the request came from inside


def limit_key(address: Address | None) -> str:
    """The identity a per-address limit counts under: the address, an IPv6 /64, or ``unknown``."""
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def address_allowed(source: Any, allowed: list[str] | tuple[str, ...]) -> bool:
    """Whether the client (as :func:`client_address` says) is in the addresses or networks ``allowed``."""
    address = client_address(source)
    return address is not None and any(address in network for network in networks(tuple(allowed)))
