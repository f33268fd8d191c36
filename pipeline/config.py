"""Typed settings, loaded once (defaults < config file < environment < explicit overrides).

Environment variables use the QUOTEGUARD_ prefix (QUOTEGUARD_MODEL, QUOTEGUARD_BASE_URL, ...);
the API key is also read from OPENAI_API_KEY. A TOML file named by QUOTEGUARD_CONFIG (or
./quoteguard.toml if present) may set any field. Each default carries its reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = Path("quoteguard.toml")


class RoutingConfig(BaseModel):
    """Every rule routing applies, visible and settable; see `pipeline.routing`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    auto_action_enabled: bool = Field(
        default=True, description="Off: every violation goes to review, whatever the signal."
    )
    auto_action_floor: float = Field(
        default=0.95,
        ge=0.5,
        le=1.0,
        description="Calibrated confidence must reach max(profile threshold, this floor); "
        "a guard against a profile fitted on a lenient target.",
    )
    review_when_any_invalid: bool = Field(
        default=True,
        description="A hallucinated rule or ungrounded quote beside valid findings sends the "
        "whole item to review: the model strayed from the policy on this item.",
    )
    weak_quote_chars: int = Field(
        default=5,
        ge=0,
        description="A quote with fewer letters/digits than this, found only inside a longer "
        "word ('ass' in 'classic', 'kill' in 'skills'), is grounded but weak: a violation "
        "resting on such quotes alone goes to review. 0 turns the rule off.",
    )
    always_review_policies: tuple[str, ...] = Field(
        default=("SELF_HARM",),
        description="Policies whose violations always go to a person (people at risk need "
        "care, not an automatic takedown).",
    )
    review_suppressed: bool = Field(
        default=False,
        description="Also queue suppressed items (every violation ungrounded or hallucinated).",
    )
    severity_priority: dict[str, int] = Field(
        default_factory=lambda: {"low": 20, "medium": 40, "high": 60, "critical": 80},
        description="Base review priority by the worst severity among the item's violations.",
    )
    uncertainty_priority: int = Field(
        default=20,
        ge=0,
        le=100,
        description="Added in proportion to how unsure the signal is (unknown counts as 0.5).",
    )
    error_priority: int = Field(
        default=50, ge=0, le=100, description="Items the pipeline failed on (no model verdict)."
    )
    invalid_input_priority: int = Field(
        default=5, ge=0, le=100, description="Empty or oversized content: someone should see it."
    )


class FallbackConfig(BaseModel):
    """Sample agreement for borderline items, when logprobs cannot be trusted alone.

    A borderline item (at least one valid violation, and: no profile for the served version,
    a collapsed signal, a violation without logprobs, or a calibrated confidence inside
    `band`) pays for ONE extra call asking for `n_samples` choices at `temperature`. The
    result is recorded and orders the review queue; it never auto-actions (see routing).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(
        default=False,
        description="Off by default: each borderline item costs one more call, and without "
        "a profile fitted on agreement it only orders the review queue.",
    )
    n_samples: int = Field(
        default=5,
        ge=2,
        le=20,
        description="Choices in the extra call: 5 resolves agreement to steps of 0.2, enough "
        "to order a queue, at the output-token cost of five answers.",
    )
    temperature: float = Field(
        default=1.0,
        gt=0,
        le=2,
        description="Sampling temperature of the extra call: 1.0 samples the model's own "
        "distribution; at 0 every choice would be the same greedy answer.",
    )
    band: tuple[float, float] = Field(
        default=(0.05, 0.95),
        description="Calibrated confidences in [low, high) are borderline: below low the "
        "violation is almost surely spurious, from high up it may be auto-actioned.",
    )

    @model_validator(mode="after")
    def _band_ordered(self) -> FallbackConfig:
        low, high = self.band
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"band must satisfy 0 <= low < high <= 1, got {self.band}")
        return self


class Settings(BaseSettings):
    """Everything configurable, as one frozen object passed down from the entry point."""

    model_config = SettingsConfigDict(
        env_prefix="QUOTEGUARD_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    model: str = Field(
        default="gpt-4o-mini", description="Model name sent to the provider (per request)."
    )
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint; None means api.openai.com."
    )
    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("QUOTEGUARD_API_KEY", "OPENAI_API_KEY", "api_key"),
    )
    output_mode: Literal["json_schema", "json"] = Field(
        default="json_schema",
        description="How the JSON travels in the message content: response_format json_schema, "
        "or json_object with the schema in the prompt for servers without json_schema. Never "
        "tool calls: providers return no logprobs for tool-call arguments.",
    )
    timeout_s: float = Field(
        default=60.0, gt=0, description="Per HTTP call; a long moderation answer takes ~30 s."
    )
    max_transport_retries: int = Field(
        default=3, ge=0, description="SDK retries on 429/5xx/timeouts, honouring Retry-After."
    )
    max_reasks: int = Field(
        default=2, ge=0, description="Re-asks with the validation error when the JSON is invalid."
    )
    top_logprobs: int = Field(
        default=5, ge=1, le=20, description="Alternatives kept per token for the audit record."
    )
    temperature: float = Field(
        default=0.0, ge=0, le=2, description="Deterministic answers; samples use their own."
    )
    max_output_tokens: int = Field(default=2000, gt=0, description="Room for many findings.")
    max_content_chars: int = Field(
        default=100_000,
        gt=0,
        description="Longer content becomes an error Decision instead of a truncated verdict.",
    )
    concurrency: int = Field(default=8, ge=1, description="In-flight items in the CLI runner.")
    policies_dir: Path | None = Field(
        default=None, description="Policy files; None means the bundled default set."
    )
    profiles_dir: Path = Field(
        default=Path("profiles"), description="Calibration profiles, one JSON per model version."
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Broker and state.")
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - no .env files: explicit config only
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("QUOTEGUARD_CONFIG", DEFAULT_CONFIG_FILE))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=config_file),
        )


def load_settings(**overrides: Any) -> Settings:
    """Settings from file and environment, with explicit overrides (CLI flags) on top.

    Overrides whose value is None are ignored so that unset CLI flags keep the lower layers.
    """
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
