"""Who the client is: the socket peer, or X-Forwarded-For behind trusted proxies.

X-Forwarded-For is a list each proxy appends to, so only its right-hand end is
trustworthy: walking from the right, every address that is one of our proxies is
skipped and the first one that is not is the client. Anything left of that was written
by the client itself and may be forged. The header is ignored entirely unless the
socket peer is a trusted proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

UNKNOWN = "unknown"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip(value: str) -> Address | None:
    """An address from an XFF entry or peer: tolerates ``[v6]:port`` and ``v4:port``;
    None when it is not an address. IPv4-mapped IPv6 is returned as IPv4."""
    text = value.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]  # IPv4 with a port
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class ClientIP:
    """Resolves the client address of a request; proxies (IPs or CIDRs) parsed once.

    Raises ``ValueError`` at construction for an entry that is not an IP or CIDR.
    """

    def __init__(self, trusted_proxies: Sequence[str]) -> None:
        self._networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(p.strip(), strict=False) for p in trusted_proxies
        )

    def is_trusted(self, addr: Address) -> bool:
        return any(addr in net for net in self._networks)

    def resolve(self, peer: str | None, forwarded_for: bytes | str | None) -> str:
        """The client address. ``forwarded_for`` is every X-Forwarded-For value joined
        with ","; ``peer`` is the socket peer's host (``UNKNOWN`` when there is none)."""
        if not self._networks or not forwarded_for:
            return peer or UNKNOWN  # fast path: nothing to trust or nothing to read
        peer_addr = parse_ip(peer) if peer else None
        if peer_addr is None or not self.is_trusted(peer_addr):
            return peer or UNKNOWN
        if isinstance(forwarded_for, bytes):
            forwarded_for = forwarded_for.decode("latin-1")
        return str(self._walk(forwarded_for.split(","), peer_addr))

    def _walk(self, hops: list[str], nearest: Address) -> Address:
        """Right to left: the first untrusted hop, else the left-most trusted one.

        An unparsable hop stops the walk: whatever lies left of it cannot be vouched
        for, so the trusted proxy that passed it on is taken as the client.
        """
        for hop in reversed(hops):
            if not hop.strip():
                continue  # empty list element ("a,,b" or a trailing comma)
            addr = parse_ip(hop)
            if addr is None:
                return nearest
            if not self.is_trusted(addr):
                return addr
            nearest = addr
        return nearest
