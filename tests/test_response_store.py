"""gateway.response_store on its real backends: a SQLite file and a real redis-server
(tests/redis_server.py), plus the memory store where the behaviour is shared."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.response_store import (
    RecordTooLarge, StoreError, StoredResponse, StoreSettings, open_store,
)
from tests.conftest import free_port
from tests.redis_server import redis_server, silent_server  # noqa: F401  (fixtures)


def record(rid: str, owner: str = "o", previous: str | None = None, text: str = "hi") -> StoredResponse:
    return StoredResponse(id=rid, owner=owner, created_at=int(time.time()),
                          response={"id": rid, "object": "response", "output": [{"type": "message", "text": text}]},
                          input_items=[{"id": f"msg_{rid}", "type": "message", "role": "user", "content": text}],
                          previous_response_id=previous)


def settings_for(backend: str, request, tmp_path, **overrides) -> StoreSettings:
    if backend == "redis":
        server = request.getfixturevalue("redis_server")
        return StoreSettings(store=server.url, **overrides)
    if backend == "sqlite":
        return StoreSettings(store="sqlite", path=str(tmp_path / "responses.db"), **overrides)
    return StoreSettings(store="memory", **overrides)


@pytest.fixture(params=["sqlite", "redis", "memory"])
def backend(request):
    if request.param == "redis":
        request.getfixturevalue("redis_server").flush()
    return request.param


def run(coro):
    return asyncio.run(coro)


def test_put_get_delete_and_owners(backend, request, tmp_path):
    async def go():
        store = open_store(settings_for(backend, request, tmp_path))
        original = record("resp_1", text="first")
        await store.put(original)
        assert await store.get("resp_1", "o") == original  # round trip, JSON and all
        assert await store.get("resp_1", "intruder") is None  # a foreign id reads as missing
        assert await store.get("resp_missing", "o") is None
        assert not await store.delete("resp_1", "intruder")
        assert await store.get("resp_1", "o") == original  # the foreign delete did nothing
        assert await store.delete("resp_1", "o")
        assert await store.get("resp_1", "o") is None
        assert not await store.delete("resp_1", "o")  # already gone
        assert await store.get("resp_unkeyed", "") is None
        await store.put(record("resp_unkeyed", owner=""))  # unkeyed use: owner ""
        assert (await store.get("resp_unkeyed", "")).owner == ""
        assert await store.get("resp_unkeyed", "o") is None
        await store.aclose()

    run(go())


def test_records_expire(backend, request, tmp_path):
    async def go():
        store = open_store(settings_for(backend, request, tmp_path, retention_s=1))
        await store.put(record("resp_old"))
        assert await store.get("resp_old", "o") is not None
        await asyncio.sleep(1.2)
        assert await store.get("resp_old", "o") is None
        assert await store.chain("resp_old", "o") is None
        assert not await store.delete("resp_old", "o")
        await store.aclose()

    run(go())


def test_record_too_large_writes_nothing(backend, request, tmp_path):
    async def go():
        store = open_store(settings_for(backend, request, tmp_path, max_record_bytes=2000))
        await store.put(record("resp_big", text="small"))
        with pytest.raises(RecordTooLarge) as caught:
            await store.put(record("resp_big", text="x" * 5000))  # would replace the small one
        assert isinstance(caught.value, StoreError) and "max_record_bytes (2000)" in str(caught.value)
        kept = await store.get("resp_big", "o")
        assert kept.input_items[0]["content"] == "small"
        with pytest.raises(RecordTooLarge):
            await store.put(record("resp_new_big", text="x" * 5000))
        assert await store.get("resp_new_big", "o") is None
        await store.aclose()

    run(go())


def test_chain_order_depth_and_gaps(backend, request, tmp_path):
    async def go():
        store = open_store(settings_for(backend, request, tmp_path))
        previous = None
        for n in range(1, 6):
            await store.put(record(f"resp_{n}", previous=previous, text=f"turn {n}"))
            previous = f"resp_{n}"
        chain = await store.chain("resp_5", "o")
        assert [r.id for r in chain] == ["resp_1", "resp_2", "resp_3", "resp_4", "resp_5"]
        assert [r.input_items[0]["content"] for r in chain][0] == "turn 1"
        assert [r.id for r in await store.chain("resp_5", "o", max_depth=2)] == ["resp_4", "resp_5"]
        assert [r.id for r in await store.chain("resp_1", "o")] == ["resp_1"]
        assert await store.chain("resp_5", "intruder") is None
        assert await store.chain("resp_nope", "o") is None
        await store.delete("resp_3", "o")  # an ancestor gone (as if expired) ends the chain
        assert [r.id for r in await store.chain("resp_5", "o")] == ["resp_4", "resp_5"]
        # a loop (only a hand-made record has one) ends too, each record once
        await store.put(record("resp_a", previous="resp_b"))
        await store.put(record("resp_b", previous="resp_a"))
        assert [r.id for r in await store.chain("resp_b", "o")] == ["resp_a", "resp_b"]
        await store.aclose()

    run(go())


def test_concurrent_puts_and_reads(backend, request, tmp_path):
    async def go():
        store = open_store(settings_for(backend, request, tmp_path))
        await asyncio.gather(*(store.put(record(f"resp_{n}", text=str(n))) for n in range(60)))
        got = await asyncio.gather(*(store.get(f"resp_{n}", "o") for n in range(60)))
        assert [g.input_items[0]["content"] for g in got] == [str(n) for n in range(60)]
        await store.aclose()

    run(go())


def test_sqlite_survives_reopening(tmp_path):
    async def go():
        settings = StoreSettings(store=f"sqlite:///{tmp_path}/keep/responses.db")
        first = open_store(settings)
        await first.put(record("resp_a", text="remember"))
        await first.put(record("resp_b", previous="resp_a"))
        await first.aclose()
        assert (tmp_path / "keep" / "responses.db").exists()
        second = open_store(settings)
        chain = await second.chain("resp_b", "o")
        assert [r.id for r in chain] == ["resp_a", "resp_b"] and chain[0].input_items[0]["content"] == "remember"
        await second.aclose()
        with pytest.raises(StoreError):  # closed: an error, not a crash
            await second.get("resp_a", "o")

    run(go())


def test_sqlite_default_path_is_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TANDEM_DATA_DIR", str(tmp_path / "data"))
    assert StoreSettings().sqlite_path() == tmp_path / "data" / "responses.db"
    assert StoreSettings(path=str(tmp_path / "x.db")).sqlite_path() == tmp_path / "x.db"
    monkeypatch.delenv("TANDEM_DATA_DIR")
    assert str(StoreSettings().sqlite_path()).endswith(".local/share/tandem/responses.db")


def test_sqlite_unwritable_place_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="TANDEM_DATA_DIR"):
        open_store(StoreSettings(path=str(blocker / "responses.db")))


def test_two_redis_stores_share_records(redis_server):
    redis_server.flush()

    async def go():
        replica_a = open_store(StoreSettings(store=redis_server.url))
        replica_b = open_store(StoreSettings(store=redis_server.url))
        await replica_a.put(record("resp_1"))
        await replica_b.put(record("resp_2", previous="resp_1"))
        assert [r.id for r in await replica_a.chain("resp_2", "o")] == ["resp_1", "resp_2"]
        assert await replica_b.delete("resp_1", "o")
        assert await replica_a.get("resp_1", "o") is None
        await replica_a.aclose()
        await replica_b.aclose()

    run(go())
    import redis

    with redis.Redis(port=redis_server.port) as client:
        assert client.keys("*") == [b"tandem:resp:resp_2"]  # namespaced, one key per record
        assert 0 < client.ttl("tandem:resp:resp_2") <= 30 * 24 * 3600  # the retention is its TTL


@pytest.mark.parametrize("down", ["refused", "silent"])
def test_redis_down_is_a_quick_store_error(down, request):
    url = request.getfixturevalue("silent_server") if down == "silent" else f"redis://127.0.0.1:{free_port()}/0"

    async def go():
        store = open_store(StoreSettings(store=url))
        start = time.monotonic()  # each call on its own connection, at once: about one timeout in all
        errors = await asyncio.gather(store.put(record("resp_x")), store.get("resp_x", "o"),
                                      store.delete("resp_x", "o"), store.chain("resp_x", "o"), return_exceptions=True)
        assert time.monotonic() - start < 2, errors
        assert all(type(e) is StoreError for e in errors), errors
        start = time.monotonic()
        with pytest.raises(StoreError, match="redis"):
            await store.get("resp_x", "o")
        assert time.monotonic() - start < 1.8  # one timeout (about 1 s), no retry loop
        await store.aclose()

    run(go())


@pytest.mark.parametrize("kwargs, fix", [
    ({"store": "postgres://db"}, "use sqlite, sqlite:///absolute/path.db, memory or redis://"),
    ({"store": "sqlite:///"}, "name the file"),
    ({"store": "sqlite:///tmp/a.db", "path": "/tmp/b.db"}, "leave path empty"),
    ({"retention_s": 0}, "at least 1"),
    ({"max_record_bytes": -5}, "at least 1"),
    ({"retention_s": "30d"}, "whole number"),
])
def test_settings_refuse_with_the_fix(kwargs, fix):
    with pytest.raises(ValueError, match=fix.replace("/", "/").replace(".", r"\.")):
        StoreSettings(**kwargs)


def test_sqlite_files_are_private(tmp_path):
    async def go():
        store = open_store(StoreSettings(store=f"sqlite:///{tmp_path}/private/responses.db"))
        await store.put(record("resp_p"))
        await store.aclose()

    run(go())
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "private" / "responses.db").stat().st_mode & 0o077 == 0  # prompts are no one else's


def test_memory_store_is_bounded(monkeypatch):
    import gateway.response_store as module

    monkeypatch.setattr(module, "MEMORY_MAX_RECORDS", 3)

    async def go():
        store = open_store(StoreSettings(store="memory"))
        for i in range(5):
            await store.put(record(f"resp_{i}"))
        return [await store.get(f"resp_{i}", "o") is not None for i in range(5)]

    assert run(go()) == [False, False, True, True, True]  # the oldest went first
