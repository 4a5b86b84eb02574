"""State that outlives a request: the response store and per-key limits, on their real
stores (a SQLite file, a real redis-server), and shared by two gateway processes."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from gateway.limits import KeyLimits, LimitExceeded, LimitSettings, LimitStoreUnavailable, RateLimiter
from gateway.response_store import RecordTooLarge, StoreError, StoredResponse, StoreSettings, open_store
from tests.conftest import FIXTURES, free_port, start_gateway
from tests.redis_server import redis_server  # noqa: F401  (fixture)

EDGE_POLICY = FIXTURES / "edge_policy.yaml"


def record(rid: str, owner: str = "o", previous: str | None = None, text: str = "hi") -> StoredResponse:
    return StoredResponse(id=rid, owner=owner, created_at=int(time.time()), response={"id": rid, "output": text},
                          input_items=[{"type": "message", "role": "user", "content": text}],
                          previous_response_id=previous)


@pytest.fixture(params=["sqlite", "redis", "memory"])
def store_settings(request, tmp_path):
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        server.flush()
        return StoreSettings(url=server.url, retention_s=60, max_record_bytes=2000)
    return StoreSettings(url=request.param, path=str(tmp_path / "r.db"), retention_s=60, max_record_bytes=2000)


def test_store_put_get_chain_delete(store_settings):
    async def run():
        store = open_store(store_settings)
        await store.put(record("resp_1", text="first"))
        await store.put(record("resp_2", previous="resp_1", text="second"))
        await store.put(record("resp_3", previous="resp_2", text="third"))
        assert (await store.get("resp_2", "o")).response["output"] == "second"
        assert await store.get("resp_2", "someone-else") is None  # a foreign id reads as missing
        chain = await store.chain("resp_3", "o")
        assert [r.id for r in chain] == ["resp_1", "resp_2", "resp_3"]
        assert [r.id for r in await store.chain("resp_3", "o", max_depth=2)] == ["resp_2", "resp_3"]
        assert await store.chain("resp_3", "someone-else") is None
        with pytest.raises(RecordTooLarge):
            await store.put(record("resp_big", text="x" * 5000))
        assert await store.get("resp_big", "o") is None  # nothing half-written
        assert not await store.delete("resp_2", "someone-else")
        assert await store.delete("resp_2", "o") and await store.get("resp_2", "o") is None
        # an ancestor gone ends the chain there
        assert [r.id for r in await store.chain("resp_3", "o")] == ["resp_3"]
        await store.aclose()

    asyncio.run(run())


def test_store_records_expire(store_settings):
    async def run():
        store = open_store(StoreSettings(url=store_settings.url, path=store_settings.path, retention_s=1))
        await store.put(record("resp_old"))
        assert await store.get("resp_old", "o") is not None
        await asyncio.sleep(2.1)
        assert await store.get("resp_old", "o") is None
        await store.aclose()

    asyncio.run(run())


def test_sqlite_store_survives_reopening(tmp_path):
    async def run():
        settings = StoreSettings(url="sqlite", path=str(tmp_path / "keep.db"))
        first = open_store(settings)
        await first.put(record("resp_a"))
        await first.put(record("resp_b", previous="resp_a"))
        await first.aclose()
        second = open_store(settings)
        assert [r.id for r in await second.chain("resp_b", "o")] == ["resp_a", "resp_b"]
        await second.aclose()

    asyncio.run(run())


def test_redis_down_is_a_quick_store_error():
    async def run():
        store = open_store(StoreSettings(url=f"redis://127.0.0.1:{free_port()}/0"))
        start = time.monotonic()
        with pytest.raises(StoreError):
            await store.get("resp_x", "o")
        assert time.monotonic() - start < 3
        await store.aclose()

    asyncio.run(run())


@pytest.fixture(params=["memory", "redis"])
def limit_store(request):
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        server.flush()
        return server.url
    return "memory"


def test_limiter_requests_tokens_concurrency(limit_store):
    async def run():
        limiter = RateLimiter(LimitSettings(store=limit_store, per_key={
            "rpm": KeyLimits(requests_per_minute=2), "tpm": KeyLimits(tokens_per_minute=100),
            "one": KeyLimits(concurrent=1)}))
        first = await limiter.admit("rpm", 1)
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        await limiter.admit("rpm", 1)
        with pytest.raises(LimitExceeded) as caught:
            await limiter.admit("rpm", 1)
        assert caught.value.which == "requests" and 0 < caught.value.retry_after_s <= 60
        assert caught.value.headers["retry-after"] and "2 requests per minute" in caught.value.message

        reserved = await limiter.admit("tpm", 80)
        with pytest.raises(LimitExceeded) as caught:
            await limiter.admit("tpm", 30)
        assert caught.value.which == "tokens"
        await limiter.release(reserved, used_tokens=20)  # used less than reserved: room again
        assert (await limiter.admit("tpm", 30)).headers["x-ratelimit-remaining-tokens"] == "50"

        slot = await limiter.admit("one", 1)
        with pytest.raises(LimitExceeded) as caught:
            await limiter.admit("one", 1)
        assert caught.value.which == "concurrent"
        await limiter.release(slot, None)
        await limiter.admit("one", 1)
        await limiter.admit("unlisted", 10**9)  # the default here is unlimited
        await limiter.aclose()

    asyncio.run(run())


def test_two_limiters_on_one_redis_enforce_one_limit(redis_server):
    redis_server.flush()

    async def run():
        settings = LimitSettings(store=redis_server.url, default=KeyLimits(requests_per_minute=3))
        replica_a, replica_b = RateLimiter(settings), RateLimiter(settings)
        await replica_a.admit("k", 1)
        await replica_b.admit("k", 1)
        await replica_a.admit("k", 1)
        with pytest.raises(LimitExceeded):
            await replica_b.admit("k", 1)
        await replica_a.aclose()
        await replica_b.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_limit_store_down_fails_open_or_closed_quickly(mode):
    async def run():
        limiter = RateLimiter(LimitSettings(store=f"redis://127.0.0.1:{free_port()}/0", on_store_error=mode,
                                            default=KeyLimits(requests_per_minute=5)))
        start = time.monotonic()
        if mode == "open":
            assert (await limiter.admit("k", 1)).headers == {}
        else:
            with pytest.raises(LimitStoreUnavailable):
                await limiter.admit("k", 1)
        assert time.monotonic() - start < 3
        await limiter.aclose()

    asyncio.run(run())


# --- gateways -----------------------------------------------------------------------------

def sdk(server, key: str = "k-free") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key=key, max_retries=0)


def test_responses_chain_across_a_restart_and_belong_to_their_key(fake_upstream, tmp_path):
    env = {"UPSTREAM_BASE": fake_upstream.base + "/v1", "TANDEM_DATA_DIR": str(tmp_path)}
    server = start_gateway(EDGE_POLICY, env)
    try:
        first = sdk(server).responses.create(model="transcript", input="My name is Ada.")
        with pytest.raises(openai.NotFoundError):  # another key: as if it never existed
            sdk(server, "k-metered").responses.retrieve(first.id)
        with pytest.raises(openai.BadRequestError) as caught:  # above max_record_bytes: refused up front
            sdk(server).responses.create(model="transcript", input="y" * 3000)
        assert caught.value.code == "input_too_large"
    finally:
        server.stop()
    server = start_gateway(EDGE_POLICY, env)
    try:
        second = sdk(server).responses.create(model="transcript", input="Who am I?", previous_response_id=first.id)
        assert second.output_text.splitlines()[0] == "user: My name is Ada."
        assert (tmp_path / "responses.db").exists()
    finally:
        server.stop()


def test_two_gateways_share_responses_and_limits_through_redis(fake_upstream, redis_server):
    redis_server.flush()
    env = {"UPSTREAM_BASE": fake_upstream.base + "/v1", "RESPONSES_STORE": redis_server.url,
           "LIMITS_STORE": redis_server.url}
    one, two = start_gateway(EDGE_POLICY, env), start_gateway(EDGE_POLICY, env)
    try:
        first = sdk(one).responses.create(model="transcript", input="My name is Ada.")
        second = sdk(two).responses.create(model="transcript", input="Who am I?", previous_response_id=first.id)
        assert second.output_text.splitlines()[0] == "user: My name is Ada."
        assert sdk(one).responses.retrieve(second.id).id == second.id
        # k-metered may send 3 requests a minute in all, whichever replica takes them
        statuses = [httpx.post(server.base + "/v1/chat/completions", timeout=30,
                               json={"model": "ok", "messages": [{"role": "user", "content": "hi"}]},
                               headers={"authorization": "Bearer k-metered"}).status_code
                    for server in (one, two, one, two)]
        assert statuses == [200, 200, 200, 429]
    finally:
        one.stop()
        two.stop()
