"""Per-key limits: requests per minute, tokens per minute, requests at once.

Counted over a sliding 60-second window, either in this process or in Redis, where one
Lua script checks and counts atomically so N gateway replicas enforce one limit. Tokens
are reserved at admission (the prompt estimate plus the completion it allows) and
corrected to what the request used when it is released. A concurrency slot left by a
replica that died expires after ``SLOT_TTL_S``. With Redis unreachable the limiter fails
open (admits, logs) or closed (``LimitStoreUnavailable``), never hangs.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

WINDOW_S = 60.0
#: a concurrency slot older than this is a leftover of a dead replica, not a running request
SLOT_TTL_S = 900.0


@dataclass(frozen=True)
class KeyLimits:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent: int | None = None


@dataclass(frozen=True)
class LimitSettings:
    store: str = "memory"
    default: KeyLimits = KeyLimits()
    per_key: dict[str, KeyLimits] = field(default_factory=dict)
    on_store_error: str = "open"

    def __post_init__(self) -> None:
        if self.on_store_error not in ("open", "closed"):
            raise ValueError(f"on_store_error '{self.on_store_error}': use open or closed")

    def limits(self, key: str) -> KeyLimits:
        return self.per_key.get(key, self.default)


@dataclass(frozen=True)
class Admission:
    key: str
    slot: str
    at: float
    reserved: int
    headers: dict[str, str]


class LimitExceeded(Exception):
    def __init__(self, which: str, limit: int, retry_after_s: float) -> None:
        self.which = which
        self.retry_after_s = max(retry_after_s, 0.001)
        unit = {"requests": "requests per minute", "tokens": "tokens per minute",
                "concurrent": "requests at once"}[which]
        self.message = (f"Rate limit reached for this API key: {limit} {unit}. "
                        f"Retry after {math.ceil(self.retry_after_s)} s.")
        self.headers = {"retry-after": str(math.ceil(self.retry_after_s))}
        super().__init__(self.message)


class LimitStoreUnavailable(Exception):
    """The limit store is unreachable and the policy says to fail closed."""


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(int(seconds * 1000), 1)}ms"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def _headers(limits: KeyLimits, requests: int, oldest_request: float | None, tokens: int,
             oldest_token: float | None, now: float) -> dict[str, str]:
    headers = {}
    for kind, limit, used, oldest in (("requests", limits.requests_per_minute, requests, oldest_request),
                                      ("tokens", limits.tokens_per_minute, tokens, oldest_token)):
        if limit:
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(limit - used, 0))
            headers[f"x-ratelimit-reset-{kind}"] = duration((oldest + WINDOW_S - now) if oldest else 0)
    return headers


class _MemoryCounts:
    def __init__(self) -> None:
        self.requests: dict[str, deque[float]] = {}
        self.tokens: dict[str, dict[str, tuple[float, int]]] = {}
        self.slots: dict[str, dict[str, float]] = {}

    def admit(self, key: str, limits: KeyLimits, estimate: int, slot: str, now: float) -> Admission:
        requests = self.requests.setdefault(key, deque())
        while requests and requests[0] <= now - WINDOW_S:
            requests.popleft()
        tokens = self.tokens.setdefault(key, {})
        for old in [s for s, (at, _) in tokens.items() if at <= now - WINDOW_S]:
            del tokens[old]
        slots = self.slots.setdefault(key, {})
        for old in [s for s, at in slots.items() if at <= now - SLOT_TTL_S]:
            del slots[old]
        rpm, tpm, concurrent = limits.requests_per_minute, limits.tokens_per_minute, limits.concurrent
        if rpm and len(requests) >= rpm:
            raise LimitExceeded("requests", rpm, requests[0] + WINDOW_S - now)
        used = sum(n for _, n in tokens.values())
        if tpm and used + estimate > tpm:
            raise LimitExceeded("tokens", tpm, _tokens_free_at(sorted(tokens.values()), used, estimate, tpm) - now)
        if concurrent and len(slots) >= concurrent:
            raise LimitExceeded("concurrent", concurrent, 1.0)
        requests.append(now)
        if tpm:
            tokens[slot] = (now, estimate)
        if concurrent:
            slots[slot] = now
        oldest_token = min((at for at, _ in tokens.values()), default=None)
        return Admission(key, slot, now, estimate, _headers(limits, len(requests), requests[0], used + estimate,
                                                            oldest_token, now))

    def release(self, admission: Admission, used: int | None) -> None:
        self.slots.get(admission.key, {}).pop(admission.slot, None)
        tokens = self.tokens.get(admission.key, {})
        if used is not None and admission.slot in tokens:
            tokens[admission.slot] = (tokens[admission.slot][0], used)


def _tokens_free_at(entries: list[tuple[float, int]], used: int, estimate: int, limit: int) -> float:
    """When enough reserved tokens leave the window for ``estimate`` more (now + a minute
    at most: a request larger than the whole limit waits for an empty window)."""
    for at, count in entries:
        used -= count
        if used + estimate <= limit:
            return at + WINDOW_S
    return (entries[-1][0] if entries else time.time()) + WINDOW_S


#: check and count in one step, for every replica at once. KEYS: requests, tokens, slots
#: (sorted sets scored by time; token members are "<slot>:<count>"). ARGV: now, window,
#: slot ttl, rpm, tpm, concurrent (0 = none), estimate, slot id.
_ADMIT = """
local now, window, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rpm, tpm, conc, est, slot = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - ttl)
local requests = redis.call('ZCARD', KEYS[1])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if rpm > 0 and requests >= rpm then return {'requests', tostring(first[2] + window - now)} end
local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], ':(%d+)$')) end
if tpm > 0 and used + est > tpm then
  local left = used
  for i = 1, #entries, 2 do
    left = left - tonumber(string.match(entries[i], ':(%d+)$'))
    if left + est <= tpm then return {'tokens', tostring(entries[i + 1] + window - now)} end
  end
  return {'tokens', tostring(window)}
