"""ClientIP: X-Forwarded-For honoured only from trusted proxies, read from the right."""

from __future__ import annotations

import pytest

from tokenhub.security.clientip import UNKNOWN, ClientIP, parse_ip

PROXIES = ["10.0.0.0/8", "192.0.2.5", "2001:db8:ffff::/48"]


@pytest.fixture
def resolver() -> ClientIP:
    return ClientIP(PROXIES)


def test_without_proxies_the_peer_is_the_client() -> None:
    """With no trusted proxies X-Forwarded-For is ignored entirely."""
    assert ClientIP([]).resolve("203.0.113.9", "1.2.3.4") == "203.0.113.9"
    assert ClientIP([]).resolve(None, b"1.2.3.4") == UNKNOWN


def test_untrusted_peer_cannot_forge_the_header(resolver: ClientIP) -> None:
    """A peer that is not a trusted proxy is the client, whatever it claims."""
    assert resolver.resolve("203.0.113.9", "1.2.3.4") == "203.0.113.9"


def test_trusted_peer_forwards_the_client(resolver: ClientIP) -> None:
    """Behind one trusted proxy the last XFF entry is the client."""
    assert resolver.resolve("10.1.2.3", b"198.51.100.20") == "198.51.100.20"


def test_rightmost_untrusted_hop_wins_over_spoofed_entries(resolver: ClientIP) -> None:
    """Entries left of the first untrusted hop (client-written) are ignored."""
    xff = "6.6.6.6, 198.51.100.20, 10.9.9.9, 192.0.2.5"
    assert resolver.resolve("10.0.0.1", xff) == "198.51.100.20"


def test_all_hops_trusted_gives_leftmost(resolver: ClientIP) -> None:
    """When every hop is a trusted proxy the left-most one is the client."""
    assert resolver.resolve("10.0.0.1", "10.5.5.5, 192.0.2.5") == "10.5.5.5"


def test_invalid_hop_stops_the_walk(resolver: ClientIP) -> None:
    """An unparsable entry is never returned; the proxy that passed it on is the client."""
    assert resolver.resolve("10.0.0.1", "1.2.3.4, garbage, 10.7.7.7") == "10.7.7.7"
    assert resolver.resolve("10.0.0.1", "unknown") == "10.0.0.1"


def test_empty_elements_and_whitespace_are_skipped(resolver: ClientIP) -> None:
    """Empty list elements and spaces do not count as hops."""
    assert resolver.resolve("10.0.0.1", " 198.51.100.20 ,, ") == "198.51.100.20"


def test_empty_header_uses_the_peer(resolver: ClientIP) -> None:
    """A trusted peer sending no or an empty X-Forwarded-For is the client."""
    assert resolver.resolve("10.0.0.1", None) == "10.0.0.1"
    assert resolver.resolve("10.0.0.1", b"") == "10.0.0.1"


def test_ipv6_and_ports_are_understood(resolver: ClientIP) -> None:
    """IPv6 hops, bracketed IPv6 with port and IPv4 with port all parse."""
    assert resolver.resolve("2001:db8:ffff::1", "2001:db8::7") == "2001:db8::7"
    assert resolver.resolve("10.0.0.1", "[2001:db8::7]:4711") == "2001:db8::7"
    assert resolver.resolve("10.0.0.1", "198.51.100.20:5555") == "198.51.100.20"


def test_ipv4_mapped_peer_is_trusted_as_ipv4(resolver: ClientIP) -> None:
    """A dual-stack socket's ::ffff:10.x peer matches the IPv4 proxy range."""
    assert resolver.resolve("::ffff:10.0.0.1", "198.51.100.20") == "198.51.100.20"


def test_invalid_peer_is_not_trusted(resolver: ClientIP) -> None:
    """A peer that is not an address never unlocks the header."""
    assert resolver.resolve("not-an-ip", "198.51.100.20") == "not-an-ip"
    assert resolver.resolve(None, "198.51.100.20") == UNKNOWN


def test_invalid_proxy_configuration_is_rejected() -> None:
    """A trusted-proxy entry that is neither IP nor CIDR fails at construction."""
    with pytest.raises(ValueError):
        ClientIP(["10.0.0.0/8", "proxy.example"])


def test_parse_ip_rejects_nonsense() -> None:
    """parse_ip returns None for values that are not addresses."""
    assert parse_ip("") is None
    assert parse_ip("[::1") is None
    assert parse_ip("1.2.3") is None
    assert str(parse_ip(" 192.0.2.1 ")) == "192.0.2.1"
