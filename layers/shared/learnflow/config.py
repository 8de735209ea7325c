"""Settings: the only reader of the environment; read at first use, then cached."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


class ConfigurationError(RuntimeError):
    """A setting the running code needs is missing or malformed (a deployment mistake)."""


@dataclass(frozen=True, slots=True)
class Settings:
    table_name: str | None
    region: str
    sender_email: str
    # Production reads Stripe's secrets from these SSM SecureStrings (through Powertools
    # parameters), by mode: the test secret for requests made with test keys, the live one for
    # live keys
    stripe_secret_parameters: dict[str, str]
    # The local stack and tests pass the secrets directly instead
    stripe_secret_keys: dict[str, str]
    # Where the Stripe SDK sends requests; None is Stripe itself
    stripe_api_base: str | None
    service_name: str

    def require_table(self) -> str:
        if not self.table_name:
            raise ConfigurationError("LEARNFLOW_TABLE is not set")
        return self.table_name


def _optional(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _by_mode(prefix: str) -> dict[str, str]:
    """`<prefix>_TEST` and `<prefix>_LIVE` as {"test": …, "live": …}, leaving out unset ones."""
    found = {mode: _optional(f"{prefix}_{mode.upper()}") for mode in ("test", "live")}
    return {mode: value for mode, value in found.items() if value}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process; tests call `get_settings.cache_clear()` after changing env."""
    return Settings(
        table_name=_optional("LEARNFLOW_TABLE"),
        region=_optional("AWS_REGION") or _optional("AWS_DEFAULT_REGION") or "us-east-1",
        sender_email=_optional("LEARNFLOW_SENDER_EMAIL") or "no-reply@learnflow.com",
        stripe_secret_parameters=_by_mode("LEARNFLOW_STRIPE_SECRET_PARAMETER"),
        stripe_secret_keys=_by_mode("LEARNFLOW_STRIPE_SECRET_KEY"),
        stripe_api_base=_optional("LEARNFLOW_STRIPE_API_BASE"),
        service_name=_optional("POWERTOOLS_SERVICE_NAME") or "learnflow",
    )
