"""Where the Responses API keeps responses: SQLite (one file, the default), Redis (shared by
several gateway replicas) or memory (this process only).

A record is the response as returned, the request's input items and the id it chained
from; it belongs to an owner (a fingerprint of the API key), and another owner's id reads
as missing, so a foreign id is a 404 rather than a 403 that would confirm it exists.
Records expire after ``retention_s``. Every write is one statement or one command: a
record is stored whole or not at all.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from router.policy_schema import ResponseStoreSettings as StoreSettings

#: how often a put also sweeps expired rows out of the SQLite file / memory (seconds):
#: reads already ignore them, the sweep only keeps the file from growing
PURGE_EVERY_S = 60.0
#: the memory store keeps at most this many responses (a process's memory is not a database)
MEMORY_MAX_RECORDS = 10_000
#: Redis socket timeouts: a down or wedged Redis is a StoreError in about this long
REDIS_TIMEOUT_S = 1.0


class StoreError(Exception):
    """The store could not be read or written."""


class RecordTooLarge(StoreError):
    """A record above ``max_record_bytes``: nothing was written."""


@dataclass(frozen=True)
class StoredResponse:
    id: str
    owner: str
    created_at: int
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    previous_response_id: str | None

    def encode(self) -> bytes:
        return orjson.dumps({"id": self.id, "owner": self.owner, "created_at": self.created_at,
                             "response": self.response, "input_items": self.input_items,
                             "previous_response_id": self.previous_response_id})

    @classmethod
    def decode(cls, data: bytes | str) -> "StoredResponse":
        try:
            return cls(**orjson.loads(data))
        except (orjson.JSONDecodeError, TypeError) as exc:
            # a row written by something else (or damaged): unreadable, not a crash
            raise StoreError(f"response store: unreadable record ({exc})") from None


class ResponseStore(Protocol):
    async def put(self, record: StoredResponse) -> None: ...
    async def get(self, response_id: str, owner: str) -> StoredResponse | None: ...
    async def delete(self, response_id: str, owner: str) -> bool: ...
    async def chain(self, response_id: str, owner: str, max_depth: int = 100) -> list[StoredResponse] | None: ...
    async def aclose(self) -> None: ...


class _Base:
    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings

    def _encoded(self, record: StoredResponse) -> bytes:
        data = record.encode()
        if len(data) > self.settings.max_record_bytes:
            raise RecordTooLarge(f"the response record is {len(data)} bytes, above the store's max_record_bytes "
                                 f"({self.settings.max_record_bytes}): send less input, or raise max_record_bytes")
        return data

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        raise NotImplementedError

    async def chain(self, response_id: str, owner: str, max_depth: int = 100) -> list[StoredResponse] | None:
        """The record and its ancestors, oldest first; None when ``response_id`` is missing.
        An ancestor that expired (or was deleted) ends the chain there; so does ``max_depth``
        (the newest ``max_depth`` records are kept) and a loop, which only a hand-made
        record could contain."""
        records: list[StoredResponse] = []
        seen: set[str] = set()
        next_id: str | None = response_id
        while next_id is not None and next_id not in seen and len(records) < max(max_depth, 1):
            record = await self.get(next_id, owner)
            if record is None:
                break
            seen.add(next_id)
            records.append(record)
            next_id = record.previous_response_id
        return list(reversed(records)) or None


class MemoryStore(_Base):
    """This process only (tests, or a gateway that need not remember across restarts)."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        self._records: dict[str, tuple[float, bytes]] = {}
        self._purged_at = time.monotonic()

    async def put(self, record: StoredResponse) -> None:
        data, now = self._encoded(record), time.time()
        if time.monotonic() - self._purged_at > PURGE_EVERY_S:
            self._purged_at = time.monotonic()
            for rid in [rid for rid, (expires, _) in self._records.items() if expires < now]:
                del self._records[rid]
        self._records[record.id] = (now + self.settings.retention_s, data)
        while len(self._records) > MEMORY_MAX_RECORDS:  # bounded: the oldest go first
            del self._records[next(iter(self._records))]

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        entry = self._records.get(response_id)
        if entry is None or entry[0] < time.time():
            return None
        record = StoredResponse.decode(entry[1])
        return record if record.owner == owner else None

    async def delete(self, response_id: str, owner: str) -> bool:
        if await self.get(response_id, owner) is None:
            return False
        del self._records[response_id]
        return True

    async def aclose(self) -> None:
        self._records.clear()


