"""Who is asking: the client address that the per-address rate limit counts.

Without configured proxies the address is the TCP peer, and
``X-Forwarded-For`` is ignored: anyone can send that header, so believing
it would let a client pick a fresh address for every request.  When the
peer is one of ``trusted_proxies``, the header is read from the right (the
entry the nearest proxy appended) leftwards, skipping further trusted
proxies; the first address that is not a trusted proxy is the client.
Entries to its left were written by the client itself and are never used.

IPv6 clients are counted per /64 network, because one host is usually
given a whole /64 and can use any address in it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from .units import Network

__all__ = ["client_address", "rate_key"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address in network for network in proxies)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], proxies: Sequence[Network]
) -> Address | None:
    """The client's address, from the peer and (behind trusted proxies) X-Forwarded-For.

    ``forwarded_for`` holds every ``X-Forwarded-For`` header line as received.
    None when the peer is not an IP address (a Unix socket).
    """
    address = _parse(peer) if peer else None
    if address is None or not _trusted(address, proxies):
        return address
    hops = [hop for line in forwarded_for for hop in line.split(",") if hop.strip()]
    for hop in reversed(hops):
        candidate = _parse(hop)
        if candidate is None:
            return address  # a garbled chain: count the proxy itself, never a made-up address
        if not _trusted(candidate, proxies):
            return candidate
        address = candidate
    return address


def rate_key(address: Address | None) -> str:
    """What the per-address limit counts: the IPv4 address, or the IPv6 /64."""
    if address is None:
        return "local"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
