"""Accounts and their API keys in the single table (the authorizer's data and the CLI's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from botocore.exceptions import ClientError

from learnflow.db import keys
from learnflow.db.transactions import write_transaction
from learnflow.keys import Kind
from learnflow.tenancy import Mode

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

Plan = Literal["standard", "pro", "enterprise"]
KeyStatus = Literal["active", "revoked"]

PLANS: Final[tuple[Plan, ...]] = ("standard", "pro", "enterprise")
# Requests a minute per plan (docs/api.md §7); an enterprise account carries its own number.
PLAN_RATE_LIMITS: Final[dict[str, int]] = {"standard": 60, "pro": 300}

ACCOUNT_TYPE: Final = "account"
KEY_TYPE: Final = "api_key"
KEY_POINTER_TYPE: Final = "api_key_id"

_CONDITION_FAILED = "ConditionalCheckFailedException"
_GSI1 = "GSI1"


class AccountStoreError(Exception):
    """A request the account store refuses; the message is safe to show an operator."""


class AccountNotFoundError(AccountStoreError):
    pass


class ApiKeyNotFoundError(AccountStoreError):
    pass


class ApiKeyStateError(AccountStoreError):
    """The key cannot do this in its present state (e.g. rolling a revoked key)."""


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    plan: Plan
    rate_limit: int  # requests a minute
    created_at: str  # ISO-8601 UTC
    api_gateway_key_id: str | None = None
    # Not a credential: with the API's key source AUTHORIZER, API Gateway ignores x-api-key
    # headers, so this value only names the account's usage plan key to API Gateway.
    api_gateway_key_value: str | None = None
    usage_plan_id: str | None = None  # where its API Gateway key is (own plan if enterprise)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as stored: never its secret; the item is found by the secret's hash.

    `plan`, `rate_limit` and `api_gateway_key_value` are copies of the account's, so that the
    authorizer decides with one GetItem.
    """

    id: str
    account_id: str
    mode: Mode
    kind: Kind
    permissions: tuple[str, ...]  # ("*",) for a secret key
    status: KeyStatus
    last4: str
    created_at: str  # ISO-8601 UTC
    plan: Plan
    rate_limit: int
    api_gateway_key_value: str | None = None
    # Unix seconds; also the table's TTL attribute, so DynamoDB eventually deletes a rolled key
    # (eventually: days, and never in moto), which is why `usable_at` checks it in code.
    expires_at: int | None = None
    revoked_at: str | None = None  # ISO-8601 UTC

    def state_at(self, now: float) -> Literal["active", "revoked", "expired"]:
        if self.status == "revoked":
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def usable_at(self, now: float) -> bool:
        return self.state_at(now) == "active"


