"""Rate limits per client IP and per API key, as token buckets in ``SharedState``.

Every check is one ``SharedState.take`` call (one Redis round trip when replicas share
state) and returns the seconds the caller should wait: ``0.0`` means allowed. A limit
that is zero or negative is "unlimited" and costs no state call at all.

Token buckets rather than windows: no burst at a window edge, no wall-clock
dependency (Redis buckets run on the server's clock), and idle buckets expire alone.

Tokens per minute (TPM). Tokens are charged on admission from the router's estimate.

- A request estimated above ``tpm`` costs the whole bucket: it is admitted only when
  the bucket is full, and then leaves it empty. It is never refused forever: the bucket
  is full again at most 60 s after the key's last request, so its retry-after is <= 60 s.
  (The key's own smaller requests can still get in first: the budget is the key's.)
- ``add_key_tokens`` charges what the response used beyond the estimate. The state
  port has no overdraft, so the charge is capped at what the bucket holds: it drains
  the bucket to empty, never below. Under-estimates therefore slow the key's next
  requests but cannot push it into debt.

IPv6 clients are limited per /64 (one subscriber's usual allocation, so rotating
addresses inside it does not reset the limit); IPv4-mapped IPv6 counts as IPv4.
"""

from __future__ import annotations

import ipaddress

from tokenhub.state.base import SharedState

SECONDS_PER_MINUTE = 60.0
IPV6_PREFIX = 64


def ip_bucket(ip: str) -> str:
    """The identity an IP is limited under: itself (IPv4) or its /64 (IPv6)."""
    if ":" not in ip:
        return ip  # IPv4 or an opaque peer name: cheap path, no parsing
    try:
        addr = ipaddress.IPv6Address(ip)
    except ValueError:
        return ip
    if addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(ipaddress.IPv6Network((addr, IPV6_PREFIX), strict=False))


class RateLimiter:
    """Per-IP and per-key (requests and tokens per minute) limits over ``SharedState``."""

    def __init__(self, state: SharedState) -> None:
        self._state = state

    async def check_ip(self, ip: str, *, rate: float, burst: float, scope: str = "v1") -> float:
        """Take one request from ``ip``'s bucket in ``scope`` ("v1" or "admin").

        ``rate`` is requests per second, ``burst`` the bucket size (at least 1 is used).
        """
        if rate <= 0:
            return 0.0
        key = f"rl:ip:{scope}:{ip_bucket(ip)}"
        return await self._state.take(key, rate, max(1.0, burst))

    async def check_key_rpm(self, key_id: str, rpm: int) -> float:
        """Take one request from the key's requests-per-minute bucket (burst = ``rpm``)."""
        if rpm <= 0:
            return 0.0
        return await self._state.take(f"rl:rpm:{key_id}", rpm / SECONDS_PER_MINUTE, rpm)

    async def check_key_tpm(self, key_id: str, tpm: int, tokens: int) -> float:
        """Take ``tokens`` (the estimate, capped at ``tpm``, at least 1) from the key's
        tokens-per-minute bucket."""
        if tpm <= 0:
            return 0.0
        cost = max(1, min(tokens, tpm))
        return await self._state.take(f"rl:tpm:{key_id}", tpm / SECONDS_PER_MINUTE, tpm, cost)

    async def add_key_tokens(self, key_id: str, tpm: int, tokens: int) -> None:
        """Charge ``tokens`` more (actual usage minus the admitted estimate), draining the
        bucket to empty at most. Call it after the response, off the latency path: one
        state call, a second only when the bucket held less than the charge."""
        if tpm <= 0 or tokens <= 0:
            return
        key, rate = f"rl:tpm:{key_id}", tpm / SECONDS_PER_MINUTE
        cost = float(min(tokens, tpm))
        wait = await self._state.take(key, rate, tpm, cost)
        if wait > 0:
            # The refusal says how short the bucket was; take what it has instead.
            held = cost - wait * rate
            if held > 0:
                await self._state.take(key, rate, tpm, held)
