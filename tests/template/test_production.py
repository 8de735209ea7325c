"""template.yaml, ready for production traffic: the edge (WAF, throttles, the authorizer's
reserved concurrency), observability (log groups, access logs, alarms, dashboard), safe deploys
(aliases, canaries that roll back on alarms, deletion protection, the custom domain's rule) and
the deployment environments (samconfig.toml, `make deploy`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from learnflow.observability import status_class
from learnflow.ratelimit import gateway_throttle
from learnflow_cli.template import load_template, routes, usage_plans
from tests.support.sam import resources, translated

ROOT = Path(__file__).resolve().parents[2]
TOPIC = {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}
PRO_PER_MINUTE = 300


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return translated()


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return load_template()


def _default(sam: dict[str, Any], parameter: str) -> int:
    return int(sam["Parameters"][parameter]["Default"])


def _functions(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources(cfn, "AWS::Lambda::Function")


def _short(function_id: str) -> str:
    return function_id.removesuffix("Function")


def _function_name(function_id: str) -> dict[str, str]:
    return {"Fn::Sub": f"${{AWS::StackName}}-{_short(function_id)}"}


# ---------------------------------------------------------------------------- the edge


def test_web_acl_guards_the_v2_stage(cfn: dict[str, Any]) -> None:
    ((acl_id, acl),) = resources(cfn, "AWS::WAFv2::WebACL").items()
    (association,) = resources(cfn, "AWS::WAFv2::WebACLAssociation").values()
    properties = acl["Properties"]
    rules = {rule["Name"]: rule for rule in properties["Rules"]}
    managed = {
        name: rule["Statement"]["ManagedRuleGroupStatement"]
        for name, rule in rules.items()
        if "ManagedRuleGroupStatement" in rule["Statement"]
    }
    rate = rules["RequestsPerIp"]

    assert properties["Scope"] == "REGIONAL"
    assert properties["DefaultAction"] == {"Allow": {}}
    assert {m["Name"] for m in managed.values()} == {
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "AWSManagedRulesAmazonIpReputationList",
    }
    assert all(m["VendorName"] == "AWS" for m in managed.values())
    assert all(rules[name]["OverrideAction"] == {"None": {}} for name in managed)  # they block
    assert rate["Action"] == {"Block": {}}
    assert rate["Statement"]["RateBasedStatement"] == {
        "AggregateKeyType": "IP",
        "EvaluationWindowSec": 300,
        "Limit": {"Ref": "WafRequestsPerIpPer5Minutes"},
    }
    assert sorted(rule["Priority"] for rule in rules.values()) == list(range(len(rules)))
    assert all(rule["VisibilityConfig"]["CloudWatchMetricsEnabled"] for rule in rules.values())
    # On the v2 stage, once SAM has made it.
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert association["Properties"]["ResourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${Api}/stages/v2"
    }
    assert "Apiv2Stage" in association["DependsOn"]


def test_only_rules_that_read_bodies_or_the_user_agent_merely_count(cfn: dict[str, Any]) -> None:
    (acl,) = resources(cfn, "AWS::WAFv2::WebACL").values()
    (common,) = [r for r in acl["Properties"]["Rules"] if r["Name"] == "CommonRuleSet"]
    overrides = common["Statement"]["ManagedRuleGroupStatement"]["RuleActionOverrides"]

    assert all(o["ActionToUse"] == {"Count": {}} for o in overrides)
    assert all(o["Name"].endswith(("_BODY", "UserAgent_HEADER")) for o in overrides)


def test_waf_rate_never_refuses_what_one_pro_account_may_send(sam: dict[str, Any]) -> None:
    limit = _default(sam, "WafRequestsPerIpPer5Minutes")

    # Both modes of a Pro account, from one address, for five minutes.
    assert limit >= 5 * 2 * PRO_PER_MINUTE
    assert sam["Parameters"]["WafRequestsPerIpPer5Minutes"]["MinValue"] >= 100  # WAF's floor


def test_waf_filtered_answers_in_the_error_envelope(sam: dict[str, Any]) -> None:
    response = sam["Resources"]["Api"]["Properties"]["GatewayResponses"]["WAF_FILTERED"]
    body = json.loads(
        response["ResponseTemplates"]["application/json"].replace("$context.requestId", "r-1")
    )

    assert response["StatusCode"] == 403
    assert response["ResponseParameters"]["Headers"]["Request-Id"] == "context.requestId"
    assert body == {
        "error": {
            "type": "permission_error",
            "code": "request_blocked",
            "message": body["error"]["message"],
            "request_id": "r-1",
        }
    }


def test_stage_throttle_never_refuses_what_a_usage_plan_allows(
    cfn: dict[str, Any], sam: dict[str, Any]
) -> None:
    settings = cfn["Resources"]["Apiv2Stage"]["Properties"]["MethodSettings"]
    (every,) = [s for s in settings if (s["ResourcePath"], s["HttpMethod"]) == ("/*", "*")]
    plans = usage_plans(sam).values()
    rate, burst = _default(sam, "StageThrottleRateLimit"), _default(sam, "StageThrottleBurstLimit")

    assert every["ThrottlingRateLimit"] == {"Ref": "StageThrottleRateLimit"}
    assert every["ThrottlingBurstLimit"] == {"Ref": "StageThrottleBurstLimit"}
    assert every["MetricsEnabled"] is True
    assert every["DataTraceEnabled"] is False  # execution logs would hold request bodies
    # Each method's bucket takes the largest plan's whole burst and rate, with room for more.
    assert rate >= max(plan.rate_limit for plan in plans)
    assert burst >= max(plan.burst_limit for plan in plans)
    assert (rate, burst) >= gateway_throttle(PRO_PER_MINUTE)
    assert sam["Parameters"]["StageThrottleBurstLimit"]["MinValue"] >= max(
        plan.burst_limit for plan in plans
    )
    assert sam["Parameters"]["StageThrottleRateLimit"]["MinValue"] >= max(
        plan.rate_limit for plan in plans
    )


def test_public_methods_have_their_own_tighter_throttle(cfn: dict[str, Any]) -> None:
    settings = cfn["Resources"]["Apiv2Stage"]["Properties"]["MethodSettings"]
    public = {s["ResourcePath"]: s for s in settings if s["ResourcePath"] != "/*"}

    assert set(public) == {"/~1openapi.json", "/~1docs"}
    for setting in public.values():
        assert setting["HttpMethod"] == "GET"
        assert 0 < setting["ThrottlingRateLimit"] <= setting["ThrottlingBurstLimit"] <= 1000


def test_only_the_authorizer_reserves_concurrency(cfn: dict[str, Any], sam: dict[str, Any]) -> None:
    reserved = {
        fid: f["Properties"]["ReservedConcurrentExecutions"]
        for fid, f in _functions(cfn).items()
        if "ReservedConcurrentExecutions" in f["Properties"]
    }

    assert reserved == {
        "AuthorizerFunction": {
            "Fn::If": [
                "ReserveAuthorizerConcurrency",
                {"Ref": "AuthorizerReservedConcurrency"},
                {"Ref": "AWS::NoValue"},
            ]
        }
    }
    # A tenth of the default account quota (1,000): the routes keep 900 between them.
    assert 0 < _default(sam, "AuthorizerReservedConcurrency") <= 100
    assert sam["Conditions"]["ReserveAuthorizerConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AuthorizerReservedConcurrency"}, 0]}]
    }


def test_authorizer_cache_is_per_key_and_short(cfn: dict[str, Any]) -> None:
    (api,) = resources(cfn, "AWS::ApiGateway::RestApi").values()
    scheme = api["Properties"]["Body"]["components"]["securitySchemes"]["LearnFlowAuthorizer"]
    extension = scheme["x-amazon-apigateway-authorizer"]

    # A TOKEN authorizer caches by its identity source: the whole Authorization header, i.e.
    # one decision per key, for at most a minute.
    assert (scheme["in"], scheme["name"]) == ("header", "Authorization")
    assert 0 < extension["authorizerResultTtlInSeconds"] <= 60


# ---------------------------------------------------------------------------- observability


def test_every_function_logs_json_to_its_own_group_with_retention(cfn: dict[str, Any]) -> None:
    groups = resources(cfn, "AWS::Logs::LogGroup")
    named: set[str] = set()

    for function_id, function in _functions(cfn).items():
        properties = function["Properties"]
        config = properties["LoggingConfig"]
        group_id = config["LogGroup"]["Ref"]
        group = groups[group_id]["Properties"]
        assert properties["FunctionName"] == _function_name(function_id)
        assert config["LogFormat"] == "JSON"
        assert config["ApplicationLogLevel"] == "INFO"
        assert group["LogGroupName"] == {
            "Fn::Sub": f"/aws/lambda/${{AWS::StackName}}-{_short(function_id)}"
        }
        named.add(group_id)
    assert named | {"ApiAccessLogGroup"} == set(groups)
    for group in groups.values():  # none keeps logs forever
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_retention_is_one_cloudwatch_accepts(sam: dict[str, Any]) -> None:
    parameter = sam["Parameters"]["LogRetentionDays"]

    assert parameter["Default"] in parameter["AllowedValues"]
    assert {1, 7, 14, 30, 90, 365, 3653} <= set(parameter["AllowedValues"])


def test_access_logs_are_json_with_who_what_and_how_long(cfn: dict[str, Any]) -> None:
    stage = cfn["Resources"]["Apiv2Stage"]["Properties"]
    setting = stage["AccessLogSetting"]
    sample = {  # what API Gateway puts in, numbers where it writes numbers
        "requestTimeEpoch": "1700000000000",
        "status": "401",
        "responseLatency": "12",
    }
    line = re.sub(
        r"\$context\.([A-Za-z0-9_.]+)",
        lambda m: sample.get(m.group(1), f"<{m.group(1)}>"),
        setting["Format"],
    )
    entry = json.loads(line)

    assert setting["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert entry["requestId"] == "<requestId>"
    assert entry["keyId"] == "<authorizer.key_id>"
    assert entry["accountId"] == "<authorizer.account_id>"
    assert entry["mode"] == "<authorizer.mode>"
    assert (entry["status"], entry["latency"]) == (401, 12)
    assert entry["errorType"] == "<error.responseType>"
    # The account-wide role API Gateway logs with, set before the API exists.
    account = cfn["Resources"]["ApiGatewayAccount"]["Properties"]
    assert account["CloudWatchRoleArn"] == {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]}
    assert "ApiGatewayAccount" in cfn["Resources"]["Api"]["DependsOn"]
    assert cfn["Resources"]["ApiGatewayCloudWatchRole"]["DeletionPolicy"] == "Retain"


def test_metrics_have_one_namespace_per_stack(sam: dict[str, Any]) -> None:
    variables = sam["Globals"]["Function"]["Environment"]["Variables"]

    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == {"Fn::Sub": "LearnFlow/${AWS::StackName}"}
    assert variables["POWERTOOLS_SERVICE_NAME"] == "learnflow"


def _alarms(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in resources(cfn, "AWS::CloudWatch::Alarm").items()}


def _metrics_of(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """Each metric an alarm reads: (namespace, name, dimensions)."""
    if "MetricName" in alarm:
        return [
            {
                "Namespace": alarm["Namespace"],
                "MetricName": alarm["MetricName"],
                "Dimensions": alarm.get("Dimensions", []),
            }
        ]
    return [m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m]


def test_every_alarm_notifies_the_topic_both_ways(cfn: dict[str, Any], sam: dict[str, Any]) -> None:
    alarms = _alarms(cfn)

    assert len(alarms) >= 40
    for alarm_id, alarm in alarms.items():
        assert alarm["AlarmActions"] == [TOPIC], alarm_id
        assert alarm["OKActions"] == [TOPIC], alarm_id
        assert alarm["TreatMissingData"] == "notBreaching", alarm_id
        assert "docs/operations.md#" in alarm["AlarmDescription"], alarm_id
        assert alarm["AlarmName"]["Fn::Sub"].startswith("${AWS::StackName}-"), alarm_id
    assert sam["Conditions"]["CreateAlarmTopic"] == {"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}
    assert cfn["Resources"]["AlarmTopic"]["Condition"] == "CreateAlarmTopic"
    assert sam["Parameters"]["AlarmTopicArn"]["Default"] == ""


def test_the_runbook_explains_every_alarm(cfn: dict[str, Any]) -> None:
    runbook = (ROOT / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).strip().replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", runbook, flags=re.MULTILINE)
    }

    for alarm_id, alarm in _alarms(cfn).items():
        anchor = re.search(r"docs/operations\.md#([a-z0-9-]+)", alarm["AlarmDescription"])
        assert anchor is not None, alarm_id
        assert anchor.group(1) in anchors, (alarm_id, anchor.group(1))


@pytest.mark.parametrize(
    "function_id",
    sorted(
        set(resources(translated(), "AWS::Lambda::Function")) - {"AuthorizerFunction"},
    ),
)
def test_every_function_but_the_authorizer_has_error_and_throttle_alarms(
    cfn: dict[str, Any], sam: dict[str, Any], function_id: str
) -> None:
    alarms = _alarms(cfn)
    short = _short(function_id)
    errors, throttles = alarms[f"{short}ErrorsAlarm"], alarms[f"{short}ThrottlesAlarm"]
    by_name = {m["MetricName"]: m for m in _metrics_of(errors)}
    routed = [r for r in routes(sam) if r.function_id == function_id]

    assert _metrics_of(throttles) == [
        {
            "Namespace": "AWS/Lambda",
            "MetricName": "Throttles",
            "Dimensions": [{"Name": "FunctionName", "Value": _function_name(function_id)}],
        }
    ]
    assert by_name["Errors"]["Dimensions"] == [
        {"Name": "FunctionName", "Value": _function_name(function_id)}
    ]
    if routed:
        # A handled failure is a 500 envelope, not a Lambda error: the 5xx answers count too,
        # as the route's Requests with status class 5xx (what learnflow.http records).
        (route,) = routed
        dimensions = {d["Name"]: d["Value"] for d in by_name["Requests"]["Dimensions"]}
        assert by_name["Requests"]["Namespace"] == {"Fn::Sub": "LearnFlow/${AWS::StackName}"}
        assert dimensions == {
            "route": f"{route.method} {route.path}",
            "service": "learnflow",
            "status_class": status_class(503),
        }
        assert errors["Metrics"][0]["Expression"] == "FILL(crashes, 0) + FILL(faults, 0)"


def test_the_authorizer_has_its_own_alarms(cfn: dict[str, Any]) -> None:
    alarms = _alarms(cfn)
    failures = _metrics_of(alarms["AuthorizerFailuresAlarm"])
    authorizer = {"Name": "FunctionName", "Value": _function_name("AuthorizerFunction")}

    # Not on Lambda's Errors: every refused key raises by design.
    assert [m["MetricName"] for m in failures] == ["AuthorizerRefusals"]
    assert {"Name": "reason", "Value": "key_store_unavailable"} in failures[0]["Dimensions"]
    assert _metrics_of(alarms["AuthorizerThrottlesAlarm"])[0]["Dimensions"] == [authorizer]
    assert _metrics_of(alarms["AuthorizerLatencyAlarm"])[0]["Dimensions"] == [authorizer]
    assert alarms["AuthorizerLatencyAlarm"]["ExtendedStatistic"] == "p99"
    assert "AuthorizerErrorsAlarm" not in alarms
    source = (ROOT / "functions" / "authorizer" / "authorize.py").read_text()
    assert '"AuthorizerRefusals", reason="key_store_unavailable"' in source


def test_api_table_stream_dead_letter_and_ses_alarms(cfn: dict[str, Any]) -> None:
    alarms = _alarms(cfn)
    api = [
        {"Name": "ApiName", "Value": {"Fn::Sub": "${AWS::StackName}"}},
        {"Name": "Stage", "Value": "v2"},
    ]
    names = {
        alarm_id: {m["MetricName"] for m in _metrics_of(alarm)}
        for alarm_id, alarm in alarms.items()
    }

    assert names["Api5xxRateAlarm"] == {"5XXError", "Count"}
    assert all(m["Dimensions"] == api for m in _metrics_of(alarms["Api5xxRateAlarm"]))
    assert alarms["Api5xxRateAlarm"]["Threshold"] == 0.01
    assert names["ApiLatencyP99Alarm"] == {"Latency"}
    assert alarms["ApiLatencyP99Alarm"]["ExtendedStatistic"] == "p99"
    assert names["TableThrottlesAlarm"] == {"ReadThrottleEvents", "WriteThrottleEvents"}
    assert names["WelcomeIteratorAgeAlarm"] == {"IteratorAge"}
    assert names["WelcomeDeadLettersAlarm"] == {
        "OnFailureDestinationDeliveredEventCount",
        "DestinationDeliveryFailures",
    }
    (delivered,) = [
        m
        for m in _metrics_of(alarms["WelcomeDeadLettersAlarm"])
        if m["MetricName"] == "OnFailureDestinationDeliveredEventCount"
    ]
    assert delivered["Dimensions"] == [
        {
            "Name": "EventSourceMappingUUID",
            "Value": {"Ref": "SendWelcomeEmailFunctionEnrollmentStream"},
        }
    ]
    assert cfn["Resources"]["SendWelcomeEmailFunctionEnrollmentStream"]["Type"] == (
        "AWS::Lambda::EventSourceMapping"
    )
    assert names["SesBounceRateAlarm"] == {"Reputation.BounceRate"}
    assert names["SesComplaintRateAlarm"] == {"Reputation.ComplaintRate"}
    assert 0 < alarms["SesBounceRateAlarm"]["Threshold"] < 0.05  # before SES's own review
    assert 0 < alarms["SesComplaintRateAlarm"]["Threshold"] < 0.001


def test_dashboard_shows_every_alarm_and_is_json(cfn: dict[str, Any]) -> None:
    (dashboard,) = resources(cfn, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    referenced = set(re.findall(r"\$\{(\w+)\.Arn\}", body))
    parsed = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))

    assert referenced == set(_alarms(cfn))
    assert {w["type"] for w in parsed["widgets"]} >= {"metric", "alarm"}
    for widget in parsed["widgets"]:
        assert widget["x"] + widget["width"] <= 24


# ---------------------------------------------------------------------------- safe deploys


@pytest.mark.parametrize("function_id", sorted(resources(translated(), "AWS::Lambda::Function")))
def test_every_function_deploys_through_a_canary_that_rolls_back_on_its_alarms(
    cfn: dict[str, Any], sam: dict[str, Any], function_id: str
) -> None:
    alias = cfn["Resources"][f"{function_id}Aliaslive"]
    group = cfn["Resources"][f"{function_id}DeploymentGroup"]["Properties"]
    alarms = {a["Name"]["Ref"] for a in group["AlarmConfiguration"]["Alarms"]}
    own = "AuthorizerFailuresAlarm" if function_id == "AuthorizerFunction" else None
    own = own or f"{_short(function_id)}ErrorsAlarm"

    assert alias["Properties"]["Name"] == "live"
    assert alias["Properties"]["FunctionName"] == {"Ref": function_id}
    assert "CodeDeployLambdaAliasUpdate" in alias["UpdatePolicy"]
    assert group["DeploymentConfigName"] == {
        "Fn::Sub": [
            "CodeDeployDefault.Lambda${ConfigName}",
            {"ConfigName": "Canary10Percent5Minutes"},
        ]
    }
    assert group["AlarmConfiguration"]["Enabled"] is True
    assert "DEPLOYMENT_STOP_ON_ALARM" in group["AutoRollbackConfiguration"]["Events"]
    assert own in alarms
    assert alarms & {"Api5xxRateAlarm", "WelcomeDeadLettersAlarm"}
    # A layer or environment change is a new version too (a canary, not a big bang).
    assert sam["Resources"][function_id]["Properties"]["AutoPublishAliasAllProperties"] is True


def test_routes_and_the_authorizer_are_called_through_their_aliases(cfn: dict[str, Any]) -> None:
    (api,) = resources(cfn, "AWS::ApiGateway::RestApi").values()
    uris = [
        json.dumps(operation["x-amazon-apigateway-integration"]["uri"])
        for path in api["Properties"]["Body"]["paths"].values()
        for operation in path.values()
    ]
    permissions = resources(cfn, "AWS::Lambda::Permission").values()

    assert uris
    assert all("Aliaslive" in uri for uri in uris)
    assert all("Aliaslive" in json.dumps(p["Properties"]["FunctionName"]) for p in permissions)


def test_table_cannot_be_deleted(cfn: dict[str, Any]) -> None:
    table = cfn["Resources"]["Table"]

    assert table["Properties"]["DeletionProtectionEnabled"] is True
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_custom_domain_switches_the_execute_api_endpoint_off(cfn: dict[str, Any]) -> None:
    (api,) = resources(cfn, "AWS::ApiGateway::RestApi").values()
    (server,) = api["Properties"]["Body"]["servers"]

    assert server["x-amazon-apigateway-endpoint-configuration"] == {
        "disableExecuteApiEndpoint": {"Fn::If": ["HasCustomDomain", True, False]}
    }


def _holds(expression: Any, parameters: dict[str, str]) -> bool:
    """A CloudFormation rule function, for the ones the template's rules use."""
    ((function, argument),) = expression.items()
    if function == "Fn::Not":
        return not _holds(argument[0], parameters)
    if function == "Fn::Equals":
        left, right = (parameters[a["Ref"]] if isinstance(a, dict) else a for a in argument)
        return bool(left == right)
    raise AssertionError(f"no evaluator for {function}")


