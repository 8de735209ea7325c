"""A tenant: one account in one mode. Every piece of customer data belongs to exactly one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["live", "test"]


@dataclass(frozen=True, slots=True)
class Tenant:
    account_id: str
    mode: Mode

    @property
    def livemode(self) -> bool:
        return self.mode == "live"
