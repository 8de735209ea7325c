"""What the local stack's first request needs, prepared against its AWS endpoint: the table
(from the template's own definition), a REST API with the tier usage plans, the SES sender
identity and two demo accounts; and API Gateway's API key check against those plans."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from learnflow_cli import template as tpl
from learnflow_cli.local.aws import error_code

if TYPE_CHECKING:
    from mypy_boto3_apigateway.client import APIGatewayClient
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.service_resource import Table

    from learnflow_cli.local.aws import Aws

PLANS = ("standard", "pro")
MODES = ("test", "live")


@dataclass(slots=True)
class Provisioned:
    table_name: str
    stream_arn: str | None
    api_id: str | None  # None: the endpoint has no API Gateway (no API keys are checked)
    usage_plans: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def provision(
    aws: Aws, template: Mapping[str, Any], *, table_name: str, api_name: str
) -> Provisioned:
    """What the first request needs, prepared concurrently: the table (from the template's own
    definition) and the REST API with its two usage plans."""
    session = aws.session()
    dynamodb: DynamoDBClient = aws.client(session, "dynamodb")
    apigateway: APIGatewayClient = aws.client(session, "apigateway")
    definition = tpl.table_definition(template)
    result = Provisioned(table_name=table_name, stream_arn=None, api_id=None)

    def table() -> None:
        result.stream_arn = _create_table(dynamodb, definition, table_name, result.warnings)

    def api() -> None:
        try:
            result.api_id, result.usage_plans = _create_api(apigateway, template, api_name)
        except ClientError as error:
            result.warnings.append(
                f"no API Gateway at this endpoint ({error_code(error)}): "
                "API keys and usage plans are not checked"
            )

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="provision") as pool:
        for future in [pool.submit(table), pool.submit(api)]:
            future.result()
    return result


def create_sender_identity(aws: Aws, sender: str) -> str | None:
    """The SES identity the welcome e-mails are sent from; a warning when it cannot be made."""
    try:
        aws.client(aws.session(), "sesv2").create_email_identity(EmailIdentity=sender)
    except ClientError as error:
        if error_code(error) != "AlreadyExistsException":
            return f"could not create the SES identity {sender} ({error_code(error)})"
    return None


def _create_table(
    client: DynamoDBClient, definition: tpl.TableDefinition, name: str, warnings: list[str]
) -> str | None:
    try:
        client.create_table(**definition.create_table_kwargs(name))
        created = True
    except ClientError as error:
        if error_code(error) != "ResourceInUseException":
            raise
        created = False
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    if created and definition.ttl_attribute:
        try:
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={
                    "Enabled": True,
                    "AttributeName": definition.ttl_attribute,
                },
            )
        except ClientError:
            warnings.append("the endpoint does not support TTL on the table")
    description = client.describe_table(TableName=name)["Table"]
    stream = description.get("LatestStreamArn")
    if not stream:
        warnings.append(f"table {name} has no stream: welcome e-mails are not sent")
    return stream


def _create_api(
    client: APIGatewayClient, template: Mapping[str, Any], api_name: str
) -> tuple[str, dict[str, str]]:
    """A REST API standing for the template's (so usage plans can name its stage) and the tier
    usage plans with the template's throttles, reused when they already exist."""
    stage = tpl.stage_name(template)
    apis = client.get_rest_apis(limit=500).get("items", [])
    existing = [api for api in apis if api.get("name") == api_name]
    api_id = existing[0]["id"] if existing else client.create_rest_api(name=api_name)["id"]
    declared_plans = client.get_usage_plans(limit=500).get("items", [])
    plans_by_name = {plan.get("name"): plan["id"] for plan in declared_plans}
    plans: dict[str, str] = {}
    for logical_id, declared in tpl.usage_plans(template).items():
        tier = next((tier for tier in PLANS if tier in logical_id.lower()), None)
        if tier is None:
            continue
        name = f"{api_name}-{tier}"
        if name in plans_by_name:
            plans[tier] = str(plans_by_name[name])
            continue
        created = client.create_usage_plan(
            name=name,
            description=f"{tier.title()} tier (local stack)",
            apiStages=[{"apiId": api_id, "stage": stage}],
            throttle={"rateLimit": declared.rate_limit, "burstLimit": declared.burst_limit},
        )
        plans[tier] = created["id"]
    return api_id, plans


class ApiKeyChecker:
    """API Gateway's check of the authorizer's usageIdentifierKey: an enabled API key in a usage
    plan of this API's stage. Verdicts are kept a few seconds (API Gateway propagates key and
    plan changes with a delay too), so a request costs no extra round trips."""

    def __init__(self, client: APIGatewayClient, api_id: str, stage: str, ttl: float = 5) -> None:
        self._client = client
        self._stage = (api_id, stage)
        self._ttl = ttl
        self._lock = threading.Lock()
        self._verdicts: dict[str, tuple[str | None, float]] = {}

    def __call__(self, value: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            cached = self._verdicts.get(value)
        if cached is not None and cached[1] > now:
            return cached[0]
        verdict = self._check(value)
        with self._lock:
            self._verdicts[value] = (verdict, now + self._ttl)
        return verdict

    def _check(self, value: str) -> str | None:
        pages = self._client.get_paginator("get_api_keys").paginate(includeValues=True)
        keys = (item for page in pages for item in page.get("items", []))
        key = next((item for item in keys if item.get("value") == value), None)
        if key is None or not key.get("enabled", False) or "id" not in key:
            return None
        plans = self._client.get_usage_plans(keyId=key["id"], limit=500).get("items", [])
        for plan in plans:
            for stage in plan.get("apiStages", []):
                if (stage.get("apiId"), stage.get("stage")) == self._stage:
                    return key["id"]
        return None


# ------------------------------------------------------------------------- seeding


@dataclass(frozen=True, slots=True)
class SeededAccount:
    id: str
    name: str
    plan: str
    keys: dict[str, str]  # mode → secret


def seed(
    table: Table, apigateway: APIGatewayClient | None, usage_plans: Mapping[str, str]
) -> list[SeededAccount]:
    """Two demo accounts, Standard and Pro, each with a test and a live secret key."""
    from learnflow_cli.admin.service import Admin  # noqa: PLC0415 - imports the layer

    admin = Admin(table=table, apigateway=apigateway, usage_plans=dict(usage_plans))

    def one(plan: str) -> SeededAccount:
        name = f"Demo {plan.title()}"
        account = admin.create_account(name, plan)
        keys = {mode: str(admin.create_key(account["id"], mode)["secret"]) for mode in MODES}
        return SeededAccount(id=str(account["id"]), name=name, plan=plan, keys=keys)

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="seed") as pool:
        return list(pool.map(one, PLANS))
