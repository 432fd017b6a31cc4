"""RateLimiter over MemoryState with a fake clock: per-IP, RPM and TPM buckets."""

from __future__ import annotations

import pytest

from tokenhub.security.limits import RateLimiter, ip_bucket
from tokenhub.state.memory import MemoryState


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingState(MemoryState):
    """MemoryState that counts ``take`` calls, to hold the limiter to one per check."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.takes = 0

    async def take(self, key: str, rate: float, burst: float, cost: float = 1.0) -> float:
        self.takes += 1
        return await super().take(key, rate, burst, cost)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> CountingState:
    return CountingState(clock)


@pytest.fixture
def limiter(state: CountingState) -> RateLimiter:
    return RateLimiter(state)


async def test_ip_burst_then_retry_after(limiter: RateLimiter, clock: FakeClock) -> None:
    """An IP gets ``burst`` requests, then a retry-after of 1/rate, then one more later."""
    for _ in range(5):
        assert await limiter.check_ip("203.0.113.7", rate=2.0, burst=5) == 0.0
    assert await limiter.check_ip("203.0.113.7", rate=2.0, burst=5) == pytest.approx(0.5)
    clock.now += 0.5
    assert await limiter.check_ip("203.0.113.7", rate=2.0, burst=5) == 0.0


async def test_ips_and_scopes_have_separate_buckets(limiter: RateLimiter) -> None:
    """Exhausting one IP in one scope leaves other IPs and the other scope alone."""
    assert await limiter.check_ip("198.51.100.1", rate=1.0, burst=1) == 0.0
    assert await limiter.check_ip("198.51.100.1", rate=1.0, burst=1) > 0
    assert await limiter.check_ip("198.51.100.2", rate=1.0, burst=1) == 0.0
    assert await limiter.check_ip("198.51.100.1", rate=1.0, burst=1, scope="admin") == 0.0


async def test_ipv6_is_limited_per_64(limiter: RateLimiter) -> None:
    """Two addresses in one IPv6 /64 share a bucket; another /64 does not."""
    assert await limiter.check_ip("2001:db8:1:2::1", rate=1.0, burst=1) == 0.0
    assert await limiter.check_ip("2001:db8:1:2:ffff::9", rate=1.0, burst=1) > 0
    assert await limiter.check_ip("2001:db8:1:3::1", rate=1.0, burst=1) == 0.0


def test_ip_bucket_normalises_addresses() -> None:
    """IPv4 stays as is, IPv4-mapped IPv6 becomes IPv4, IPv6 becomes its /64."""
    assert ip_bucket("192.0.2.1") == "192.0.2.1"
    assert ip_bucket("::ffff:192.0.2.1") == "192.0.2.1"
    assert ip_bucket("2001:db8::abcd") == "2001:db8::/64"
    assert ip_bucket("not:an:ip") == "not:an:ip"


async def test_zero_limits_mean_unlimited_without_state_calls(
    limiter: RateLimiter, state: CountingState
) -> None:
    """A rate, rpm or tpm of 0 admits everything and never touches the state."""
    for _ in range(100):
        assert await limiter.check_ip("192.0.2.1", rate=0, burst=0) == 0.0
        assert await limiter.check_key_rpm("k", 0) == 0.0
        assert await limiter.check_key_tpm("k", 0, 10_000) == 0.0
    await limiter.add_key_tokens("k", 0, 500)
    assert state.takes == 0


async def test_each_check_is_one_state_call(limiter: RateLimiter, state: CountingState) -> None:
    """check_ip, check_key_rpm and check_key_tpm cost one state call each."""
    await limiter.check_ip("192.0.2.1", rate=1.0, burst=1)
    await limiter.check_key_rpm("k", 60)
    await limiter.check_key_tpm("k", 1000, 10)
    assert state.takes == 3


async def test_rpm_allows_rpm_then_waits_a_slot(limiter: RateLimiter, clock: FakeClock) -> None:
    """rpm=3 admits 3 at once, then asks to wait 20 s (one request's refill)."""
    for _ in range(3):
        assert await limiter.check_key_rpm("key1", 3) == 0.0
    assert await limiter.check_key_rpm("key1", 3) == pytest.approx(20.0)
    assert await limiter.check_key_rpm("key2", 3) == 0.0
    clock.now += 20.0
    assert await limiter.check_key_rpm("key1", 3) == 0.0


async def test_tpm_charges_tokens(limiter: RateLimiter, clock: FakeClock) -> None:
    """tpm=600 admits 400 + 200 tokens, then asks to wait for the missing ones."""
    assert await limiter.check_key_tpm("k", 600, 400) == 0.0
    assert await limiter.check_key_tpm("k", 600, 200) == 0.0
    assert await limiter.check_key_tpm("k", 600, 50) == pytest.approx(5.0)  # 10 tokens/s
    clock.now += 5.0
    assert await limiter.check_key_tpm("k", 600, 50) == 0.0


async def test_tpm_request_above_limit_needs_a_full_bucket(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    """A request larger than tpm waits for a full bucket (<= 60 s) and then empties it."""
    assert await limiter.check_key_tpm("k", 600, 300) == 0.0
    wait = await limiter.check_key_tpm("k", 600, 5000)
    assert wait == pytest.approx(30.0)
    clock.now += wait
    assert await limiter.check_key_tpm("k", 600, 5000) == 0.0
    assert await limiter.check_key_tpm("k", 600, 1) > 0


async def test_tpm_large_request_never_waits_more_than_a_minute(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    """From an empty bucket an oversized request waits at most 60 s."""
    assert await limiter.check_key_tpm("k", 600, 600) == 0.0
    wait = await limiter.check_key_tpm("k", 600, 10**9)
    assert 0 < wait <= 60.0


async def test_add_key_tokens_charges_extra_usage(limiter: RateLimiter) -> None:
    """Charging tokens after the response reduces what the next request may use."""
    assert await limiter.check_key_tpm("k", 600, 100) == 0.0
    await limiter.add_key_tokens("k", 600, 400)
    assert await limiter.check_key_tpm("k", 600, 100) == 0.0
    assert await limiter.check_key_tpm("k", 600, 10) > 0


async def test_add_key_tokens_drains_to_empty_at_most(
    limiter: RateLimiter, clock: FakeClock, state: CountingState
) -> None:
    """A charge larger than the bucket holds empties it, without debt beyond zero."""
    assert await limiter.check_key_tpm("k", 600, 500) == 0.0
    await limiter.add_key_tokens("k", 600, 400)  # holds 100: takes those
    assert state.takes == 3
    wait = await limiter.check_key_tpm("k", 600, 10)
    assert wait == pytest.approx(1.0, abs=1e-6)  # empty, not in debt


async def test_limits_are_per_key(limiter: RateLimiter) -> None:
    """One key's exhausted TPM bucket does not affect another key."""
    assert await limiter.check_key_tpm("a", 100, 100) == 0.0
    assert await limiter.check_key_tpm("a", 100, 1) > 0
    assert await limiter.check_key_tpm("b", 100, 100) == 0.0
