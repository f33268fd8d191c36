"""Worker settings: typed, frozen, read once from QUOTEGUARD_* environment variables.

They share the prefix with `pipeline.config.Settings` (both read QUOTEGUARD_REDIS_URL), but
live here because the pipeline knows nothing of queues. Each default says why it is what it
is. Every Redis key and the Celery queue name start with `namespace`, so several deployments
(or test runs) can share one Redis without seeing each other.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.budget import call_budget
from pipeline.config import Settings as PipelineSettings
from pipeline.errors import ConfigError


class RateLimit(BaseModel):
    """A provider's limits for one model; None means no limit of that kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rpm: int | None = Field(default=None, gt=0, description="Requests per minute.")
    tpm: int | None = Field(default=None, gt=0, description="Tokens per minute.")


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="QUOTEGUARD_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="State: results, review, rate limit."
    )
    broker_url: str | None = Field(
        default=None, description="Celery broker; None means the same Redis as redis_url."
    )
    namespace: str = Field(
        default="quoteguard",
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="Prefix of every key and the queue name.",
    )
    # -- delivery guarantees -------------------------------------------------------------
    visibility_timeout_s: int = Field(
        default=3600,
        gt=0,
        description="Unacked messages come back after this; must outlast the longest task "
        "(checked at start-up against the pipeline's timeouts).",
    )
    restore_interval_s: int = Field(
        default=10,
        gt=0,
        description="How often a worker sweeps for messages past their visibility timeout.",
    )
    max_retries: int = Field(
        default=5, ge=0, description="Task retries on transient provider errors, then review."
    )
    retry_backoff_s: float = Field(default=2.0, gt=0, description="First retry delay.")
    retry_backoff_max_s: float = Field(
        default=120.0, gt=0, description="Cap on one retry delay, Retry-After included."
    )
    dedupe_ttl_s: int = Field(
        default=30 * 24 * 3600,
        gt=0,
        description="How long a Decision key blocks a second Decision (resubmission window).",
    )
    # -- outputs -------------------------------------------------------------------------
    stream_maxlen: int = Field(
        default=200_000,
        gt=0,
        description="Decisions kept on the stream (approximate trim); consumers must keep up.",
    )
    webhook_url: str | None = Field(default=None, description="POST every Decision here.")
    webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key for the signature header."
    )
    webhook_max_retries: int = Field(default=8, ge=0, description="~17 min of backoff at most.")
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # -- shared rate limit ---------------------------------------------------------------
    rpm: int | None = Field(default=None, gt=0, description="Default requests/min per model.")
    tpm: int | None = Field(default=None, gt=0, description="Default tokens/min per model.")
    rate_limits: dict[str, RateLimit] = Field(
        default_factory=dict, description="Per-model limits (JSON), overriding rpm/tpm."
    )
    rate_window_s: int = Field(
        default=60, gt=0, description="The window rpm/tpm count over: a minute, as providers."
    )
    rate_wait_max_s: float = Field(
        default=60.0,
        gt=0,
        description="Longest one request waits for the shared limit before it fails as "
        "transient (and the task is retried later instead of holding a worker slot).",
    )
    # -- review and metrics --------------------------------------------------------------
    review_lease_s: int = Field(
        default=900, gt=0, description="A claim lasts this long unless extended."
    )
    metrics_port: int = Field(
        default=9808, ge=0, le=65535, description="Prometheus /metrics; 0 disables it."
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Interface /metrics binds: this machine only unless exposed on purpose "
        "(0.0.0.0 in a container that a scraper reaches over the pod network).",
    )

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def queue(self) -> str:
        return self.namespace

    def key(self, *parts: str) -> str:
        """A Redis key in this deployment's namespace."""
        return ":".join((self.namespace, *parts))

    def limit_for(self, model: str) -> RateLimit:
        return self.rate_limits.get(model, RateLimit(rpm=self.rpm, tpm=self.tpm))


#: The openai SDK honours Retry-After between its own retries up to two minutes.
SDK_MAX_BACKOFF_S = 120.0


@cache
def worker_settings() -> WorkerSettings:
    """The process-wide settings, read from the environment once."""
    return WorkerSettings()


def broker_client(url: str) -> redis.Redis[bytes]:
    """A client for the broker's keys, as kombu stores them: bytes, not always UTF-8."""
    client: redis.Redis[bytes] = redis.Redis.from_url(
        url, socket_keepalive=True, health_check_interval=15
    )
    return client


def redis_client(url: str) -> redis.Redis[str]:
    """A client for our own keys (not the broker's): str in, str out."""
    # Keepalive and health checks: a Redis restarted behind a load balancer or failover
    # otherwise leaves a half-open connection that only a long TCP timeout reveals.
    client: redis.Redis[str] = redis.Redis.from_url(
        url, decode_responses=True, socket_keepalive=True, health_check_interval=15
    )
    return client


def longest_task_s(settings: WorkerSettings, pipeline: PipelineSettings) -> float:
    """A generous bound on one task run: every HTTP call may wait for the rate limit, then time out.

    The calls and the SDK's backoff waits (Retry-After, capped by the SDK at 120 s) are the
    worst case of `pipeline.budget`, the same budget `pipeline.llm` spends.
    """
    budget = call_budget(pipeline)
    per_call = pipeline.timeout_s + settings.rate_wait_max_s
    return budget.calls * per_call + budget.backoffs * SDK_MAX_BACKOFF_S


def check_visibility_timeout(settings: WorkerSettings, pipeline: PipelineSettings) -> None:
    """Refuse to start when a message could come back while its task is still running.

    A retried task also waits on the worker for its countdown (ETA) while its message is
    unacked, so the longest countdown counts as well.
    """
    needed = longest_task_s(settings, pipeline) + settings.retry_backoff_max_s
    if settings.visibility_timeout_s <= needed:
        msg = (
            f"visibility_timeout_s={settings.visibility_timeout_s} must exceed the longest "
            f"task ({needed:.0f} s: timeouts, rate-limit waits, re-asks and the longest retry "
            "countdown); raise QUOTEGUARD_VISIBILITY_TIMEOUT_S or lower those"
        )
        raise ConfigError(msg)


def celery_transport_options(settings: WorkerSettings) -> dict[str, Any]:
    return {
        "visibility_timeout": settings.visibility_timeout_s,
        # Sweep for abandoned messages every restore_interval_s, not every 10th interval.
        "unacked_restore_interval": settings.restore_interval_s,
        "unacked_restore_throttle": 1,
        # The sweep holds a lock while it runs (milliseconds). A worker killed mid-sweep
        # leaves the lock behind until it expires, and until then nobody restores anything:
        # kombu's 5 minutes would stall redelivery that long, so keep it to a few sweeps.
        "unacked_mutex_expire": max(5, 3 * settings.restore_interval_s),
        # A consumer's in-flight list (workers.transport) is put back once its channel has
        # missed a few sweeps: its worker is gone.
        "inflight_alive_ttl": max(3, 3 * settings.restore_interval_s),
    }
