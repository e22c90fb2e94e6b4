"""Where a request comes from and which names the app answers to.

The client address is the TCP peer's unless the peer is one of `review.trusted_proxies`:
then the `X-Forwarded-For` (or `Forwarded`) chain is read from the right, past every trusted
proxy, and the first address no trusted proxy vouches for is the client. Entries further
left were written by the client itself and prove nothing. Absolute links come from
`review.public_url`; the Host header only has to be one of the names the app answers to.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from inspector.settings import ReviewSettings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_FOR = re.compile(r'for="?\[?([^\]";,]+)\]?(?::\d+)?"?', re.IGNORECASE)
_WILDCARDS = ("0.0.0.0", "::", "")


def networks(entries: Sequence[str]) -> tuple[Network, ...]:
    """Addresses or networks (CIDR) as networks; settings validated them already."""
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _hops(conn: HTTPConnection) -> list[str]:
    """The forwarding chain, nearest proxy last (X-Forwarded-For, else Forwarded)."""
    xff = conn.headers.getlist("x-forwarded-for")
    if xff:
        return [h for line in xff for h in line.split(",") if h.strip()]
    forwarded = conn.headers.getlist("forwarded")
    return [m.group(1) for line in forwarded for m in _FOR.finditer(line)]


def client_address(conn: HTTPConnection, trusted: Sequence[Network]) -> str:
    """The real client address of a request (see the module docstring)."""
    peer = conn.client.host if conn.client else "unknown"
    current = _address(peer)
    if current is None or not any(current in net for net in trusted):
        return peer
    for hop in reversed(_hops(conn)):
        found = _address(hop)
        if found is None:
            break  # a malformed entry: trust nothing beyond the last proxy we could read
        current = found
        if not any(found in net for net in trusted):
            break
    return str(current)


def public_base(review: ReviewSettings) -> str | None:
    """The configured public URL without its trailing slash, if one is set."""
    return review.public_url.rstrip("/") if review.public_url else None


def allowed_hosts(review: ReviewSettings) -> list[str]:
    """Host header values the app answers to: the public URL's host and the local names.

    With no public URL and a wildcard bind address the app cannot know its names, so any
    Host is accepted (its links never use it: they are relative without a public URL).
    """
    hosts = {"localhost", "127.0.0.1", "::1", *review.allowed_hosts}
    if review.public_url:
        name = urlsplit(review.public_url).hostname
        if name:
            hosts.add(name)
    elif review.host in _WILDCARDS:
        return ["*"]
    if review.host not in _WILDCARDS:
        hosts.add(review.host)
    return sorted(hosts)