end
if conc > 0 and redis.call('ZCARD', KEYS[3]) >= conc then return {'concurrent', '1'} end
redis.call('ZADD', KEYS[1], now, slot)
if tpm > 0 then redis.call('ZADD', KEYS[2], now, slot .. ':' .. est) end
if conc > 0 then redis.call('ZADD', KEYS[3], now, slot) end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], math.ceil(window + ttl)) end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local oldest_token = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {'ok', tostring(oldest[2]), tostring(requests + 1), tostring(used + est), tostring(oldest_token[2] or '')}
"""


class RateLimiter:
    def __init__(self, settings: LimitSettings) -> None:
        self.settings = settings
        self._memory = _MemoryCounts() if settings.store == "memory" else None
        self._redis = None
        self._warned_at = 0.0
        if self._memory is None:
            import redis.asyncio as redis

            self._redis = redis.from_url(settings.store, socket_timeout=1.0, socket_connect_timeout=1.0)
            self._script = self._redis.register_script(_ADMIT)
            self._errors = (redis.RedisError, OSError)

    async def admit(self, key: str, estimated_tokens: int) -> Admission:
        limits, now, slot = self.settings.limits(key), time.time(), uuid.uuid4().hex
        if limits == KeyLimits():
            return Admission(key, slot, now, 0, {})
        if self._memory is not None:
            return self._memory.admit(key, limits, estimated_tokens, slot, now)
        try:
            answer = await self._script(keys=self._keys(key), args=[
                now, WINDOW_S, SLOT_TTL_S, limits.requests_per_minute or 0, limits.tokens_per_minute or 0,
                limits.concurrent or 0, estimated_tokens, slot])
        except self._errors as exc:
            return self._store_down(key, slot, now, exc)
        verdict = [a.decode() if isinstance(a, bytes) else str(a) for a in answer]
        if verdict[0] != "ok":
            limit = {"requests": limits.requests_per_minute, "tokens": limits.tokens_per_minute,
                     "concurrent": limits.concurrent}[verdict[0]]
            raise LimitExceeded(verdict[0], limit, float(verdict[1]))
        oldest_token = float(verdict[4]) if verdict[4] else None
        headers = _headers(limits, int(verdict[2]), float(verdict[1]), int(verdict[3]), oldest_token, now)
        return Admission(key, slot, now, estimated_tokens, headers)

    async def release(self, admission: Admission, used_tokens: int | None) -> None:
        if self._memory is not None:
            self._memory.release(admission, used_tokens)
            return
        if self._redis is None or not admission.headers and admission.reserved == 0:
            return
        _, tokens, slots = self._keys(admission.key)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(slots, admission.slot)
                if used_tokens is not None and self.settings.limits(admission.key).tokens_per_minute:
                    pipe.zrem(tokens, f"{admission.slot}:{admission.reserved}")
                    pipe.zadd(tokens, {f"{admission.slot}:{used_tokens}": admission.at})
                await pipe.execute()
        except self._errors as exc:
            log.warning("rate-limit store: releasing a slot failed (%s); it expires in %d s",
                        type(exc).__name__, SLOT_TTL_S)

    def _store_down(self, key: str, slot: str, now: float, exc: Exception) -> Admission:
        if now - self._warned_at > 30:
            self._warned_at = now
            log.error("rate-limit store unreachable (%s): failing %s", type(exc).__name__,
                      self.settings.on_store_error)
        if self.settings.on_store_error == "closed":
            raise LimitStoreUnavailable(str(type(exc).__name__))
        return Admission(key, slot, now, 0, {})

    @staticmethod
    def _keys(key: str) -> list[str]:
        return [f"tandem:limits:{key}:{part}" for part in ("requests", "tokens", "slots")]

    async def aclose(self) -> None:
        if self._redis is not None:
            try:
                await self._redis.aclose()
            except self._errors:
                pass
