"""`learnflow accounts|keys` through click's CliRunner against moto's DynamoDB and API Gateway."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from learnflow.keys import hash_secret
from tests.support.aws import SESSION
from tests.support.cli import assert_clean_failure, run, run_json

if TYPE_CHECKING:
    from mypy_boto3_apigateway.client import APIGatewayClient
    from mypy_boto3_apigateway.type_defs import ApiStageTypeDef
    from mypy_boto3_dynamodb.service_resource import Table


class Gateway:
    """A REST API with a v2 stage and the Standard and Pro usage plans, as the stack has them."""

    def __init__(self) -> None:
        self.client: APIGatewayClient = SESSION.client("apigateway")
        api = self.client.create_rest_api(name="learnflow", apiKeySource="AUTHORIZER")
        self.api_id = api["id"]
        root = self.client.get_resources(restApiId=self.api_id)["items"][0]["id"]
        self.client.put_method(
            restApiId=self.api_id, resourceId=root, httpMethod="GET", authorizationType="NONE"
        )
        self.client.put_integration(
            restApiId=self.api_id, resourceId=root, httpMethod="GET", type="MOCK"
        )
        self.client.create_deployment(restApiId=self.api_id, stageName="v2")
        stages: list[ApiStageTypeDef] = [{"apiId": self.api_id, "stage": "v2"}]
        self.standard = self.client.create_usage_plan(
            name="standard", throttle={"rateLimit": 1, "burstLimit": 60}, apiStages=stages
        )["id"]
        self.pro = self.client.create_usage_plan(
            name="pro", throttle={"rateLimit": 5, "burstLimit": 300}, apiStages=stages
        )["id"]

    def plan_key_ids(self, usage_plan_id: str) -> set[str]:
        return {
            item["id"]
            for item in self.client.get_usage_plan_keys(usagePlanId=usage_plan_id)["items"]
        }

    def options(self) -> list[str]:
        return ["--standard-usage-plan", self.standard, "--pro-usage-plan", self.pro]


@pytest.fixture
def gateway(table: Table) -> Gateway:
    return Gateway()


def new_account(gateway: Gateway, plan: str = "standard", *extra: str) -> dict[str, Any]:
    return run_json(
        "accounts", "create", "--name", "Acme", "--plan", plan, *gateway.options(), *extra
    )


def new_key(account_id: str, mode: str = "test", *extra: str) -> dict[str, Any]:
    return run_json("keys", "create", "--account", account_id, "--mode", mode, *extra)


# --- accounts ---


@pytest.mark.parametrize(("plan", "limit"), [("standard", 60), ("pro", 300)])
def test_account_gets_an_enabled_api_gateway_key_in_its_plans_usage_plan(
    gateway: Gateway, plan: str, limit: int
) -> None:
    account = new_account(gateway, plan)
    assert account["id"].startswith("acct_")
    assert (account["object"], account["plan"], account["rate_limit"]) == ("account", plan, limit)
    api_key = gateway.client.get_api_key(apiKey=account["api_gateway_key_id"])
    assert api_key["enabled"] is True
    expected_plan = gateway.standard if plan == "standard" else gateway.pro
    other_plan = gateway.pro if plan == "standard" else gateway.standard
    assert account["usage_plan_id"] == expected_plan
    assert account["api_gateway_key_id"] in gateway.plan_key_ids(expected_plan)
    assert account["api_gateway_key_id"] not in gateway.plan_key_ids(other_plan)


def test_enterprise_account_gets_its_own_usage_plan_at_its_rate(gateway: Gateway) -> None:
    account = new_account(gateway, "enterprise", "--limit", "1200")
    assert (account["plan"], account["rate_limit"]) == ("enterprise", 1200)
    own = account["usage_plan_id"]
    assert own not in (gateway.standard, gateway.pro)
    plan = gateway.client.get_usage_plan(usagePlanId=own)
    assert plan["throttle"]["rateLimit"] == pytest.approx(40.0)  # 2 x 1200 / 60
    assert plan["throttle"]["burstLimit"] == 4800
    assert [(s["apiId"], s["stage"]) for s in plan["apiStages"]] == [(gateway.api_id, "v2")]
    assert gateway.plan_key_ids(own) == {account["api_gateway_key_id"]}


def test_each_account_has_one_api_gateway_key_whatever_its_number_of_keys(
    gateway: Gateway,
) -> None:
    account = new_account(gateway)
    for mode in ("test", "live", "test"):
        new_key(account["id"], mode)
    assert len(gateway.client.get_api_keys()["items"]) == 1


def test_a_limit_is_required_for_enterprise_and_refused_otherwise(gateway: Gateway) -> None:
    for extra in (
        ["--plan", "enterprise"],
        ["--plan", "enterprise", "--limit", "0"],
        ["--plan", "standard", "--limit", "100"],
    ):
        result = run("accounts", "create", "--name", "Acme", *extra, *gateway.options())
        assert_clean_failure(result)
    assert gateway.client.get_api_keys()["items"] == []
    assert len(gateway.client.get_usage_plans()["items"]) == 2


def test_account_human_output_names_the_account(gateway: Gateway) -> None:
    result = run("accounts", "create", "--name", "Acme", "--plan", "pro", *gateway.options())
    assert result.exit_code == 0
    assert "acct_" in result.stdout
    assert "300" in result.stdout


def test_usage_plans_come_from_the_environment(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEARNFLOW_USAGE_PLAN_STANDARD", gateway.standard)
    account = run_json("accounts", "create", "--name", "Env", "--plan", "standard")
    assert account["api_gateway_key_id"] in gateway.plan_key_ids(gateway.standard)


@pytest.mark.filterwarnings("ignore::UserWarning")  # moto does not model the placeholder resource
def test_table_and_usage_plans_come_from_the_stack_outputs(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = {
        "TableName": "learnflow-test",
        "StandardUsagePlanId": gateway.standard,
        "ProUsagePlanId": gateway.pro,
        "ApiId": gateway.api_id,
    }
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    SESSION.client("cloudformation").create_stack(
        StackName="learnflow", TemplateBody=json.dumps(template)
    )
    monkeypatch.delenv("LEARNFLOW_TABLE")
    account = run_json(
        "accounts", "create", "--name", "Stack", "--plan", "pro", "--stack", "learnflow"
    )
    assert account["api_gateway_key_id"] in gateway.plan_key_ids(gateway.pro)
    key = run_json(
        "keys", "create", "--account", account["id"], "--mode", "live", "--stack", "learnflow"
    )
    assert key["secret"].startswith("sk_live_")


def test_without_usage_plans_the_account_has_no_api_gateway_key(table: Table) -> None:
    result = run("accounts", "create", "--name", "Local", "--plan", "standard", "--json")
    assert result.exit_code == 0
    account = json.loads(result.stdout)
    assert account["api_gateway_key_id"] is None
    assert result.stderr  # says so, on stderr only


def test_missing_table_configuration_is_a_clean_error(
    table: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEARNFLOW_TABLE")
    assert_clean_failure(run("keys", "list", "--account", "acct_x"))


def test_unknown_stack_is_a_clean_error(table: Table) -> None:
    assert_clean_failure(run("keys", "list", "--account", "acct_x", "--stack", "nope"))


# --- keys ---


def test_secret_key_create_prints_its_secret_once(gateway: Gateway) -> None:
    account = new_account(gateway)
    key = new_key(account["id"], "test")
    assert key["id"].startswith("key_")
    assert key["secret"].startswith("sk_test_")
    assert (key["kind"], key["mode"], key["livemode"], key["status"]) == (
        "secret",
        "test",
        False,
        "active",
    )
    assert key["permissions"] == ["*"]
    assert key["last4"] == key["secret"][-4:]


def test_restricted_key_create_with_permissions(gateway: Gateway) -> None:
    account = new_account(gateway)
    key = new_key(
        account["id"],
        "live",
        "--restricted",
        "--permission",
        "students:write",
        "--permission",
        "courses:read",
    )
    assert key["secret"].startswith("rk_live_")
    assert (key["kind"], key["livemode"]) == ("restricted", True)
    assert key["permissions"] == ["courses:read", "students:write"]


def test_permissions_and_restricted_go_together(gateway: Gateway) -> None:
    account = new_account(gateway)
    for extra in (
        ["--permission", "courses:read"],
        ["--restricted"],
        ["--restricted", "--permission", "courses:delete"],
    ):
        result = run("keys", "create", "--account", account["id"], "--mode", "test", *extra)
        assert result.exit_code != 0
        assert "Traceback" not in result.output
    assert run_json("keys", "list", "--account", account["id"])["data"] == []


def test_key_for_unknown_account_is_a_clean_error_with_a_json_error(table: Table) -> None:
    result = run("keys", "create", "--account", "acct_missing", "--mode", "test", "--json")
    assert_clean_failure(result)
    assert set(json.loads(result.stdout)) == {"error"}


def test_key_create_human_output_shows_the_secret(gateway: Gateway) -> None:
    account = new_account(gateway)
    result = run("keys", "create", "--account", account["id"], "--mode", "live")
    assert result.exit_code == 0
    assert any(line.startswith("sk_live_") for line in result.stdout.splitlines())


def test_keys_list_shows_every_key_without_secrets_or_hashes(gateway: Gateway) -> None:
    account = new_account(gateway)
    created = [new_key(account["id"], mode) for mode in ("test", "live")]
    created.append(new_key(account["id"], "test", "--restricted", "--permission", "courses:read"))
    listing = run_json("keys", "list", "--account", account["id"])
    assert listing["object"] == "list"
    assert [key["id"] for key in listing["data"]] == [key["id"] for key in created]
    human = run("keys", "list", "--account", account["id"])
    assert human.exit_code == 0
    for key in listing["data"]:
        assert "secret" not in key
    for text in (json.dumps(listing), human.output):
        for key in created:
            assert key["secret"] not in text
            assert key["secret"][8:20] not in text
            assert hash_secret(key["secret"]) not in text


def test_keys_list_of_one_account_never_shows_anothers(gateway: Gateway) -> None:
    first, second = new_account(gateway), new_account(gateway)
    mine = new_key(first["id"])
    new_key(second["id"])
    listing = run_json("keys", "list", "--account", first["id"])
    assert [key["id"] for key in listing["data"]] == [mine["id"]]


def test_revoke_marks_the_key_revoked_and_is_repeatable(gateway: Gateway) -> None:
    account = new_account(gateway)
    key = new_key(account["id"])
    revoked = run_json("keys", "revoke", key["id"])
    assert (revoked["id"], revoked["status"]) == (key["id"], "revoked")
    assert revoked["revoked_at"]
    again = run_json("keys", "revoke", key["id"])
    assert (again["status"], again["revoked_at"]) == ("revoked", revoked["revoked_at"])
    listing = run_json("keys", "list", "--account", account["id"])
    assert [k["status"] for k in listing["data"]] == ["revoked"]


def test_revoke_unknown_key_is_a_clean_error(table: Table) -> None:
    assert_clean_failure(run("keys", "revoke", "key_missing"))


def test_roll_issues_a_new_key_with_the_same_account_mode_and_permissions(
    gateway: Gateway,
) -> None:
    account = new_account(gateway)
    old = new_key(account["id"], "live", "--restricted", "--permission", "enrollments:write")
    rolled = run_json("keys", "roll", old["id"])
    assert rolled["id"] != old["id"]
    assert rolled["secret"] != old["secret"]
    assert rolled["secret"].startswith("rk_live_")
    same = ("account_id", "mode", "kind", "permissions")
    assert {f: rolled[f] for f in same} == {f: old[f] for f in same}
    assert rolled["rolled_from"]["id"] == old["id"]
    assert rolled["rolled_from"]["status"] == "expired"  # at once by default
    statuses = {
        key["id"]: key["status"]
        for key in run_json("keys", "list", "--account", account["id"])["data"]
    }
    assert statuses == {old["id"]: "expired", rolled["id"]: "active"}


def test_roll_with_a_grace_period_keeps_the_old_key_active_until_then(gateway: Gateway) -> None:
    account = new_account(gateway)
    old = new_key(account["id"])
    rolled = run_json("keys", "roll", old["id"], "--expire-old-in", "600")
    assert rolled["rolled_from"]["status"] == "active"
    assert rolled["rolled_from"]["expires_at"]
    again = run("keys", "roll", old["id"], "--json")  # one successor per key
    assert_clean_failure(again)


def test_roll_of_a_revoked_key_is_refused(gateway: Gateway) -> None:
    account = new_account(gateway)
    key = new_key(account["id"])
    run_json("keys", "revoke", key["id"])
    result = run("keys", "roll", key["id"], "--json")
    assert_clean_failure(result)
    assert "error" in json.loads(result.stdout)
    listing = run_json("keys", "list", "--account", account["id"])
    assert len(listing["data"]) == 1


def test_roll_human_output_shows_the_new_secret(gateway: Gateway) -> None:
    account = new_account(gateway)
    old = new_key(account["id"])
    result = run("keys", "roll", old["id"], "--expire-old-in", "60")
    assert result.exit_code == 0
    assert any(line.startswith("sk_test_") for line in result.stdout.splitlines())


def test_no_secret_is_stored_in_the_table(gateway: Gateway, table: Table) -> None:
    account = new_account(gateway)
    secrets = [new_key(account["id"], mode)["secret"] for mode in ("test", "live")]
    secrets.append(
        new_key(account["id"], "test", "--restricted", "--permission", "courses:read")["secret"]
    )
    rolled = run_json("keys", "roll", new_key(account["id"])["id"], "--expire-old-in", "60")
    secrets.append(rolled["secret"])
    items = table.scan()["Items"]
    assert len(items) > len(secrets)
    dump = json.dumps(items, default=str)
    for secret in secrets:
        assert secret not in dump
        assert secret[8:] not in dump
        assert secret[8:24] not in dump


USAGE_ERRORS = {
    "permission-outside-choices": [
        "keys", "create", "--account", "acct_x", "--mode", "test",
        "--restricted", "--permission", "courses:admin",
    ],
    "mode-outside-choices": ["keys", "create", "--account", "acct_x", "--mode", "prod"],
    "missing-required-option": ["accounts", "create", "--plan", "pro"],
    "unknown-option": ["keys", "list", "--account", "acct_x", "--colour"],
    "limit-not-a-number": ["accounts", "create", "--name", "A", "--plan", "pro", "--limit", "x"],
    "unknown-command": ["keys", "rotate"],
}  # fmt: skip


@pytest.mark.parametrize("args", USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
def test_usage_error_with_json_is_one_json_error_object_on_stdout(
    table: Table, args: list[str]
) -> None:
    result = run(*args, "--json")
    assert result.exit_code == 2
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    error = json.loads(lines[0])["error"]
    assert error["type"] == "usage_error"
    assert isinstance(error["message"], str)
    assert error["message"]
    assert result.stderr.startswith("Usage: ")  # click's own text stays on standard error
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
def test_usage_error_without_json_is_clicks_usage_text_only(table: Table, args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("Usage: ")


def test_json_after_a_double_dash_is_an_argument_not_the_flag(table: Table) -> None:
    result = run("keys", "revoke", "--", "--json", "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
