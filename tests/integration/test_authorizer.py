"""The TOKEN authorizer against keys in moto's table, fed events/authorizer_token.json."""

from __future__ import annotations

import io
import json
import logging
import types
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest
from botocore.exceptions import ReadTimeoutError

from functions.authorizer import authorize
from learnflow import clients
from learnflow.observability import logger
from learnflow_cli.admin.service import Admin
from learnflow_cli.template import load_template
from tests.support.aws import SESSION
from tests.support.events import LoadEvent
from tests.support.handlers import BareContext

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

ALLOW_ALL = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v2/*/*"
BODY = "Q" * 40


@pytest.fixture
def admin(table: Table) -> Admin:
    return Admin(table, None, {})


@pytest.fixture
def account(admin: Admin) -> dict[str, Any]:
    return admin.create_account("Acme", "standard")


@pytest.fixture
def dynamodb_calls(table: Table) -> list[str]:
    """Every DynamoDB operation the code under test sends through the function's client."""
    calls: list[str] = []

    def count(model: Any, **_: Any) -> None:
        calls.append(model.name)

    clients.key_store().meta.client.meta.events.register("before-call.dynamodb", count)
    return calls


def invoke(load_event: LoadEvent, token: str | None, **overrides: Any) -> dict[str, Any]:
    event = load_event("authorizer_token", **overrides)
    if token is None:
        del event["authorizationToken"]
    else:
        event["authorizationToken"] = token
    return authorize.lambda_handler(event, BareContext())  # type: ignore[arg-type]


def refused(load_event: LoadEvent, token: str | None, **overrides: Any) -> bool:
    with pytest.raises(Exception) as error:  # noqa: PT011 - API Gateway needs exactly Exception
        invoke(load_event, token, **overrides)
    return type(error.value) is Exception and str(error.value) == "Unauthorized"


def freeze_clock(monkeypatch: pytest.MonkeyPatch, now: float) -> None:
    monkeypatch.setattr(authorize, "time", types.SimpleNamespace(time=lambda: now))


# --- accepted keys ---


def test_secret_test_key_is_allowed_on_the_whole_api(
    load_event: LoadEvent, admin: Admin, account: dict[str, Any]
) -> None:
    key = admin.create_key(account["id"], "test")
    policy = invoke(load_event, f"Bearer {key['secret']}")
    assert policy["principalId"] == account["id"]
    statement = policy["policyDocument"]["Statement"]
    assert statement == [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": [ALLOW_ALL]}
    ]
    assert policy["context"] == {
        "account_id": account["id"],
        "mode": "test",
        "plan": "standard",
        "rate_limit": "60",
        "key_id": key["id"],
        "key_kind": "secret",
        "permissions": "*",
    }
    assert "usageIdentifierKey" not in policy  # no API Gateway key for this account


def test_live_key_puts_live_mode_in_the_context(
    load_event: LoadEvent, admin: Admin, account: dict[str, Any]
) -> None:
    live = admin.create_key(account["id"], "live")
    test = admin.create_key(account["id"], "test")
    assert invoke(load_event, f"Bearer {live['secret']}")["context"]["mode"] == "live"
    assert invoke(load_event, f"Bearer {test['secret']}")["context"]["mode"] == "test"


def test_restricted_key_carries_its_permissions(
    load_event: LoadEvent, admin: Admin, account: dict[str, Any]
) -> None:
    key = admin.create_key(account["id"], "live", ["students:write", "courses:read"])
    assert key["secret"].startswith("rk_live_")
    context = invoke(load_event, f"Bearer {key['secret']}")["context"]
    assert context["key_kind"] == "restricted"
    assert context["permissions"] == "courses:read,students:write"
    assert context["mode"] == "live"


def test_each_key_maps_to_its_own_account_and_plan(load_event: LoadEvent, admin: Admin) -> None:
    first = admin.create_account("First", "standard")
    second = admin.create_account("Second", "enterprise", limit=1200)
    first_key = admin.create_key(first["id"], "test")
    second_key = admin.create_key(second["id"], "test")
    context = invoke(load_event, f"Bearer {second_key['secret']}")["context"]
    assert (context["account_id"], context["plan"], context["rate_limit"]) == (
        second["id"],
        "enterprise",
        "1200",
    )
    assert invoke(load_event, f"Bearer {first_key['secret']}")["principalId"] == first["id"]


def test_usage_identifier_key_is_the_accounts_api_gateway_key(
    load_event: LoadEvent, table: Table
) -> None:
    apigateway = SESSION.client("apigateway")
    plan = apigateway.create_usage_plan(
        name="standard", throttle={"rateLimit": 1, "burstLimit": 60}
    )
    admin = Admin(table, apigateway, {"standard": plan["id"]})
    account = admin.create_account("Gateway", "standard")
    key = admin.create_key(account["id"], "test")
    expected = apigateway.get_api_key(apiKey=account["api_gateway_key_id"], includeValue=True)
    policy = invoke(load_event, f"Bearer {key['secret']}")
    assert policy["usageIdentifierKey"] == expected["value"]


def test_one_eventually_consistent_get_item_per_call(
    load_event: LoadEvent, admin: Admin, account: dict[str, Any], dynamodb_calls: list[str]
) -> None:
    key = admin.create_key(account["id"], "test")
    dynamodb_calls.clear()
    for _ in range(3):
        invoke(load_event, f"Bearer {key['secret']}")
    assert dynamodb_calls == ["GetItem"] * 3


# --- refused keys: always the exact "Unauthorized" error, never a Deny or another error ---


def test_unknown_key_is_unauthorized(
    load_event: LoadEvent, account: dict[str, Any], dynamodb_calls: list[str]
) -> None:
    assert refused(load_event, f"Bearer sk_test_{BODY}")
    assert dynamodb_calls == ["GetItem"]


def test_revoked_key_is_unauthorized(
    load_event: LoadEvent, admin: Admin, account: dict[str, Any]
) -> None:
    key = admin.create_key(account["id"], "test")
    invoke(load_event, f"Bearer {key['secret']}")
    admin.revoke_key(key["id"])
    assert refused(load_event, f"Bearer {key['secret']}")


def test_expired_key_is_unauthorized(
    load_event: LoadEvent,
    admin: Admin,
    account: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = admin.create_key(account["id"], "test")
    rolled = admin.roll_key(key["id"], expire_old_in=0)
    assert refused(load_event, f"Bearer {key['secret']}")
    assert invoke(load_event, f"Bearer {rolled['secret']}")["context"]["key_id"] == rolled["id"]


def test_rolled_key_works_until_its_expiry_then_stops(
    load_event: LoadEvent,
    admin: Admin,
    account: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = admin.create_key(account["id"], "live", ["courses:read"])
    rolled = admin.roll_key(key["id"], expire_old_in=3600)
    expires_at = rolled["rolled_from"]["expires_at"]
    old, new = f"Bearer {key['secret']}", f"Bearer {rolled['secret']}"
    assert invoke(load_event, old)["context"]["key_id"] == key["id"]
    new_context = invoke(load_event, new)["context"]
    assert (new_context["mode"], new_context["permissions"]) == ("live", "courses:read")

    table_expiry = int(
        clients.table().get_item(Key=_key_of(key["secret"]))["Item"]["expires_at"]  # type: ignore[arg-type]
    )
    assert expires_at.startswith("20")  # ISO in the public form, Unix seconds in the table
    freeze_clock(monkeypatch, table_expiry - 1)
    assert invoke(load_event, old)["context"]["key_id"] == key["id"]
    freeze_clock(monkeypatch, table_expiry)
    assert refused(load_event, old)
    assert invoke(load_event, new)["context"]["key_id"] == rolled["id"]


def _key_of(secret: str) -> dict[str, str]:
    from learnflow.db import keys as table_keys  # noqa: PLC0415
    from learnflow.keys import hash_secret  # noqa: PLC0415

    return table_keys.api_key(hash_secret(secret))


MALFORMED = [
    None,
    "",
    "Bearer",
    f"bearer sk_test_{BODY}",
    f"Basic sk_test_{BODY}",
    f"Bearer  sk_test_{BODY}",
    f"Bearer sk_test_{BODY} extra",
    f"sk_test_{BODY}",
    "Bearer sk_test_tooshort",
    f"Bearer sk_test_{BODY[:-1]}%",
]


def test_malformed_header_is_unauthorized_without_a_read(
    load_event: LoadEvent, dynamodb_calls: list[str]
) -> None:
    # One test, not one per header: each test pays for a fresh moto table.
    for token in MALFORMED:
        assert refused(load_event, token), token
    assert dynamodb_calls == []


def test_wrong_prefix_is_unauthorized_even_for_a_real_secret_body(
    load_event: LoadEvent, admin: Admin, account: dict[str, Any]
) -> None:
    body = admin.create_key(account["id"], "test")["secret"].removeprefix("sk_test_")
    for prefix in ("pk_test_", "sk_prod_", "xk_live_", "SK_TEST_"):
        assert refused(load_event, f"Bearer {prefix}{body}"), prefix


def test_other_mode_or_kind_prefix_on_a_real_body_is_unauthorized(
    load_event: LoadEvent, admin: Admin, account: dict[str, Any]
) -> None:
    secret = admin.create_key(account["id"], "test")["secret"]
    body = secret.removeprefix("sk_test_")
    for prefix in ("sk_live_", "rk_test_", "rk_live_"):
        assert refused(load_event, f"Bearer {prefix}{body}")


def test_malformed_method_arn_is_unauthorized_not_an_error(
    load_event: LoadEvent, admin: Admin, account: dict[str, Any]
) -> None:
    key = admin.create_key(account["id"], "test")
    assert refused(load_event, f"Bearer {key['secret']}", methodArn="not-an-arn")


def template_function(name: str) -> dict[str, Any]:
    """A function's properties in template.yaml, with the Globals it inherits."""
    template = load_template()
    merged = dict(template["Globals"]["Function"])
    merged.update(template["Resources"][name]["Properties"])
    return merged


def unavailable(load_event: LoadEvent, token: str) -> bool:
    """API Gateway's AUTHORIZER_FAILURE: any error but "Unauthorized" (template.yaml: 503)."""
    with pytest.raises(Exception) as error:  # noqa: PT011 - API Gateway needs exactly Exception
        invoke(load_event, token)
    return type(error.value) is Exception and str(error.value) == authorize.UNAVAILABLE


def test_a_dynamodb_failure_is_unavailable_never_unauthorized(
    load_event: LoadEvent, admin: Admin, account: dict[str, Any], table: Table
) -> None:
    key = admin.create_key(account["id"], "test")
    table.delete()
    assert unavailable(load_event, f"Bearer {key['secret']}")


def test_a_slow_key_store_is_unavailable_within_the_authorizers_timeout(
    load_event: LoadEvent,
    admin: Admin,
    account: dict[str, Any],
    table: Table,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = admin.create_key(account["id"], "test")
    attempts: list[str] = []

    def time_out(request: Any, **_: Any) -> None:
        attempts.append(request.url)
        raise ReadTimeoutError(endpoint_url=request.url)

    clients.key_store().meta.client.meta.events.register("before-send.dynamodb", time_out)
    assert unavailable(load_event, f"Bearer {key['secret']}")
    retries: dict[str, Any] = getattr(clients.KEY_STORE_CONFIG, "retries")  # noqa: B009
    assert len(attempts) == retries["total_max_attempts"]


def test_the_key_stores_retries_and_timeouts_fit_inside_the_authorizers_timeout() -> None:
    """Worst case: every attempt connects and reads up to its timeouts, and standard mode waits
    at most 1 s between the first attempts (its backoff is random, up to 2**attempt s)."""
    config = clients.KEY_STORE_CONFIG
    attempts = int(getattr(config, "retries")["total_max_attempts"])  # noqa: B009
    per_attempt = float(getattr(config, "connect_timeout")) + float(getattr(config, "read_timeout"))  # noqa: B009
    backoff = sum(2.0**n for n in range(attempts - 1))
    timeout = template_function("AuthorizerFunction")["Timeout"]
    assert attempts * per_attempt + backoff < timeout


def test_an_item_of_another_type_under_a_key_hash_is_not_a_key(
    load_event: LoadEvent, table: Table
) -> None:
    secret = f"sk_test_{BODY}"
    table.put_item(Item={**_key_of(secret), "type": "course", "id": "crs_x"})
    assert refused(load_event, f"Bearer {secret}")


# --- nothing secret is logged ---


@pytest.fixture
def captured_logs() -> Iterator[tuple[io.StringIO, list[logging.LogRecord]]]:
    """What the function's Logger writes (formatted, as CloudWatch would get it) and the raw
    records (before the redacting formatter), at DEBUG."""
    handler = cast("logging.StreamHandler[Any]", logger.registered_handler)
    stream = io.StringIO()
    previous_stream = handler.setStream(stream)
    records: list[logging.LogRecord] = []

    def keep(record: logging.LogRecord) -> bool:
        records.append(record)
        return True

    previous_level = logger.log_level
    handler.addFilter(keep)
    logger.setLevel(logging.DEBUG)
    try:
        yield stream, records
    finally:
        handler.removeFilter(keep)
        logger.setLevel(previous_level)
        if previous_stream is not None:
            handler.setStream(previous_stream)


def test_no_secret_or_hash_appears_in_any_log_line(
    load_event: LoadEvent,
    admin: Admin,
    account: dict[str, Any],
    table: Table,
    captured_logs: tuple[io.StringIO, list[logging.LogRecord]],
) -> None:
    from learnflow.keys import hash_secret  # noqa: PLC0415

    stream, records = captured_logs
    good = admin.create_key(account["id"], "test")
    revoked = admin.create_key(account["id"], "live", ["courses:read"])
    admin.revoke_key(revoked["id"])
    unknown = f"sk_live_{BODY}"
    invoke(load_event, f"Bearer {good['secret']}")
    refused(load_event, f"Bearer {revoked['secret']}")
    refused(load_event, f"Bearer {unknown}")
    refused(load_event, f"Bearer {good['secret']}", methodArn="bad")
    table.delete()
    refused(load_event, f"Bearer {good['secret']}")

    output = stream.getvalue()
    raw = "\n".join(json.dumps(vars(record), default=str) for record in records)
    assert good["id"] in output  # the key id is logged, so the capture works
    assert len(records) >= 5
    for secret in (good["secret"], revoked["secret"], unknown):
        body = secret[8:]
        for text in (output, raw):
            assert body not in text
            assert hash_secret(secret) not in text
