"""Per-key limits: requests per minute, tokens per minute, requests at once.

Counted over a sliding 60-second window, either in this process or in Redis, where one
Lua script checks and counts atomically (one round trip) so N gateway replicas enforce
one limit. Tokens are reserved at admission (the caller's estimate: prompt plus the
completion it allows) and corrected to what the request used when it is released. A
concurrency slot left by a replica that died expires after ``SLOT_TTL_S``. With Redis
unreachable the limiter fails open (admits, logs) or closed (``LimitStoreUnavailable``),
never hangs: timeouts are short and, after a failure, Redis is left alone for
``STORE_RETRY_S`` so that a wedged Redis costs one timeout, not one per request.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger(__name__)

WINDOW_S = 60.0
#: a concurrency slot older than this is a leftover of a dead replica, not a running request
SLOT_TTL_S = 900.0
#: Redis socket timeouts (seconds)
REDIS_TIMEOUT_S = 1.0
#: after a Redis failure, skip it for this long (apply on_store_error at once)
STORE_RETRY_S = 1.0
#: log "store unreachable" at most once per this many seconds
LOG_EVERY_S = 30.0

_UNITS = {"requests": "requests per minute", "tokens": "tokens per minute", "concurrent": "requests at once"}


@dataclass(frozen=True)
class KeyLimits:
    """None: no limit of that kind."""
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent: int | None = None

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute", "concurrent"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"limit {name} is {value!r}: use a whole number of at least 1, "
                                 "or leave it out for no limit")

    def any(self) -> bool:
        return any(v is not None for v in (self.requests_per_minute, self.tokens_per_minute, self.concurrent))


@dataclass(frozen=True)
class LimitSettings:
    #: ``memory`` (this process) or ``redis://host:port/db`` (shared by every replica)
    store: str = "memory"
    #: for keys without their own entry, and for unkeyed use
    default: KeyLimits = KeyLimits()
    #: key (an opaque string: the caller's fingerprint or name) -> its limits
    per_key: dict[str, KeyLimits] = field(default_factory=dict)
    #: Redis unreachable: ``open`` admits (and logs), ``closed`` raises LimitStoreUnavailable
    on_store_error: str = "open"

    def __post_init__(self) -> None:
        if self.store != "memory" and not self.store.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"limits store '{self.store}': use memory or redis://host:port/db")
        if not isinstance(self.default, KeyLimits):
            raise ValueError("limits default: give a KeyLimits")
        bad = [k for k, v in self.per_key.items() if not isinstance(k, str) or not isinstance(v, KeyLimits)]
        if bad:
            raise ValueError(f"limits per_key {bad[:3]}: map each key (a string) to a KeyLimits")
        if self.on_store_error not in ("open", "closed"):
            raise ValueError(f"limits on_store_error '{self.on_store_error}': use open (admit when the store "
                             "is unreachable) or closed (refuse with 503)")

    def limits(self, key: str) -> KeyLimits:
        return self.per_key.get(key, self.default)


@dataclass(frozen=True)
class Admission:
    key: str
    slot: str
    at: float
    reserved: int
    headers: dict[str, str]
    #: whether the store holds anything of this request (False: no limits, or failed open)
    counted: bool = True


class LimitExceeded(Exception):
    def __init__(self, which: str, limit: int, retry_after_s: float, headers: dict[str, str] | None = None,
                 needed: int | None = None) -> None:
        self.which = which
        self.retry_after_s = max(retry_after_s, 0.001)
        wait = math.ceil(self.retry_after_s)
        if needed is not None:
            # no wait helps: the request alone is above the key's per-minute budget
            self.message = (f"Request too large for this API key: it needs about {needed} tokens and the key "
                            f"allows {limit} {_UNITS[which]}; lower max_tokens or send less input.")
        else:
            self.message = f"Rate limit reached: {limit} {_UNITS[which]} for this API key; retry after {wait} s."
        # retry-after-ms first: openai-python reads it before retry-after (whole seconds)
        self.headers = {**(headers or {}), "retry-after-ms": str(max(int(self.retry_after_s * 1000), 1)),
                        "retry-after": str(wait)}
        super().__init__(self.message)


class LimitStoreUnavailable(Exception):
    """The limit store is unreachable and the policy says to fail closed."""


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``0s``, ``20ms``, ``1s``, ``6m0s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(int(seconds * 1000), 1)}ms"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def _headers(limits: KeyLimits, requests: int, oldest_request: float | None, tokens: int,
             oldest_token: float | None, now: float) -> dict[str, str]:
    """x-ratelimit-{limit,remaining,reset}-{requests,tokens}; reset: until the oldest
    counted entry leaves the window (when ``remaining`` next goes up)."""
    headers = {}
    for kind, limit, used, oldest in (("requests", limits.requests_per_minute, requests, oldest_request),
                                      ("tokens", limits.tokens_per_minute, tokens, oldest_token)):
        if limit:
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(limit - used, 0))
            headers[f"x-ratelimit-reset-{kind}"] = duration((oldest + WINDOW_S - now) if oldest else 0)
    return headers


def _verdict(limits: KeyLimits, estimate: int, requests: int, oldest_request: float | None, used: int,
             tokens_free_at: float | None, slots: int, now: float) -> tuple[str, float] | None:
    """The rule both stores apply (Redis in its Lua script, below): the first limit hit and
    the seconds until it frees, or None. "too_large": the request alone is above the
    key's tokens per minute, and no wait helps."""
    rpm, tpm, concurrent = limits.requests_per_minute, limits.tokens_per_minute, limits.concurrent
    if rpm and requests >= rpm:
        return "requests", (oldest_request or now) + WINDOW_S - now
    if tpm and estimate > tpm:
        return "too_large", WINDOW_S
    if tpm and used + estimate > tpm:
        return "tokens", (tokens_free_at or now) + WINDOW_S - now
    if concurrent and slots >= concurrent:
        return "concurrent", 1.0  # no telling when a running request ends: poll soon
    return None