class SqliteStore(_Base):
    """One WAL-mode file (readers never wait for the writer; several gateway processes on
    one host may share it). sqlite3 blocks, so each call runs in a worker thread; the one
    connection is guarded by a lock, which keeps concurrent requests from interleaving
    on it."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        self.path = settings.sqlite_path()
        try:
            # stored prompts and answers are private: the folder and the files are the owner's only
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # autocommit (isolation_level=None): each statement is its own transaction
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable enough in WAL mode, far fewer fsyncs
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, owner TEXT NOT NULL, "
                             "expires REAL NOT NULL, record BLOB NOT NULL)")
            self._db.execute("CREATE INDEX IF NOT EXISTS responses_expires ON responses (expires)")
            for suffix in ("", "-wal", "-shm"):
                part = self.path.with_name(self.path.name + suffix)
                if part.exists():
                    part.chmod(0o600)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the response store at {self.path}: {exc} (set server.responses.path "
                             "or TANDEM_DATA_DIR to a writable place)") from None
        self._lock = threading.Lock()
        self._closed = False
        self._purged_at = 0.0

    async def _run(self, sql: str, args: tuple = ()) -> list[tuple]:
        def work() -> list[tuple]:
            with self._lock:
                if self._closed:
                    raise StoreError("response store: closed")
                return self._db.execute(sql, args).fetchall()

        try:
            return await asyncio.to_thread(work)
        except sqlite3.Error as exc:
            raise StoreError(f"response store ({self.path}): {exc}") from None

    async def put(self, record: StoredResponse) -> None:
        data, now = self._encoded(record), time.time()
        if time.monotonic() - self._purged_at > PURGE_EVERY_S:
            self._purged_at = time.monotonic()
            await self._run("DELETE FROM responses WHERE expires < ?", (now,))
        await self._run("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                        (record.id, record.owner, now + self.settings.retention_s, data))

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        rows = await self._run("SELECT record FROM responses WHERE id = ? AND owner = ? AND expires >= ?",
                               (response_id, owner, time.time()))
        return StoredResponse.decode(rows[0][0]) if rows else None

    async def delete(self, response_id: str, owner: str) -> bool:
        # one statement: the owner check and the delete cannot be split by another writer
        rows = await self._run("DELETE FROM responses WHERE id = ? AND owner = ? AND expires >= ? RETURNING id",
                               (response_id, owner, time.time()))
        return bool(rows)

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                if not self._closed:
                    self._closed = True
                    self._db.close()

        await asyncio.to_thread(close)


#: delete only when the record is the caller's: the owner check and DEL in one atomic step
_DELETE_OWNED = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
if cjson.decode(value)['owner'] ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


class RedisStore(_Base):
    """One key per response (``tandem:resp:{id}``), the JSON record as its value and the
    retention as its TTL, so Redis itself expires records. Short timeouts and no retry
    loop: a down Redis is a StoreError within about a second, never a hang."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # redis-py retries up to 10 times with backoff by default (timeouts included); one
        # immediate retry on a broken connection covers a pooled one the server closed while
        # idle, and a timeout is not retried: a wedged Redis costs one REDIS_TIMEOUT_S
        self._redis = redis.from_url(settings.store, socket_timeout=REDIS_TIMEOUT_S,
                                     socket_connect_timeout=REDIS_TIMEOUT_S,
                                     retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)))
        self._delete = self._redis.register_script(_DELETE_OWNED)
        self._errors = (redis.RedisError, OSError)

    @staticmethod
    def _key(response_id: str) -> str:
        return f"tandem:resp:{response_id}"

    async def _call(self, call: Any) -> Any:
        try:
            return await call
        except self._errors as exc:
            raise StoreError(f"response store (redis): {type(exc).__name__}: {exc}") from None

    async def put(self, record: StoredResponse) -> None:
        # SET with EX: the value and its expiry in one command
        await self._call(self._redis.set(self._key(record.id), self._encoded(record), ex=self.settings.retention_s))

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        data = await self._call(self._redis.get(self._key(response_id)))
        if data is None:
            return None
        record = StoredResponse.decode(data)
        return record if record.owner == owner else None

    async def delete(self, response_id: str, owner: str) -> bool:
        return bool(await self._call(self._delete(keys=[self._key(response_id)], args=[owner])))

    async def aclose(self) -> None:
        try:
            await self._redis.aclose()
        except self._errors:
            pass


def open_store(settings: StoreSettings) -> ResponseStore:
    if settings.store == "memory":
        return MemoryStore(settings)
    if settings.store == "sqlite" or settings.store.startswith("sqlite:///"):
        return SqliteStore(settings)
    return RedisStore(settings)
