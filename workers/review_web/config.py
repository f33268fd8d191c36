"""Settings of the review web app: QUOTEGUARD_REVIEW_* environment variables, read once."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReviewWebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUOTEGUARD_REVIEW_", frozen=True, extra="ignore")

    host: str = Field(
        default="127.0.0.1", description="Loopback: put a TLS proxy in front to expose it."
    )
    port: int = Field(default=8090, ge=1, le=65535)
    lease_s: int = Field(
        default=120,
        ge=2,
        description="A claim made in the browser lasts this long; the open page renews it "
        "every quarter of it, so a closed tab frees its item within this time.",
    )
    dual_review_share: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Share of items a second reviewer labels independently (for kappa).",
    )
    secure_cookies: bool = Field(
        default=True,
        description="Session cookie only over HTTPS (browsers also send it to plain-HTTP "
        "localhost); false only for a plain-HTTP host that is not loopback, never in use.",
    )
    session_max_age_s: int = Field(default=8 * 3600, gt=0, description="One working day.")
    secret: SecretStr | None = Field(
        default=None,
        description="Signs session cookies; unset, one is made once and kept in Redis so all "
        "app processes of a namespace share it and restarts keep sessions.",
    )

    @property
    def heartbeat_s(self) -> float:
        return self.lease_s / 4