def _refusal(limits: KeyLimits, which: str, retry_after_s: float, headers: dict[str, str],
             estimate: int) -> LimitExceeded:
    if which == "too_large":
        return LimitExceeded("tokens", limits.tokens_per_minute or 0, retry_after_s, headers, needed=estimate)
    return LimitExceeded(which, _limit(limits, which), retry_after_s, headers)


class _MemoryCounts:
    """This process's windows. Every method is synchronous: on one event loop a check
    and its count cannot be interleaved by another request."""

    def __init__(self) -> None:
        self.requests: dict[str, deque[float]] = {}
        self.tokens: dict[str, dict[str, tuple[float, int]]] = {}
        self.slots: dict[str, dict[str, float]] = {}
        self._swept_at = -math.inf

    def _trim(self, key: str, now: float) -> None:
        requests = self.requests.get(key)
        while requests and requests[0] <= now - WINDOW_S:
            requests.popleft()
        tokens = self.tokens.get(key, {})
        for old in [s for s, (at, _) in tokens.items() if at <= now - WINDOW_S]:
            del tokens[old]
        slots = self.slots.get(key, {})
        for old in [s for s, at in slots.items() if at <= now - SLOT_TTL_S]:
            del slots[old]

    def _sweep(self, now: float) -> None:
        # keys that went quiet: drop their empty tables so memory follows active keys only
        self._swept_at = now
        for key in list(self.requests.keys() | self.tokens.keys() | self.slots.keys()):
            self._trim(key, now)
            for table in (self.requests, self.tokens, self.slots):
                if key in table and not table[key]:
                    del table[key]

    def admit(self, key: str, limits: KeyLimits, estimate: int, slot: str, now: float) -> Admission:
        if now - self._swept_at > WINDOW_S:
            self._sweep(now)
        self._trim(key, now)
        requests = self.requests.setdefault(key, deque())
        tokens = self.tokens.setdefault(key, {})
        slots = self.slots.setdefault(key, {})
        used = sum(n for _, n in tokens.values())
        free_at = _tokens_free_at(sorted(tokens.values()), used, estimate, limits.tokens_per_minute or 0)
        refused = _verdict(limits, estimate, len(requests), requests[0] if requests else None, used, free_at,
                           len(slots), now)
        oldest_token = min((at for at, _ in tokens.values()), default=None)
        if refused is not None:
            headers = _headers(limits, len(requests), requests[0] if requests else None, used, oldest_token, now)
            raise _refusal(limits, refused[0], refused[1], headers, estimate)
        requests.append(now)
        if limits.tokens_per_minute:
            tokens[slot] = (now, estimate)
            used += estimate
            oldest_token = now if oldest_token is None else oldest_token
        if limits.concurrent:
            slots[slot] = now
        return Admission(key, slot, now, estimate, _headers(limits, len(requests), requests[0], used, oldest_token, now))

    def release(self, admission: Admission, used: int | None) -> None:
        self.slots.get(admission.key, {}).pop(admission.slot, None)
        tokens = self.tokens.get(admission.key, {})
        if used is not None and admission.slot in tokens:
            tokens[admission.slot] = (tokens[admission.slot][0], max(int(used), 0))


