"""Account and API key administration: the Python API behind `learnflow accounts|keys`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from learnflow import permissions as perms
from learnflow.db.accounts import (
    PLAN_RATE_LIMITS,
    PLANS,
    Account,
    AccountRepository,
    AccountStoreError,
    ApiKey,
)
from learnflow.ids import new_id
from learnflow.jsonio import iso
from learnflow.keys import MODES, Kind, generate_secret, hash_secret, last4, redacted
from learnflow.ratelimit import gateway_throttle
from learnflow.tenancy import Mode

if TYPE_CHECKING:
    from mypy_boto3_apigateway.client import APIGatewayClient
    from mypy_boto3_apigateway.type_defs import ApiStageTypeDef
    from mypy_boto3_dynamodb.service_resource import Table

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 200
# Each tenant-minute's count is one DynamoDB item (learnflow.ratelimit), and one item takes at most
# ~1,000 writes a second: 60,000 a minute is the most a single window can count. Beyond it the
# counter would need sharding (RL#…#<window>#<n>).
MAX_ENTERPRISE_LIMIT = 60_000
# A rolled key may stay usable for at most 30 days (Stripe allows 7; operators may need longer).
MAX_EXPIRE_OLD_IN = 30 * 24 * 3600


class AdminError(Exception):
    """A request the administration API refuses; its message is safe to print."""


@contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except AccountStoreError as error:
        raise AdminError(str(error)) from None


class Admin:
    """Creates accounts (with their API Gateway key and usage plan) and issues, lists, revokes and
    rolls their API keys.

    table: the LearnFlow table; apigateway: an API Gateway client, or None to skip API Gateway
    (the local stack has none); usage_plans: plan name ("standard", "pro") → usage plan id.
    """

    def __init__(
        self,
        table: Table,
        apigateway: APIGatewayClient | None = None,
        usage_plans: dict[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._repository = AccountRepository(table)
        self._apigateway = apigateway
        self._usage_plans = dict(usage_plans or {})
        self._clock = clock

    # --- accounts ---

    def create_account(self, name: str, plan: str, limit: int | None = None) -> dict[str, Any]:
        """A new account on `plan`; `limit` (requests a minute) is for enterprise accounts only."""
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise AdminError(f"an account name is 1 to {MAX_NAME_LENGTH} characters")
        if plan not in PLANS:
            raise AdminError(f"unknown plan {plan!r}: choose one of {', '.join(PLANS)}")
        rate_limit = self._rate_limit(plan, limit)
        account = Account(
            id=new_id("acct"),
            name=name,
            plan=plan,
            rate_limit=rate_limit,
            created_at=self._now_iso(),
        )
        if self._apigateway is None:
            log.debug("no API Gateway configured: %s gets no API Gateway key", account.id)
            with _store_errors():
                self._repository.create_account(account)
            return _account_public(account)
        return _account_public(self._create_with_gateway(self._apigateway, account))

    def _rate_limit(self, plan: str, limit: int | None) -> int:
        if plan != "enterprise":
            if limit is not None:
                raise AdminError(
                    f"a {plan} account has the plan's limit; --limit is enterprise only"
                )
            return PLAN_RATE_LIMITS[plan]
        if limit is None:
            raise AdminError("an enterprise account needs a limit (requests a minute)")
        if not 1 <= limit <= MAX_ENTERPRISE_LIMIT:
            raise AdminError(
                f"an enterprise limit is 1 to {MAX_ENTERPRISE_LIMIT} requests a minute"
            )
        return limit

    def _create_with_gateway(self, apigateway: APIGatewayClient, account: Account) -> Account:
        """One API Gateway key per account (not per LearnFlow key: the region holds at most
        10,000), in its plan's usage plan; an enterprise account gets a usage plan of its own."""
        if account.plan == "enterprise":
            # The new plan covers the same API stages as the tier plans.
            template_plan = self._usage_plans.get("standard") or self._usage_plans.get("pro")
            if not template_plan:
                raise AdminError(
                    "an enterprise plan copies the standard usage plan's stages: "
                    "give the standard usage plan id"
                )
        elif not self._usage_plans.get(account.plan):
            raise AdminError(f"no usage plan id for the {account.plan} plan")
        api_key = apigateway.create_api_key(
            name=account.id,
            description=f"LearnFlow account {account.id} ({account.plan})",
            enabled=True,
            tags={"learnflow:account": account.id},
        )
        key_id, key_value = api_key["id"], api_key["value"]
        usage_plan_id: str | None = None
        own_plan: str | None = None
        try:
            if account.plan == "enterprise":
                own_plan = self._create_enterprise_plan(apigateway, account)
                usage_plan_id = own_plan
            else:
                usage_plan_id = self._usage_plans[account.plan]
            apigateway.create_usage_plan_key(
                usagePlanId=usage_plan_id, keyId=key_id, keyType="API_KEY"
            )
            stored = Account(
                id=account.id,
                name=account.name,
                plan=account.plan,
                rate_limit=account.rate_limit,
                created_at=account.created_at,
                api_gateway_key_id=key_id,
                api_gateway_key_value=key_value,
                usage_plan_id=usage_plan_id,
            )
            with _store_errors():
                self._repository.create_account(stored)
        except BaseException:
            # Leave nothing half-made behind: an orphan key would count against the quota.
            self._undo_gateway(apigateway, key_id, usage_plan_id, own_plan)
            raise
        return stored

    def _create_enterprise_plan(self, apigateway: APIGatewayClient, account: Account) -> str:
        template_id = self._usage_plans.get("standard") or self._usage_plans["pro"]
        template = apigateway.get_usage_plan(usagePlanId=template_id)
        stages: list[ApiStageTypeDef] = [
            {"apiId": stage["apiId"], "stage": stage["stage"]}
            for stage in template.get("apiStages", [])
            if "apiId" in stage and "stage" in stage
        ]
        rate, burst = gateway_throttle(account.rate_limit)
        created = apigateway.create_usage_plan(
            name=f"learnflow-enterprise-{account.id}",
            description=f"Enterprise account {account.id}, {account.rate_limit} requests a minute",
            apiStages=stages,
            # Sized as the tier plans are (learnflow.ratelimit.gateway_throttle): a guard that
            # never refuses what the exact per-minute limit allows.
            throttle={"rateLimit": rate, "burstLimit": burst},
            tags={"learnflow:account": account.id},
        )
        return created["id"]

    @staticmethod
    def _undo_gateway(
        apigateway: APIGatewayClient,
        key_id: str,
        usage_plan_id: str | None,
        own_plan: str | None,
    ) -> None:
        steps: list[Callable[[], object]] = []
        if usage_plan_id:
            steps.append(
                lambda: apigateway.delete_usage_plan_key(usagePlanId=usage_plan_id, keyId=key_id)
            )
        if own_plan:
            steps.append(lambda: apigateway.delete_usage_plan(usagePlanId=own_plan))
        steps.append(lambda: apigateway.delete_api_key(apiKey=key_id))
        for step in steps:
            try:
                step()
            except Exception:  # best effort: the original error is what matters
                log.warning("could not clean up API Gateway resources of a failed account")

    # --- keys ---

    def create_key(
        self, account_id: str, mode: str, permissions: list[str] | None = None
    ) -> dict[str, Any]:
        """A new key; restricted when `permissions` is given. The result holds `secret`, which is
        shown this once and stored nowhere."""
        if mode not in MODES:
            raise AdminError(f"unknown mode {mode!r}: choose live or test")
        kind: Kind = "secret" if permissions is None else "restricted"
        granted = self._permissions(permissions)
        with _store_errors():
            account = self._repository.get_account(account_id)
            secret, key = self._new_key(account, mode, kind, granted)
            self._repository.create_key(key, hash_secret(secret))
        return {**self._key_public(key), "secret": secret}

    @staticmethod
    def _permissions(permissions: list[str] | None) -> tuple[str, ...]:
        if permissions is None:
            return (perms.WILDCARD,)
        try:
            granted = perms.validate(name.strip() for name in permissions)
        except ValueError as error:
            raise AdminError(
                f"{error}; known: {', '.join(sorted(perms.ALL_PERMISSIONS))}"
            ) from None
        if not granted:
            raise AdminError("a restricted key needs at least one permission")
        return tuple(sorted(granted))

    def _new_key(
        self, account: Account, mode: Mode, kind: Kind, granted: tuple[str, ...]
    ) -> tuple[str, ApiKey]:
        secret = generate_secret(kind, mode)
        key = ApiKey(
            id=new_id("key"),
            account_id=account.id,
            mode=mode,
            kind=kind,
            permissions=granted,
            status="active",
            last4=last4(secret),
            created_at=self._now_iso(),
            plan=account.plan,
            rate_limit=account.rate_limit,
            api_gateway_key_value=account.api_gateway_key_value,
        )
        return secret, key

    def list_keys(self, account_id: str) -> list[dict[str, Any]]:
        """The account's keys, oldest first, without secrets or hashes."""
        with _store_errors():
            self._repository.get_account(account_id)
            return [self._key_public(key) for key in self._repository.list_keys(account_id)]

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        """Revoke at once in the table (API Gateway may serve a cached Allow for up to 60 s)."""
        with _store_errors():
            return self._key_public(self._repository.revoke_key(key_id, self._now_iso()))

    def roll_key(self, key_id: str, expire_old_in: int = 0) -> dict[str, Any]:
        """A new key with the same account, mode and permissions; the old one stops working
        `expire_old_in` seconds from now (at once by default)."""
        if not 0 <= expire_old_in <= MAX_EXPIRE_OLD_IN:
            raise AdminError(f"--expire-old-in is 0 to {MAX_EXPIRE_OLD_IN} seconds")
        with _store_errors():
            old = self._repository.get_key(key_id)
            if not old.usable_at(self._clock()) or old.expires_at is not None:
                raise AdminError(f"key {key_id} is revoked, expired or already rolled")
            account = self._repository.get_account(old.account_id)
            secret, new = self._new_key(account, old.mode, old.kind, old.permissions)
            expires_at = int(self._clock()) + expire_old_in
            rolled, new = self._repository.roll_key(key_id, new, hash_secret(secret), expires_at)
        return {**self._key_public(new), "secret": secret, "rolled_from": self._key_public(rolled)}

    # --- shapes ---

    def _key_public(self, key: ApiKey) -> dict[str, Any]:
        return {
            "id": key.id,
            "object": "api_key",
            "account_id": key.account_id,
            "mode": key.mode,
            "livemode": key.mode == "live",
            "kind": key.kind,
            "permissions": list(key.permissions),
            "status": key.state_at(self._clock()),
            "redacted": redacted(key.kind, key.mode, key.last4),
            "last4": key.last4,
            "created_at": key.created_at,
            "expires_at": None if key.expires_at is None else _iso_seconds(key.expires_at),
            "revoked_at": key.revoked_at,
        }

    def _now_iso(self) -> str:
        return _iso_seconds(self._clock())


def _iso_seconds(seconds: float) -> str:
    return iso(datetime.fromtimestamp(seconds, UTC))


def _account_public(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "object": "account",
        "name": account.name,
        "plan": account.plan,
        "rate_limit": account.rate_limit,
        "api_gateway_key_id": account.api_gateway_key_id,
        "usage_plan_id": account.usage_plan_id,
        "created_at": account.created_at,
    }
