"""Settings: layered sources, secrets kept secret, bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_settings


class TestLayers:
    def test_file_then_env_then_overrides(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A flag beats the environment, which beats the TOML file, which beats defaults."""
        config = tmp_path / "quoteguard.toml"
        config.write_text(
            'model = "from-file"\nconcurrency = 3\n[routing]\nauto_action_floor = 0.97\n'
        )
        monkeypatch.setenv("QUOTEGUARD_CONFIG", str(config))
        monkeypatch.setenv("QUOTEGUARD_CONCURRENCY", "5")
        settings = load_settings(model="from-flag", base_url=None)
        assert settings.model == "from-flag"
        assert settings.concurrency == 5
        assert settings.routing.auto_action_floor == 0.97

    def test_nested_routing_from_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Nested routing settings are reachable from the environment with `__`."""
        monkeypatch.setenv("QUOTEGUARD_ROUTING__ALWAYS_REVIEW_POLICIES", '["VIOLENCE"]')
        assert load_settings().routing.always_review_policies == ("VIOLENCE",)

    def test_api_key_from_openai_env_is_secret(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """OPENAI_API_KEY is read, and never shown by repr or dumps."""
        monkeypatch.setenv("OPENAI_API_KEY", "sk-verysecretvalue")
        settings = load_settings()
        assert settings.api_key is not None
        assert settings.api_key.get_secret_value() == "sk-verysecretvalue"
        assert "verysecret" not in repr(settings)
        assert "verysecret" not in settings.model_dump_json()

    def test_bad_value_is_named(self) -> None:
        """An out-of-range value fails with the field's name."""
        with pytest.raises(ValueError, match="concurrency"):
            load_settings(concurrency=0)