def _limit(limits: KeyLimits, which: str) -> int:
    return {"requests": limits.requests_per_minute, "tokens": limits.tokens_per_minute,
            "concurrent": limits.concurrent}[which] or 0


def _tokens_free_at(entries: list[tuple[float, int]], used: int, estimate: int, limit: int) -> float | None:
    """When the entry whose leaving makes room for ``estimate`` more tokens was counted
    (it leaves the window a minute later)."""
    for at, count in entries:
        used -= count
        if used + estimate <= limit:
            return at
    return entries[-1][0] if entries else None


#: check and count in one step, for every replica at once. KEYS: requests, tokens, slots
#: (sorted sets scored by time; token members are "<slot>:<count>"). ARGV: now, window,
#: slot ttl, rpm, tpm, concurrent (0 = none), estimate, slot id. Returns the verdict
#: ("ok" or the limit hit), the time the freeing entry was counted, then the window's state
#: for the headers: requests, oldest request, tokens used, oldest token entry.
_ADMIT = """
local now, window, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rpm, tpm, conc, est, slot = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - ttl)
local function state()
  local requests = redis.call('ZCARD', KEYS[1])
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local used = 0
  for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], ':(%d+)$')) end
  return requests, first[2] or '', entries, used
end
local requests, first, entries, used = state()
local oldest_token = entries[2] or ''
local function refuse(which, at) return {which, tostring(at), requests, first, used, oldest_token} end
if rpm > 0 and requests >= rpm then return refuse('requests', first) end
if tpm > 0 and est > tpm then return refuse('too_large', now) end
if tpm > 0 and used + est > tpm then
  local left = used
  for i = 1, #entries, 2 do
    left = left - tonumber(string.match(entries[i], ':(%d+)$'))
    if left + est <= tpm then return refuse('tokens', entries[i + 1]) end
  end
  return refuse('tokens', now)
end
if conc > 0 and redis.call('ZCARD', KEYS[3]) >= conc then return refuse('concurrent', now) end
redis.call('ZADD', KEYS[1], now, slot)
if tpm > 0 then redis.call('ZADD', KEYS[2], now, slot .. ':' .. est) end
if conc > 0 then redis.call('ZADD', KEYS[3], now, slot) end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], math.ceil(window + ttl)) end
requests, first, entries, used = state()
return {'ok', '', requests, first, used, entries[2] or ''}
"""


def _float(value: bytes | str | None) -> float | None:
    text = value.decode() if isinstance(value, bytes) else value
    return float(text) if text else None


