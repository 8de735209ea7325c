"""Settings: read from the environment at first use, cached, refreshed on demand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from learnflow.config import ConfigurationError, get_settings

LAYER = Path(__file__).resolve().parents[2] / "layers" / "shared"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARNFLOW_TABLE", "tbl")
    monkeypatch.setenv("LEARNFLOW_SENDER_EMAIL", "hi@example.com")
    monkeypatch.setenv("LEARNFLOW_STRIPE_API_BASE", "http://127.0.0.1:12111")
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.require_table() == "tbl"
    assert settings.sender_email == "hi@example.com"
    assert settings.stripe_api_base == "http://127.0.0.1:12111"
    assert settings.region == "us-east-1"


def test_settings_are_cached_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    first = get_settings()
    monkeypatch.setenv("LEARNFLOW_TABLE", "other")
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().table_name == "other"


def test_missing_table_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEARNFLOW_TABLE")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError):
        get_settings().require_table()


def test_blank_values_count_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARNFLOW_STRIPE_SECRET_KEY_TEST", "   ")
    monkeypatch.setenv("LEARNFLOW_STRIPE_SECRET_KEY_LIVE", "sk_live_x")
    monkeypatch.delenv("LEARNFLOW_SENDER_EMAIL", raising=False)
    get_settings.cache_clear()
    assert get_settings().stripe_secret_keys == {"live": "sk_live_x"}
    assert get_settings().sender_email == "no-reply@learnflow.com"


def test_stripe_secrets_are_read_per_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARNFLOW_STRIPE_SECRET_PARAMETER_TEST", "/lf/test")
    monkeypatch.setenv("LEARNFLOW_STRIPE_SECRET_PARAMETER_LIVE", "/lf/live")
    get_settings.cache_clear()
    assert get_settings().stripe_secret_parameters == {"test": "/lf/test", "live": "/lf/live"}


def test_importing_the_layer_reads_no_settings() -> None:
    # A fresh interpreter: importing every core module must not read the environment.
    code = (
        "import learnflow.clients, learnflow.deps, learnflow.http;"
        "from learnflow.config import get_settings;"
        "assert get_settings.cache_info().currsize == 0"
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(LAYER)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)  # noqa: S603
