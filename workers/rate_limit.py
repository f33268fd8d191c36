"""One rate limit for every worker: requests and tokens per minute per model, kept in Redis.

`RedisRateGate` implements `pipeline.llm.RateGate`; the LLM client calls `acquire` before
every HTTP request (SDK retries and re-asks included), so a fleet of workers on many machines
stays under the provider's limits instead of discovering them as 429s.

Why a small Lua script and not the `limits` library: `limits` can charge a cost
(`MovingWindowRateLimiter.hit(item, cost=n)`), but its Redis moving window stores one list
entry per unit of cost. For a tokens-per-minute limit that is one entry per token: measured
here, 200 requests of 2,500 tokens made a 500,000-entry, 10 MB list and each hit took ~2 ms
of Redis time; a 2M TPM limit would hold 2M entries per model. Its request and token limits
would also be two separate hits, so a request could take a request slot and then be refused
tokens. The script below keeps one sorted-set entry per *request* (score = time, member
carries the token cost) plus a running token sum, checks both limits in one atomic step, and
says exactly how long to wait. Time is the Redis server's clock, shared by every machine.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable

import redis
import structlog

from pipeline.errors import LLMTransientError
from workers.settings import RateLimit

log = structlog.get_logger("quoteguard.workers")

WINDOW_MS = 60_000

# KEYS: request log (zset: "<id>:<tokens>" -> ms), token sum (string)
# ARGV: window ms, rpm (0 = none), tpm (0 = none), tokens, request id
# Returns 0 when the request was admitted, else the milliseconds to wait before asking again.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local horizon = string.format('%.0f', now - window)

local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', horizon)
if #gone > 0 then
  local freed = 0
  for _, member in ipairs(gone) do
    freed = freed + tonumber(string.match(member, ':(%d+)$'))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', horizon)
  if redis.call('DECRBY', KEYS[2], freed) < 0 then redis.call('SET', KEYS[2], 0) end
end

local wait = 0
if rpm > 0 and redis.call('ZCARD', KEYS[1]) + 1 > rpm then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  wait = tonumber(oldest[2]) + window - now
end
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if tpm > 0 and used + cost > tpm then
  local need = used + cost - tpm
  local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    need = need - tonumber(string.match(entries[i], ':(%d+)$'))
    if need <= 0 then
      wait = math.max(wait, tonumber(entries[i + 1]) + window - now)
      break
    end
  end
end
if wait > 0 then return math.max(1, wait) end

redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[5] .. ':' .. ARGV[4])
redis.call('INCRBY', KEYS[2], cost)
redis.call('PEXPIRE', KEYS[1], window)
redis.call('PEXPIRE', KEYS[2], window)
return 0
"""


class RateLimitWaitError(LLMTransientError):
    """The shared limit would hold this request longer than allowed; retry the item later."""

    kind = "rate_limit_wait"


class RedisRateGate:
    """Blocks each request until the model's shared request and token budgets allow it."""

    def __init__(
        self,
        client: redis.Redis[str],
        namespace: str,
        limit_for: Callable[[str], RateLimit],
        *,
        max_wait_s: float = 60.0,
        window_ms: int = WINDOW_MS,
        on_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        self.redis = client
        self.namespace = namespace
        self.limit_for = limit_for
        self.max_wait_s = max_wait_s
        self.window_ms = window_ms
        self.on_wait = on_wait
        self._acquire = client.register_script(_ACQUIRE)

    def keys(self, model: str) -> list[str]:
        base = f"{self.namespace}:rate:{model}"
        return [f"{base}:requests", f"{base}:tokens"]

    def acquire(self, model: str, tokens: int) -> float:
        """Wait until one request of `tokens` tokens may go; return the seconds waited."""
        limit = self.limit_for(model)
        if limit.rpm is None and limit.tpm is None:
            return 0.0
        cost = max(0, tokens)
        if limit.tpm is not None and cost > limit.tpm:
            # Larger than a whole minute's budget: it could never go. Let it go alone, when
            # the window is otherwise empty, rather than never.
            log.warning("rate_limit_cost_clamped", model=model, tokens=cost, tpm=limit.tpm)
            cost = limit.tpm
        request_id = uuid.uuid4().hex
        start = time.monotonic()
        slept = False
        while True:
            wait_ms = int(
                self._acquire(
                    keys=self.keys(model),
                    args=[self.window_ms, limit.rpm or 0, limit.tpm or 0, cost, request_id],
                )
            )
            if wait_ms == 0 and not slept:
                return 0.0
            waited = time.monotonic() - start
            if wait_ms == 0:
                if self.on_wait is not None:
                    self.on_wait(model, waited)
                return waited
            if waited + wait_ms / 1000 > self.max_wait_s:
                log.warning("rate_limit_wait_too_long", model=model, wait_s=wait_ms / 1000)
                raise RateLimitWaitError(
                    f"shared rate limit for {model} needs {wait_ms / 1000:.1f} s more",
                    retry_after=wait_ms / 1000,
                )
            # A little jitter, so workers released by the same expiring entry do not all
            # ask again in the same millisecond.
            time.sleep(wait_ms / 1000 + random.uniform(0, 0.05))
            slept = True

    def usage(self, model: str) -> tuple[int, int]:
        """Requests and tokens counted in the current window (approximate: not pruned here)."""
        requests_key, tokens_key = self.keys(model)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(requests_key)
            pipe.get(tokens_key)
            requests, tokens = pipe.execute()
        return int(requests), int(tokens or 0)