class RateLimiter:
    def __init__(self, settings: LimitSettings, clock: Callable[[], float] = time.time) -> None:
        """``clock``: wall-clock seconds (replicas sharing Redis compare their clocks'
        readings, so keep them in sync, as NTP does; tests may pass a fake one)."""
        self.settings = settings
        self._clock = clock
        self._memory = _MemoryCounts() if settings.store == "memory" else None
        self._redis = None
        self._warned_at = -math.inf
        self._down_until = -math.inf
        if self._memory is None:
            import redis.asyncio as redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # redis-py's default is 10 retries with backoff (seconds of waiting per request);
            # retry once at once on a broken pooled connection, never on a timeout
            self._redis = redis.from_url(settings.store, socket_timeout=REDIS_TIMEOUT_S,
                                         socket_connect_timeout=REDIS_TIMEOUT_S,
                                         retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)))
            self._script = self._redis.register_script(_ADMIT)
            self._errors = (redis.RedisError, OSError)

    async def admit(self, key: str, estimated_tokens: int) -> Admission:
        limits, now, slot = self.settings.limits(key), self._clock(), uuid.uuid4().hex
        estimate = max(int(estimated_tokens), 0)
        if not limits.any():
            return Admission(key, slot, now, 0, {}, counted=False)
        if self._memory is not None:
            return self._memory.admit(key, limits, estimate, slot, now)
        if time.monotonic() < self._down_until:
            return self._store_down(key, slot, now, None)
        try:
            answer = await self._script(keys=self._keys(key), args=[
                repr(now), WINDOW_S, SLOT_TTL_S, limits.requests_per_minute or 0, limits.tokens_per_minute or 0,
                limits.concurrent or 0, estimate, slot])
        except self._errors as exc:
            return self._store_down(key, slot, now, exc)
        verdict = answer[0].decode() if isinstance(answer[0], bytes) else str(answer[0])
        requests, oldest_request = int(answer[2]), _float(answer[3])
        used, oldest_token = int(answer[4]), _float(answer[5])
        headers = _headers(limits, requests, oldest_request, used, oldest_token, now)
        if verdict != "ok":
            retry = {"concurrent": 1.0, "too_large": WINDOW_S}.get(verdict, (_float(answer[1]) or now) + WINDOW_S - now)
            raise _refusal(limits, verdict, retry, headers, estimate)
        return Admission(key, slot, now, estimate, headers)

    async def release(self, admission: Admission, used_tokens: int | None) -> None:
        """Give the concurrency slot back and count the tokens really used. Never raises:
        a slot that cannot be released expires after SLOT_TTL_S."""
        if not admission.counted:
            return
        if self._memory is not None:
            self._memory.release(admission, used_tokens)
            return
        _, tokens, slots = self._keys(admission.key)
        limits = self.settings.limits(admission.key)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:  # MULTI/EXEC: both or neither
                if limits.concurrent:
                    pipe.zrem(slots, admission.slot)
                if used_tokens is not None and limits.tokens_per_minute and used_tokens != admission.reserved:
                    pipe.zrem(tokens, f"{admission.slot}:{admission.reserved}")
                    pipe.zadd(tokens, {f"{admission.slot}:{max(int(used_tokens), 0)}": admission.at})
                if len(pipe):
                    await pipe.execute()
        except self._errors as exc:
            self._log_down(f"releasing a slot failed ({type(exc).__name__}); it expires in {SLOT_TTL_S:.0f} s")

    def _store_down(self, key: str, slot: str, now: float, exc: Exception | None) -> Admission:
        if exc is not None:
            self._down_until = time.monotonic() + STORE_RETRY_S
            self._log_down(f"unreachable ({type(exc).__name__}: {exc}); failing {self.settings.on_store_error}")
        if self.settings.on_store_error == "closed":
            raise LimitStoreUnavailable("the rate-limit store is unreachable; retry shortly")
        return Admission(key, slot, now, 0, {}, counted=False)

    def _log_down(self, what: str) -> None:
        if time.monotonic() - self._warned_at >= LOG_EVERY_S:
            self._warned_at = time.monotonic()
            log.warning("rate-limit store %s: %s", self.settings.store.split("@")[-1], what)

    @staticmethod
    def _keys(key: str) -> list[str]:
        # the {hash tag}: all three keys in one Redis Cluster slot, as a script needs
        return [f"tandem:limits:{{{key}}}:{part}" for part in ("requests", "tokens", "slots")]

    async def aclose(self) -> None:
        if self._redis is not None:
            try:
                await self._redis.aclose()
            except self._errors:
                pass