class AccountRepository:
    """Accounts, keys (by secret hash), a pointer per key id, and GSI1 listing an account's keys."""

    def __init__(self, table: Table) -> None:
        self._table = table

    # --- accounts ---

    def create_account(self, account: Account) -> None:
        try:
            self._table.put_item(
                Item=_account_item(account), ConditionExpression="attribute_not_exists(PK)"
            )
        except ClientError as error:
            if _code(error) == _CONDITION_FAILED:
                raise AccountStoreError(f"account {account.id} already exists") from None
            raise

    def get_account(self, account_id: str) -> Account:
        item = self._table.get_item(Key=keys.account(account_id), ConsistentRead=True).get("Item")
        if not item or item.get(keys.TYPE_ATTRIBUTE) != ACCOUNT_TYPE:
            raise AccountNotFoundError(f"no such account: {account_id}")
        return _account_from_item(item)

    # --- keys ---

    def create_key(self, key: ApiKey, secret_hash: str) -> None:
        """Store a new key and its id pointer, in one transaction, if its account exists."""
        self._transact(
            [
                {
                    "ConditionCheck": {
                        "TableName": self._table.name,
                        "Key": self._serialize(keys.account(key.account_id)),
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                },
                self._put_new(_key_item(key, secret_hash)),
                self._put_new(_pointer_item(key, secret_hash)),
            ],
            failures={0: AccountNotFoundError(f"no such account: {key.account_id}")},
        )

    def find_key(self, secret_hash: str) -> ApiKey | None:
        """The key whose secret hashes to `secret_hash`: the authorizer's one read.

        Eventually consistent on purpose: half the cost of a strong read, and the only staleness
        it adds (a key used within a second of its creation or revocation) is far inside the 60 s
        for which API Gateway already caches the authorizer's answer.
        """
        item = self._table.get_item(Key=keys.api_key(secret_hash)).get("Item")
        if not item or item.get(keys.TYPE_ATTRIBUTE) != KEY_TYPE:
            return None
        return _key_from_item(item)

    def get_key(self, key_id: str) -> ApiKey:
        return self._load_key(key_id)[0]

    def list_keys(self, account_id: str) -> list[ApiKey]:
        """Every key of the account, oldest first (key ids sort in creation order)."""
        found: list[ApiKey] = []
        start: dict[str, Any] | None = None
        # An account holds a handful of keys; the bound only stops a runaway loop.
        for _ in range(1000):
            request: dict[str, Any] = {
                "IndexName": _GSI1,
                "KeyConditionExpression": "#pk = :pk",
                "ExpressionAttributeNames": {"#pk": keys.GSI[_GSI1][0]},
                "ExpressionAttributeValues": {":pk": keys.account_keys_partition(account_id)},
            }
            if start:
                request["ExclusiveStartKey"] = start
            page = self._table.query(**request)
            found.extend(_key_from_item(item) for item in page.get("Items", []))
            start = cast("dict[str, Any] | None", page.get("LastEvaluatedKey"))
            if not start:
                break
        return found

    def revoke_key(self, key_id: str, revoked_at: str) -> ApiKey:
        """Mark the key revoked; revoking a revoked key changes nothing and returns it."""
        _, secret_hash = self._load_key(key_id)
        try:
            result = self._table.update_item(
                Key=keys.api_key(secret_hash),
                UpdateExpression="SET #status = :revoked, revoked_at = :at",
                ConditionExpression="attribute_exists(PK) AND #status = :active",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":revoked": "revoked",
                    ":active": "active",
                    ":at": revoked_at,
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _code(error) != _CONDITION_FAILED:
                raise
            return self._load_key(key_id)[0]
        return _key_from_item(result["Attributes"])

    def roll_key(
        self, key_id: str, new_key: ApiKey, new_secret_hash: str, old_expires_at: int
    ) -> tuple[ApiKey, ApiKey]:
        """Store `new_key` and set the old key to expire at `old_expires_at`, atomically.

        Only an active key that was never rolled can be rolled; returns (old, new).
        """
        old, old_hash = self._load_key(key_id)
        expiry = {
            "UpdateExpression": "SET #ttl = :exp",
            "ExpressionAttributeNames": {"#ttl": keys.TTL_ATTRIBUTE},
        }
        self._transact(
            [
                {
                    "Update": {
                        "TableName": self._table.name,
                        "Key": self._serialize(keys.api_key(old_hash)),
                        **expiry,
                        "ConditionExpression": (
                            "attribute_exists(PK) AND #status = :active "
                            "AND attribute_not_exists(#ttl)"
                        ),
                        "ExpressionAttributeNames": {
                            "#ttl": keys.TTL_ATTRIBUTE,
                            "#status": "status",
                        },
                        "ExpressionAttributeValues": self._serialize(
                            {":exp": old_expires_at, ":active": "active"}
                        ),
                    }
                },
                {
                    "Update": {
                        "TableName": self._table.name,
                        "Key": self._serialize(keys.api_key_id(key_id)),
                        **expiry,
                        "ExpressionAttributeValues": self._serialize({":exp": old_expires_at}),
                    }
                },
                self._put_new(_key_item(new_key, new_secret_hash)),
                self._put_new(_pointer_item(new_key, new_secret_hash)),
            ],
            failures={
                0: ApiKeyStateError(f"key {key_id} is revoked, expired or already rolled"),
            },
        )
        return replace(old, expires_at=old_expires_at), new_key

    # --- helpers ---

    def _load_key(self, key_id: str) -> tuple[ApiKey, str]:
        pointer = self._table.get_item(Key=keys.api_key_id(key_id), ConsistentRead=True).get("Item")
        if not pointer or pointer.get(keys.TYPE_ATTRIBUTE) != KEY_POINTER_TYPE:
            raise ApiKeyNotFoundError(f"no such API key: {key_id}")
        secret_hash = str(pointer["secret_hash"])
        item = self._table.get_item(Key=keys.api_key(secret_hash), ConsistentRead=True).get("Item")
        if not item or item.get(keys.TYPE_ATTRIBUTE) != KEY_TYPE:
            # The TTL deleted the key item of a rolled key before its pointer.
            raise ApiKeyNotFoundError(f"no such API key: {key_id}")
        return _key_from_item(item), secret_hash

    @staticmethod
    def _serialize(values: Mapping[str, Any]) -> dict[str, Any]:
        # The Table's client belongs to a boto3 resource, which converts plain Python values to
        # DynamoDB's typed form itself (for transactions too): values stay plain here.
        return dict(values)

    def _put_new(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table.name,
                "Item": self._serialize(item),
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }

    def _transact(
        self, items: Sequence[Mapping[str, Any]], failures: Mapping[int, AccountStoreError]
    ) -> None:
        """One transaction; a failed condition on item i raises `failures[i]` (or a generic
        error for a clash of new ids, which the ids' 95 random bits make a practical never)."""
        reasons = write_transaction(self._table, [dict(item) for item in items])
        if reasons is None:
            return
        for index, reason in enumerate(reasons):
            if reason == "ConditionalCheckFailed":
                raise failures.get(
                    index, AccountStoreError("a new id clashed with a stored one; retry")
                )
        raise AccountStoreError("the transaction could not commit; retry")


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _without_none(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in item.items() if value is not None}


def _account_item(account: Account) -> dict[str, Any]:
    return _without_none(
        {
            **keys.account(account.id),
            keys.TYPE_ATTRIBUTE: ACCOUNT_TYPE,
            "id": account.id,
            "name": account.name,
            "plan": account.plan,
            "rate_limit": account.rate_limit,
            "created_at": account.created_at,
            "api_gateway_key_id": account.api_gateway_key_id,
            "api_gateway_key_value": account.api_gateway_key_value,
            "usage_plan_id": account.usage_plan_id,
        }
    )


def _account_from_item(item: Mapping[str, Any]) -> Account:
    return Account(
        id=str(item["id"]),
        name=str(item["name"]),
        plan=cast("Plan", str(item["plan"])),
        rate_limit=int(item["rate_limit"]),
        created_at=str(item["created_at"]),
        api_gateway_key_id=_optional_str(item, "api_gateway_key_id"),
        api_gateway_key_value=_optional_str(item, "api_gateway_key_value"),
        usage_plan_id=_optional_str(item, "usage_plan_id"),
    )


def _key_item(key: ApiKey, secret_hash: str) -> dict[str, Any]:
    index_pk, index_sk = keys.GSI[_GSI1]
    return _without_none(
        {
            **keys.api_key(secret_hash),
            keys.TYPE_ATTRIBUTE: KEY_TYPE,
            "id": key.id,
            "account_id": key.account_id,
            "mode": key.mode,
            "kind": key.kind,
            # A list, not a string set: DynamoDB has no empty sets
            "permissions": list(key.permissions),
            "status": key.status,
            "last4": key.last4,
            "created_at": key.created_at,
            "plan": key.plan,
            "rate_limit": key.rate_limit,
            "api_gateway_key_value": key.api_gateway_key_value,
            keys.TTL_ATTRIBUTE: key.expires_at,
            "revoked_at": key.revoked_at,
            index_pk: keys.account_keys_partition(key.account_id),
            index_sk: key.id,
        }
    )


def _pointer_item(key: ApiKey, secret_hash: str) -> dict[str, Any]:
    return _without_none(
        {
            **keys.api_key_id(key.id),
            keys.TYPE_ATTRIBUTE: KEY_POINTER_TYPE,
            "id": key.id,
            "account_id": key.account_id,
            "secret_hash": secret_hash,
            keys.TTL_ATTRIBUTE: key.expires_at,
        }
    )


def _key_from_item(item: Mapping[str, Any]) -> ApiKey:
    expires_at = item.get(keys.TTL_ATTRIBUTE)
    return ApiKey(
        id=str(item["id"]),
        account_id=str(item["account_id"]),
        mode=cast("Mode", str(item["mode"])),
        kind=cast("Kind", str(item["kind"])),
        permissions=tuple(str(name) for name in item.get("permissions", [])),
        status=cast("KeyStatus", str(item["status"])),
        last4=str(item["last4"]),
        created_at=str(item["created_at"]),
        plan=cast("Plan", str(item["plan"])),
        rate_limit=int(item["rate_limit"]),
        api_gateway_key_value=_optional_str(item, "api_gateway_key_value"),
        expires_at=None if expires_at is None else int(expires_at),
        revoked_at=_optional_str(item, "revoked_at"),
    )


def _optional_str(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value)