@pytest.mark.parametrize(
    ("domain", "certificate", "accepted"),
    [
        ("", "", True),
        ("api.learnflow.com", "arn:aws:acm:us-east-1:123456789012:certificate/abc", True),
        ("api.learnflow.com", "", False),
        ("", "arn:aws:acm:us-east-1:123456789012:certificate/abc", False),
    ],
)
def test_a_domain_needs_its_certificate_and_the_reverse(
    sam: dict[str, Any], domain: str, certificate: str, accepted: bool
) -> None:
    parameters = {"DomainName": domain, "CertificateArn": certificate}
    refused = [
        name
        for name, rule in sam["Rules"].items()
        if _holds(rule["RuleCondition"], parameters)
        and not all(_holds(a["Assert"], parameters) for a in rule["Assertions"])
    ]

    assert (not refused) is accepted


# ---------------------------------------------------------------------------- environments


def test_samconfig_has_dev_and_prod_deploy_environments() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())

    for env in ("dev", "prod"):
        deploy = config[env]["deploy"]["parameters"]
        assert deploy["stack_name"]
        assert "CAPABILITY_IAM" in deploy["capabilities"]
        assert deploy["resolve_s3"] is True
        overrides = dict(item.split("=", 1) for item in deploy["parameter_overrides"])
        assert "LogRetentionDays" in overrides
    assert (
        config["dev"]["deploy"]["parameters"]["stack_name"]
        != (config["prod"]["deploy"]["parameters"]["stack_name"])
    )
    assert config["prod"]["deploy"]["parameters"]["confirm_changeset"] is True
    assert "samconfig.toml" not in (ROOT / ".gitignore").read_text().split()


def _make_deploy(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    make = {k: v for k, v in os.environ.items() if k not in ("CI", "ENV")} | env
    return subprocess.run(  # noqa: S603 - our own Makefile, fixed arguments
        ["make", "--no-print-directory", "-C", str(ROOT), "deploy", *args],  # noqa: S607
        env=make,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "args", "says"),
    [
        ({"CI": "true"}, ("ENV=dev",), "does not run in CI"),
        ({}, (), "ENV=dev or ENV=prod"),
        ({}, ("ENV=staging",), "ENV=dev or ENV=prod"),
    ],
)
def test_make_deploy_refuses_ci_and_unknown_environments(
    env: dict[str, str], args: tuple[str, ...], says: str
) -> None:
    result = _make_deploy(env, *args)

    assert result.returncode != 0
    assert says in result.stderr
    assert "sam deploy" not in result.stdout


def test_make_deploy_prints_what_it_runs() -> None:
    result = _make_deploy({}, "ENV=prod", "DRY_RUN=1")

    assert result.returncode == 0, result.stderr
    assert "sam deploy --config-env prod" in result.stdout
