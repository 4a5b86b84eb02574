"""gateway.limits in this process and on a real redis-server (tests/redis_server.py). The
window is a real minute; a fake clock moves through it, on Redis too (the script takes
the caller's time)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from gateway.limits import (
    SLOT_TTL_S, Admission, KeyLimits, LimitExceeded, LimitSettings, LimitStoreUnavailable, RateLimiter, duration,
)
from tests.conftest import free_port
from tests.redis_server import redis_server, silent_server  # noqa: F401  (fixtures)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        server.flush()
        return server.url
    return "memory"


def run(coro):
    return asyncio.run(coro)


def limiter(store: str, clock: Clock | None = None, **settings) -> RateLimiter:
    return RateLimiter(LimitSettings(store=store, **settings), **({"clock": clock} if clock else {}))


def test_requests_per_minute(store):
    async def go():
        clock = Clock()
        rl = limiter(store, clock, default=KeyLimits(requests_per_minute=3))
        first = await rl.admit("k", 10)
        assert first.headers == {"x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "2",
                                 "x-ratelimit-reset-requests": "1m0s"}
        clock.now += 10
        await rl.admit("k", 10)
        clock.now += 10
        third = await rl.admit("k", 10)
        assert third.headers["x-ratelimit-remaining-requests"] == "0"
        assert third.headers["x-ratelimit-reset-requests"] == "40s"  # when the first leaves the window
        clock.now += 2
        with pytest.raises(LimitExceeded) as caught:
            await rl.admit("k", 10)
        refused = caught.value
        assert refused.which == "requests" and refused.retry_after_s == pytest.approx(38, abs=0.01)
        assert refused.headers["retry-after"] == "38" and refused.headers["retry-after-ms"] == "38000"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert refused.message == "Rate limit reached: 3 requests per minute for this API key; retry after 38 s."
        await rl.admit("other", 1)  # each key its own window
        clock.now += 38.01  # the first request has left the window: room for one
        await rl.admit("k", 10)
        with pytest.raises(LimitExceeded):
            await rl.admit("k", 10)
        await rl.aclose()

    run(go())


def test_tokens_per_minute_reserve_and_correct(store):
    async def go():
        clock = Clock()
        rl = limiter(store, clock, per_key={"k": KeyLimits(tokens_per_minute=100)})
        big = await rl.admit("k", 80)
        assert big.headers["x-ratelimit-remaining-tokens"] == "20"
        assert "x-ratelimit-limit-requests" not in big.headers  # no request limit, no request headers
        clock.now += 5
        with pytest.raises(LimitExceeded) as caught:
            await rl.admit("k", 30)
        assert caught.value.which == "tokens" and caught.value.retry_after_s == pytest.approx(55, abs=0.01)
        assert "100 tokens per minute" in caught.value.message
        assert caught.value.headers["x-ratelimit-remaining-tokens"] == "20"
        await rl.release(big, used_tokens=20)  # used less than reserved: the rest is free again
        assert (await rl.admit("k", 30)).headers["x-ratelimit-remaining-tokens"] == "50"
        over = await rl.admit("k", 10)
        await rl.release(over, used_tokens=60)  # used more than reserved: counted in full
        with pytest.raises(LimitExceeded):
            await rl.admit("k", 1)
        clock.now += 60  # every entry has left the window
        assert (await rl.admit("k", 100)).headers["x-ratelimit-remaining-tokens"] == "0"
        await rl.aclose()

    run(go())


def test_request_larger_than_the_token_limit_says_so(store):
    async def go():
        rl = limiter(store, default=KeyLimits(tokens_per_minute=1000))
        with pytest.raises(LimitExceeded) as caught:
            await rl.admit("k", 5000)
        assert caught.value.which == "tokens"
        assert "needs about 5000 tokens" in caught.value.message and "lower max_tokens" in caught.value.message
        await rl.admit("k", 1000)  # nothing was counted for the refused one
        await rl.aclose()

    run(go())


def test_concurrency_slots(store):
    async def go():
        rl = limiter(store, per_key={"k": KeyLimits(concurrent=2)})
        # estimated_tokens 0: a concurrency-only key must still give its slot back
        held = [await rl.admit("k", 0), await rl.admit("k", 0)]
        assert held[0].headers == {}  # OpenAI has no concurrency headers
        with pytest.raises(LimitExceeded) as caught:
            await rl.admit("k", 0)
        assert caught.value.which == "concurrent" and "2 requests at once" in caught.value.message
        assert caught.value.headers["retry-after"] == "1"
        await rl.release(held.pop(), None)
        held.append(await rl.admit("k", 0))
        with pytest.raises(LimitExceeded):
            await rl.admit("k", 0)
        for admission in held:
            await rl.release(admission, 5)
        await asyncio.gather(*(rl.admit("k", 0) for _ in range(2)))
        await rl.aclose()

    run(go())


def test_concurrent_admissions_never_exceed_the_limit(store):
    async def go():
        rl = limiter(store, default=KeyLimits(requests_per_minute=7, concurrent=5))
        results = await asyncio.gather(*(rl.admit("k", 1) for _ in range(20)), return_exceptions=True)
        admitted = [r for r in results if isinstance(r, Admission)]
        assert len(admitted) == 5
        assert {r.which for r in results if isinstance(r, LimitExceeded)} == {"concurrent"}
        await asyncio.gather(*(rl.release(a, 1) for a in admitted))
        results = await asyncio.gather(*(rl.admit("k", 1) for _ in range(20)), return_exceptions=True)
        assert sum(isinstance(r, Admission) for r in results) == 2  # 7 a minute in all
        await rl.aclose()

    run(go())


def test_unlisted_and_unkeyed_use_the_default(store):
    async def go():
        rl = limiter(store, default=KeyLimits(requests_per_minute=1),
                     per_key={"vip": KeyLimits(requests_per_minute=2)})
        await rl.admit("", 1)
        with pytest.raises(LimitExceeded):
            await rl.admit("", 1)
        await rl.admit("vip", 1)
        await rl.admit("vip", 1)
        with pytest.raises(LimitExceeded):
            await rl.admit("vip", 1)
        free = limiter(store)  # no limits at all: admitted, nothing counted, no headers
        admission = await free.admit("anyone", 10**9)
        assert admission.headers == {} and not admission.counted
        await free.release(admission, 10)
        await free.aclose()
        await rl.aclose()

    run(go())


def test_slots_never_released_expire(store):
    """On Redis: a replica died holding a slot. In memory: a slot leaked by its caller."""
    async def go():
        clock = Clock()
        dead = limiter(store, clock, default=KeyLimits(concurrent=1))
        await dead.admit("k", 1)  # never released
        alive = dead
        if store != "memory":
            await dead.aclose()
            alive = limiter(store, clock, default=KeyLimits(concurrent=1))
        with pytest.raises(LimitExceeded):
            await alive.admit("k", 1)
        clock.now += SLOT_TTL_S + 1
        await alive.admit("k", 1)
        await alive.aclose()

    run(go())


def test_two_replicas_on_one_redis_enforce_one_limit(redis_server):
    redis_server.flush()

    async def go():
        settings = LimitSettings(store=redis_server.url, default=KeyLimits(requests_per_minute=4, concurrent=3,
                                                                           tokens_per_minute=1000))
        a, b = RateLimiter(settings), RateLimiter(settings)
        first = await a.admit("k", 100)
        await b.admit("k", 100)
        third = await a.admit("k", 100)
        assert third.headers["x-ratelimit-remaining-requests"] == "1"
        assert third.headers["x-ratelimit-remaining-tokens"] == "700"
        with pytest.raises(LimitExceeded) as caught:
            await b.admit("k", 100)  # three running, across both replicas
        assert caught.value.which == "concurrent"
        await b.release(first, 50)  # a slot taken on one replica, given back on the other
        fourth = await b.admit("k", 100)
        assert fourth.headers["x-ratelimit-remaining-tokens"] == "650"
        with pytest.raises(LimitExceeded) as caught:
            await a.admit("k", 1)
        assert caught.value.which == "requests"
        await a.aclose()
        await b.aclose()

    run(go())
    import redis

    with redis.Redis(port=redis_server.port) as client:
        keys = client.keys("tandem:limits:*")
        assert keys and all(client.ttl(k) > 0 for k in keys)  # nothing stays forever


@pytest.mark.parametrize("down", ["refused", "silent"])
def test_store_down_fails_open_quickly_and_logs_once(down, request, caplog):
    url = request.getfixturevalue("silent_server") if down == "silent" else f"redis://127.0.0.1:{free_port()}/0"

    async def go():
        rl = limiter(url, default=KeyLimits(requests_per_minute=1))
        start = time.monotonic()
        for _ in range(5):  # after the first failure, Redis is left alone for a moment
            admission = await rl.admit("k", 1)
            assert admission.headers == {} and not admission.counted
            await rl.release(admission, 1)
        assert time.monotonic() - start < 2
        await rl.aclose()

    with caplog.at_level(logging.WARNING, logger="gateway.limits"):
        run(go())
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1 and "failing open" in warnings[0].getMessage()


@pytest.mark.parametrize("down", ["refused", "silent"])
def test_store_down_fails_closed_quickly(down, request):
    url = request.getfixturevalue("silent_server") if down == "silent" else f"redis://127.0.0.1:{free_port()}/0"

    async def go():
        rl = limiter(url, default=KeyLimits(requests_per_minute=1), on_store_error="closed")
        start = time.monotonic()
        for _ in range(3):
            with pytest.raises(LimitStoreUnavailable):
                await rl.admit("k", 1)
        assert time.monotonic() - start < 2
        assert not (await limiter(url).admit("k", 1)).counted  # a key without limits never asks the store
        await rl.aclose()

    run(go())


def test_redis_recovers_after_the_pause(redis_server, monkeypatch):
    redis_server.flush()
    import gateway.limits as limits

    monkeypatch.setattr(limits, "STORE_RETRY_S", 0.2)

    async def go():
        rl = limiter(redis_server.url, default=KeyLimits(requests_per_minute=5))
        assert (await rl.admit("k", 1)).counted
        rl._down_until = time.monotonic() + 0.2  # as after a failure
        assert not (await rl.admit("k", 1)).counted
        await asyncio.sleep(0.25)
        assert (await rl.admit("k", 1)).headers["x-ratelimit-remaining-requests"] == "3"
        await rl.aclose()

    run(go())


@pytest.mark.parametrize("build, fix", [
    (lambda: KeyLimits(requests_per_minute=0), "at least 1, or leave it out"),
    (lambda: KeyLimits(tokens_per_minute=-1), "at least 1"),
    (lambda: KeyLimits(concurrent=1.5), "whole number"),
    (lambda: LimitSettings(store="memcached://x"), "use memory or redis://"),
    (lambda: LimitSettings(on_store_error="maybe"), "use open"),
    (lambda: LimitSettings(per_key={"k": {"requests_per_minute": 1}}), "to a KeyLimits"),
])
def test_settings_refuse_with_the_fix(build, fix):
    with pytest.raises(ValueError, match=fix):
        build()


def test_reset_durations_in_openai_format():
    assert [duration(s) for s in (0, 0.02, 1, 1.2, 59.2, 60, 360, 361.5)] == \
        ["0s", "20ms", "1s", "2s", "1m0s", "1m0s", "6m0s", "6m2s"]
