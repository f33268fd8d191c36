"""The simulator's settings: one frozen value, built once, passed to the app.

Every default is what a test wants (no faults, no latency, fast retries); `quoteguard sim
serve` exposes each field as an option.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

FaultKind = Literal["rate_limit", "server_error", "timeout", "malformed", "truncated"]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FaultConfig(_Frozen):
    """How often each fault happens; a request draws at most one."""

    rate_limit: float = Field(default=0.0, ge=0, le=1, description="Share answered 429.")
    server_error: float = Field(default=0.0, ge=0, le=1, description="Share answered 500.")
    timeout: float = Field(
        default=0.0, ge=0, le=1, description="Share that stall `timeout_s` before answering."
    )
    malformed: float = Field(
        default=0.0, ge=0, le=1, description="Share whose content is not valid JSON."
    )
    truncated: float = Field(
        default=0.0, ge=0, le=1, description="Share cut short with finish_reason 'length'."
    )
    script: tuple[FaultKind, ...] = Field(
        default=(),
        description="Faults forced on the first requests, in order, before the rates apply: "
        "lets a test say 'two 429s, then an answer' exactly.",
    )
    # Small by default so the SDK's retries cost tests milliseconds; providers send ~1-20 s.
    retry_after_ms: int = Field(default=50, ge=0, description="Sent as retry-after-ms on 429.")
    timeout_s: float = Field(default=30.0, ge=0, description="How long a timeout fault stalls.")

    @model_validator(mode="after")
    def _rates_fit(self) -> FaultConfig:
        if sum(self.rate(kind) for kind in FAULT_KINDS) > 1.0 + 1e-9:
            msg = "fault rates add up to more than 1"
            raise ValueError(msg)
        return self

    def rate(self, kind: FaultKind) -> float:
        rate: float = getattr(self, kind)
        return rate


class LatencyConfig(_Frozen):
    """Time added before every answer, to make throughput and timeouts observable."""

    mean_ms: float = Field(default=0.0, ge=0)
    distribution: Literal["fixed", "lognormal"] = "fixed"
    # 0.5 gives the long right tail of real completion latencies without absurd outliers.
    sigma: float = Field(default=0.5, ge=0, description="Log-space spread for lognormal.")


class SimConfig(_Frozen):
    seed: int = Field(default=0, description="Mixed into every random choice of the model.")
    hallucination_rate: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Share of findings a '+hallucinating' profile corrupts (bad rule id or "
        "paraphrased quote).",
    )
    faults: FaultConfig = FaultConfig()
    latency: LatencyConfig = LatencyConfig()
