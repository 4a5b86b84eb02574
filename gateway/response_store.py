"""Where the Responses API keeps responses: SQLite (one file, the default), Redis (shared by
several gateway replicas) or memory (this process only).

A record is the response as returned, the request's input items and the id it chained
from; it belongs to an owner (a fingerprint of the API key), and another owner's id reads
as missing. Records expire after ``retention_s``. Every write is one statement or one
command: a record is stored whole or not at all.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson


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
        return cls(**orjson.loads(data))


@dataclass(frozen=True)
class StoreSettings:
    #: ``sqlite`` (file at ``path``), ``memory``, or ``redis://host:port/db``
    url: str = "sqlite"
    path: str = ""
    retention_s: int = 30 * 24 * 3600
    max_record_bytes: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.url not in ("sqlite", "memory") and not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"response store '{self.url}': use sqlite, memory or redis://host:port/db")
        if self.retention_s < 1 or self.max_record_bytes < 1:
            raise ValueError("response store: retention_s and max_record_bytes must be at least 1")

    def sqlite_path(self) -> Path:
        if self.path:
            return Path(self.path).expanduser()
        base = os.environ.get("TANDEM_DATA_DIR") or Path.home() / ".local" / "share" / "tandem"
        return Path(base) / "responses.db"


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
            raise RecordTooLarge(f"record of {len(data)} bytes is above max_record_bytes "
                                 f"({self.settings.max_record_bytes})")
        return data

    async def chain(self, response_id: str, owner: str, max_depth: int = 100) -> list[StoredResponse] | None:
        """The record and its ancestors, oldest first; None when ``response_id`` is missing.
        An ancestor that expired ends the chain there."""
        records: list[StoredResponse] = []
        next_id: str | None = response_id
        while next_id is not None and len(records) < max_depth:
            record = await self.get(next_id, owner)
            if record is None:
                break
            records.append(record)
            next_id = record.previous_response_id
        return list(reversed(records)) or None


class MemoryStore(_Base):
    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        self._records: dict[str, tuple[float, bytes]] = {}

    async def put(self, record: StoredResponse) -> None:
        self._records[record.id] = (time.time() + self.settings.retention_s, self._encoded(record))

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
    """One WAL-mode file; blocking calls run in a thread, one connection behind a lock."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        path = settings.sqlite_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, owner TEXT NOT NULL, "
                             "expires REAL NOT NULL, record BLOB NOT NULL)")
            self._db.execute("CREATE INDEX IF NOT EXISTS responses_expires ON responses (expires)")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the response store at {path}: {exc}") from None
        self._lock = threading.Lock()

    async def _run(self, sql: str, args: tuple = ()) -> list[tuple]:
        def work() -> list[tuple]:
            with self._lock:
                return self._db.execute(sql, args).fetchall()

        try:
            return await asyncio.to_thread(work)
        except sqlite3.Error as exc:
            raise StoreError(f"response store: {exc}") from None

    async def put(self, record: StoredResponse) -> None:
        data, now = self._encoded(record), time.time()
        await self._run("DELETE FROM responses WHERE expires < ?", (now,))  # purge as we go
        await self._run("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                        (record.id, record.owner, now + self.settings.retention_s, data))

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        rows = await self._run("SELECT record FROM responses WHERE id = ? AND owner = ? AND expires >= ?",
                               (response_id, owner, time.time()))
        return StoredResponse.decode(rows[0][0]) if rows else None

    async def delete(self, response_id: str, owner: str) -> bool:
        rows = await self._run("DELETE FROM responses WHERE id = ? AND owner = ? AND expires >= ? RETURNING id",
                               (response_id, owner, time.time()))
        return bool(rows)

    async def aclose(self) -> None:
        with self._lock:
            self._db.close()


class RedisStore(_Base):
    """One key per response with the retention as its TTL; short timeouts: a down Redis
    is a StoreError within a second or two, never a hang."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        import redis.asyncio as redis

        self._redis = redis.from_url(settings.url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._errors = (redis.RedisError, OSError)

    @staticmethod
    def _key(response_id: str) -> str:
        return f"tandem:resp:{response_id}"

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self._redis, method)(*args, **kwargs)
        except self._errors as exc:
            raise StoreError(f"response store (redis): {type(exc).__name__}") from None

    async def put(self, record: StoredResponse) -> None:
        await self._call("set", self._key(record.id), self._encoded(record), ex=self.settings.retention_s)

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        data = await self._call("get", self._key(response_id))
        if data is None:
            return None
        record = StoredResponse.decode(data)
        return record if record.owner == owner else None

    async def delete(self, response_id: str, owner: str) -> bool:
        if await self.get(response_id, owner) is None:
            return False
        return bool(await self._call("delete", self._key(response_id)))

    async def aclose(self) -> None:
        try:
            await self._redis.aclose()
        except self._errors:
            pass


def open_store(settings: StoreSettings) -> ResponseStore:
    if settings.url == "memory":
        return MemoryStore(settings)
    if settings.url == "sqlite":
        return SqliteStore(settings)
    return RedisStore(settings)
