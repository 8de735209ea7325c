"""template.yaml: cfn-lint, SAM's own translation, the routes, handlers and sample events."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from learnflow.ratelimit import gateway_throttle
from learnflow.resources import RESOURCES
from learnflow_cli.template import (
    DEFAULT_TEMPLATE_PATH,
    SHORT_TAGS,
    Route,
    authorizer,
    gateway_response_for,
    gateway_responses,
    load_template,
    routes,
    stage_name,
    stream_functions,
    table_definition,
    usage_plans,
)
from tests.support.aws import SESSION
from tests.support.sam import actions, resources, role_statements, translated

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"

# (function logical id, method, path, directory, module, kind) — the fixed route table.
READ, WRITE, STRIPE, PUBLIC = "read", "write", "write+stripe", "public"
EXPECTED_ROUTES = [
    ("ListCoursesFunction", "GET", "/courses", "courses", "list_courses", READ),
    ("CreateCourseFunction", "POST", "/courses", "courses", "create_course", WRITE),
    ("GetCourseFunction", "GET", "/courses/{course_id}", "courses", "get_course", READ),
    ("UpdateCourseFunction", "PATCH", "/courses/{course_id}", "courses", "update_course", WRITE),
    ("ListInstructorsFunction", "GET", "/instructors", "instructors", "list_instructors", READ),
    ("CreateInstructorFunction", "POST", "/instructors", "instructors", "create_instructor", WRITE),
    (
        "GetInstructorFunction",
        "GET",
        "/instructors/{instructor_id}",
        "instructors",
        "get_instructor",
        READ,
    ),
    ("ListStudentsFunction", "GET", "/students", "students", "list_students", READ),
    ("CreateStudentFunction", "POST", "/students", "students", "create_student", WRITE),
    ("GetStudentFunction", "GET", "/students/{student_id}", "students", "get_student", READ),
    (
        "UpdateStudentFunction",
        "PATCH",
        "/students/{student_id}",
        "students",
        "update_student",
        WRITE,
    ),
    ("ListEnrollmentsFunction", "GET", "/enrollments", "enrollments", "list_enrollments", READ),
    (
        "CreateEnrollmentFunction",
        "POST",
        "/enrollments",
        "enrollments",
        "create_enrollment",
        STRIPE,
    ),
    (
        "GetEnrollmentFunction",
        "GET",
        "/enrollments/{enrollment_id}",
        "enrollments",
        "get_enrollment",
        READ,
    ),
    (
        "CancelEnrollmentFunction",
        "POST",
        "/enrollments/{enrollment_id}/cancel",
        "enrollments",
        "cancel_enrollment",
        STRIPE,
    ),
    ("GetOpenApiFunction", "GET", "/openapi.json", "openapi", "get_openapi", PUBLIC),
    ("GetDocsFunction", "GET", "/docs", "openapi", "get_docs", PUBLIC),
]
ROUTE_IDS = [row[4] for row in EXPECTED_ROUTES]
PUBLIC_PATHS = {"/openapi.json", "/docs"}  # the reference: no key needed
OTHER_FUNCTIONS = [
    ("AuthorizerFunction", "authorizer", "authorize"),
    ("SendWelcomeEmailFunction", "notifications", "send_welcome_email"),
]

# Gateway response type → (status or None to keep API Gateway's, error type, error code or None)
GATEWAY_RESPONSES = {
    "UNAUTHORIZED": (401, "authentication_error", None),
    "ACCESS_DENIED": (403, "permission_error", "insufficient_permissions"),
    "MISSING_AUTHENTICATION_TOKEN": (404, "invalid_request_error", "route_not_found"),
    "THROTTLED": (429, "rate_limit_error", "rate_limit_exceeded"),
    "QUOTA_EXCEEDED": (429, "rate_limit_error", "rate_limit_exceeded"),
    "BAD_REQUEST_BODY": (400, "invalid_request_error", "invalid_json"),
    "DEFAULT_4XX": (None, "invalid_request_error", None),
    "DEFAULT_5XX": (None, "api_error", None),
    "WAF_FILTERED": (403, "permission_error", "request_blocked"),
}

ID_PREFIX = {f"{resource.object}_id": resource.prefix for resource in RESOURCES}  # path params
AUTHORIZER_CONTEXT = {
    "account_id",
    "mode",
    "plan",
    "rate_limit",
    "key_id",
    "key_kind",
    "permissions",
}


def _id_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"{prefix}_[0-9A-Za-z]{{24}}")


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def transformed() -> dict[str, Any]:
    """What CloudFormation receives after SAM's transform (the translator `sam deploy` runs)."""
    return translated()


_resources = resources
_actions = actions


def _api_body(transformed: dict[str, Any]) -> dict[str, Any]:
    (api,) = _resources(transformed, "AWS::ApiGateway::RestApi").values()
    body: dict[str, Any] = api["Properties"]["Body"]
    return body


def _statements(transformed: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    return role_statements(transformed, function_id)


def _matches(pattern: dict[str, Any], value: Any) -> bool:
    """Lambda event filtering, for the subset the template uses: nested keys, exact values."""
    if not isinstance(value, dict):
        return False
    for key, expected in pattern.items():
        if key not in value:
            return False
        if isinstance(expected, dict):
            if not _matches(expected, value[key]):
                return False
        elif value[key] not in expected:
            return False
    return True


def _load_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


# ---------------------------------------------------------------------------- lint and translate


def test_cfn_lint_finds_no_errors_or_warnings() -> None:
    from cfnlint.api import ManualArgs, lint_file  # noqa: PLC0415 - slow import

    matches = lint_file(DEFAULT_TEMPLATE_PATH, config=ManualArgs(regions=["us-east-1"]))

    assert [str(match) for match in matches] == []


def test_sam_translation_creates_only_the_v2_stage(transformed: dict[str, Any]) -> None:
    stages = _resources(transformed, "AWS::ApiGateway::Stage")

    assert list(stages) == ["Apiv2Stage"]
    assert stages["Apiv2Stage"]["Properties"]["StageName"] == "v2"


# ---------------------------------------------------------------------------- API and auth


def test_authorizer_is_a_token_authorizer_on_authorization_with_a_short_cache(
    template: dict[str, Any], transformed: dict[str, Any]
) -> None:
    schemes = _api_body(transformed)["components"]["securitySchemes"]
    scheme = schemes["LearnFlowAuthorizer"]
    extension = scheme["x-amazon-apigateway-authorizer"]

    assert extension["type"] == "token"
    assert (scheme["in"], scheme["name"]) == ("header", "Authorization")
    assert 0 < extension["authorizerResultTtlInSeconds"] <= 60
    # Through its alias, so the authorizer deploys through a canary like every route.
    assert extension["authorizerUri"]["Fn::Sub"][1]["__FunctionArn__"] == {
        "Ref": "AuthorizerFunctionAliaslive"
    }
    assert extension["identityValidationExpression"] == (authorizer(template).validation_expression)


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("Bearer sk_test_" + "a1B2" * 8, True),
        ("Bearer sk_live_" + "Z" * 40, True),
        ("Bearer rk_test_" + "0" * 32, True),
        ("Bearer rk_live_" + "x9" * 30, True),
        ("Bearer sk_test_" + "a" * 31, False),
        ("Bearer pk_test_" + "a" * 32, False),
        ("Bearer sk_prod_" + "a" * 32, False),
        ("bearer sk_test_" + "a" * 32, False),
        ("Basic sk_test_" + "a" * 32, False),
        ("sk_test_" + "a" * 32, False),
        ("Bearer sk_test_" + "a" * 32 + "-", False),
        ("Bearer sk_test_" + "a" * 32 + " extra", False),
        ("xBearer sk_test_" + "a" * 32, False),
        ("Bearer  sk_test_" + "a" * 32, False),
        ("", False),
    ],
)
def test_validation_expression_admits_only_well_formed_bearer_keys(
    template: dict[str, Any], header: str, accepted: bool
) -> None:
    declared = authorizer(template)
    expression = declared.validation_expression
    assert expression is not None

    assert declared.accepts(header) is accepted
    # Anchored: a whole-value match and a search agree, whichever API Gateway applies.
    assert (re.search(expression, header) is not None) is accepted


def test_api_takes_usage_plan_keys_from_the_authorizer(transformed: dict[str, Any]) -> None:
    (api,) = _resources(transformed, "AWS::ApiGateway::RestApi").values()

    assert api["Properties"]["ApiKeySourceType"] == "AUTHORIZER"


def test_every_method_requires_key_and_authorizer_except_the_reference(
    transformed: dict[str, Any],
) -> None:
    paths = _api_body(transformed)["paths"]
    methods = {
        (method.upper(), path): operation
        for path, operations in paths.items()
        for method, operation in operations.items()
    }

    assert set(methods) == {(method, path) for _, method, path, *_ in EXPECTED_ROUTES}
    for (method, path), operation in methods.items():
        schemes = {name for requirement in operation["security"] for name in requirement}
        if path in PUBLIC_PATHS:
            assert schemes == set(), method
        else:
            assert schemes == {"LearnFlowAuthorizer", "api_key"}, (method, path)


@pytest.mark.parametrize("response_type", sorted(GATEWAY_RESPONSES))
def test_gateway_response_uses_the_error_envelope_with_the_request_id(
    transformed: dict[str, Any], response_type: str
) -> None:
    status, error_type, code = GATEWAY_RESPONSES[response_type]
    response = _api_body(transformed)["x-amazon-apigateway-gateway-responses"][response_type]
    template = response["responseTemplates"]["application/json"]
    body = json.loads(template.replace("$context.requestId", "req-123"))

    assert response.get("statusCode") == (None if status is None else str(status))
    parameters = response["responseParameters"]
    assert parameters["gatewayresponse.header.Request-Id"] == "context.requestId"
    assert parameters["gatewayresponse.header.Content-Type"] == "'application/json'"
    assert body["error"]["type"] == error_type
    assert body["error"].get("code") == code
    assert body["error"]["request_id"] == "req-123"
    assert body["error"]["message"]


def test_gateway_response_renders_headers_and_body_like_api_gateway(
    template: dict[str, Any],
) -> None:
    responses = gateway_responses(template)

    status, headers, body = responses["MISSING_AUTHENTICATION_TOKEN"].render(
        {"requestId": "req-9"}, default_status=403
    )

    assert status == 404
    assert headers["Request-Id"] == "req-9"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "route_not_found"
    assert json.loads(body)["error"]["request_id"] == "req-9"


@pytest.mark.parametrize(
    ("response_type", "status", "expected"),
    [
        ("THROTTLED", 429, "THROTTLED"),
        ("INTEGRATION_TIMEOUT", 504, "DEFAULT_5XX"),
        ("REQUEST_TOO_LARGE", 413, "DEFAULT_4XX"),
    ],
)
def test_undeclared_gateway_responses_fall_back_to_the_defaults(
    template: dict[str, Any], response_type: str, status: int, expected: str
) -> None:
    found = gateway_response_for(gateway_responses(template), response_type, status)

    assert found is not None
    assert found.response_type == expected
    rendered_status, _, body = found.render({"requestId": "r"}, default_status=status)
    assert rendered_status == status
    assert json.loads(body)["error"]["request_id"] == "r"


# ---------------------------------------------------------------------------- usage plans


@pytest.mark.parametrize(
    ("plan_id", "rate", "burst"),
    [
        ("StandardUsagePlan", *gateway_throttle(60)),
        ("ProUsagePlan", *gateway_throttle(300)),
    ],
)
def test_usage_plan_throttles_its_tier_on_the_v2_stage(
    transformed: dict[str, Any], plan_id: str, rate: int, burst: int
) -> None:
    plan = transformed["Resources"][plan_id]
    stage = transformed["Resources"]["Apiv2Stage"]["Properties"]["StageName"]

    assert plan["Type"] == "AWS::ApiGateway::UsagePlan"
    assert plan["Properties"]["Throttle"] == {"RateLimit": rate, "BurstLimit": burst}
    assert plan["Properties"]["ApiStages"] == [{"ApiId": {"Ref": "Api"}, "Stage": stage}]
    # The stage exists only once SAM's deployment does: without this the plan can come first.
    assert "Apiv2Stage" in (
        [plan["DependsOn"]] if isinstance(plan["DependsOn"], str) else plan["DependsOn"]
    )


def test_usage_plans_view_reads_both_tiers(template: dict[str, Any]) -> None:
    plans = usage_plans(template)

    assert {k: (v.rate_limit, v.burst_limit) for k, v in plans.items()} == {
        "StandardUsagePlan": gateway_throttle(60),
        "ProUsagePlan": gateway_throttle(300),
    }
    assert stage_name(template) == "v2"


# ---------------------------------------------------------------------------- table


def test_table_has_keys_indexes_ttl_stream_recovery_and_encryption(
    transformed: dict[str, Any],
) -> None:
    table = transformed["Resources"]["Table"]
    properties = table["Properties"]
    gsis = {index["IndexName"]: index for index in properties["GlobalSecondaryIndexes"]}
    attributes = {
        a["AttributeName"]: a["AttributeType"] for a in properties["AttributeDefinitions"]
    }

    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [
        {"AttributeName": "PK", "KeyType": "HASH"},
        {"AttributeName": "SK", "KeyType": "RANGE"},
    ]
    assert sorted(gsis) == [f"GSI{n}" for n in range(1, 8)]
    for n in range(1, 8):
        assert gsis[f"GSI{n}"]["KeySchema"] == [
            {"AttributeName": f"GSI{n}PK", "KeyType": "HASH"},
            {"AttributeName": f"GSI{n}SK", "KeyType": "RANGE"},
        ]
        assert gsis[f"GSI{n}"]["Projection"] == {"ProjectionType": "ALL"}
    assert set(attributes.values()) == {"S"}
    assert set(attributes) == {"PK", "SK"} | {
        f"GSI{n}{k}" for n in range(1, 8) for k in ["PK", "SK"]
    }
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert properties["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert properties["DeletionProtectionEnabled"] is True


def test_table_definition_creates_the_same_table_through_boto3(
    template: dict[str, Any], aws: None
) -> None:
    definition = table_definition(template)
    client = SESSION.client("dynamodb", region_name="us-east-1")
    client.create_table(**definition.create_table_kwargs("learnflow-test"))
    described = client.describe_table(TableName="learnflow-test")["Table"]

    assert definition.ttl_attribute == "expires_at"
    assert definition.point_in_time_recovery is True
    assert [k["AttributeName"] for k in described["KeySchema"]] == ["PK", "SK"]
    assert sorted(i["IndexName"] for i in described["GlobalSecondaryIndexes"]) == [
        f"GSI{n}" for n in range(1, 8)
    ]
    assert described["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }


# ---------------------------------------------------------------------------- functions


def test_every_route_is_declared_exactly_once(template: dict[str, Any]) -> None:
    declared = sorted(
        (r.function_id, r.method, r.path, r.code_uri, r.module, r.handler_attr)
        for r in routes(template)
    )
    expected = sorted(
        (fid, method, path, f"functions/{folder}/", module, "lambda_handler")
        for fid, method, path, folder, module, _ in EXPECTED_ROUTES
    )

    assert declared == expected


def test_routes_need_the_authorizer_and_a_key_except_the_reference(
    template: dict[str, Any],
) -> None:
    flags = {r.module: (r.auth_required, r.api_key_required) for r in routes(template)}

    assert (flags.pop("get_openapi"), flags.pop("get_docs")) == ((False, False), (False, False))
    assert set(flags.values()) == {(True, True)}


def test_routes_see_the_global_environment(template: dict[str, Any]) -> None:
    for route in routes(template):
        assert route.environment["LEARNFLOW_TABLE"] == {"Ref": "Table"}
        for mode in ("Test", "Live"):
            assert route.environment[f"LEARNFLOW_STRIPE_SECRET_PARAMETER_{mode.upper()}"] == {
                "Ref": f"Stripe{mode}SecretParameterName"
            }
        assert route.environment["POWERTOOLS_SERVICE_NAME"] == "learnflow"
        assert route.environment["POWERTOOLS_DEV"] == "false"


def _handler_files() -> list[Any]:
    modules = [(fid, folder, module) for fid, _, _, folder, module, _ in EXPECTED_ROUTES]
    return [
        pytest.param(fid, ROOT / "functions" / folder / f"{module}.py", id=fid)
        for fid, folder, module in modules + OTHER_FUNCTIONS
    ]


@pytest.mark.parametrize(("function_id", "path"), _handler_files())
def test_handler_module_defines_lambda_handler(function_id: str, path: Path) -> None:
    assert path.is_file(), f"{function_id}: {path} is missing"
    tree = ast.parse(path.read_text(), filename=str(path))
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    names |= {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }

    assert "lambda_handler" in names


def test_every_function_runs_python313_on_arm64_with_the_shared_layer(
    transformed: dict[str, Any],
) -> None:
    functions = _resources(transformed, "AWS::Lambda::Function")
    (layer_id,) = _resources(transformed, "AWS::Lambda::LayerVersion")

    assert len(functions) == len(EXPECTED_ROUTES) + len(OTHER_FUNCTIONS)
    for function_id, function in functions.items():
        properties = function["Properties"]
        assert properties["Runtime"] == "python3.13", function_id
        assert properties["Architectures"] == ["arm64"], function_id
        assert properties["Layers"] == [{"Ref": layer_id}], function_id
        assert properties["TracingConfig"] == {"Mode": "Active"}, function_id
        expected_timeout = 5 if function_id == "AuthorizerFunction" else None
        if expected_timeout is not None:
            assert properties["Timeout"] == expected_timeout
        assert properties["Timeout"] < 29, function_id  # under API Gateway's integration limit


def test_layer_is_built_for_arm64_python313(template: dict[str, Any]) -> None:
    layer = template["Resources"]["SharedLayer"]

    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/shared/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}


# ---------------------------------------------------------------------------- least privilege

# What each function may do to the table, by the key prefix it owns (dynamodb:LeadingKeys):
# tenant data T#<acct>#<mode>#… (objects, counters, uniqueness and pair items), rate windows RL#…,
# idempotency records IDEM#…, welcome claims WELCOME#…, API keys KEY#…. Nobody but the CLI
# touches accounts (ACCT#…) or key pointers (KEYID#…). tests/integration/test_least_privilege.py
# runs each function's paths and proves this is what they use, all of it and nothing more.
T, RL, IDEM, WELCOME, KEY = "T#*", "RL#*", "IDEM#*", "WELCOME#*", "KEY#*"
ROUTED = {RL: {"UpdateItem"}}  # every authenticated request counts against the limit
WRITER = {RL: {"UpdateItem"}, IDEM: {"PutItem", "UpdateItem"}}  # and a POST/PATCH claims its key
NEEDS: dict[str, dict[str, set[str]]] = {
    "AuthorizerFunction": {KEY: {"GetItem"}},
    "ListCoursesFunction": {**ROUTED, T: {"BatchGetItem", "Query"}},
    "CreateCourseFunction": {**WRITER, T: {"GetItem", "PutItem", "UpdateItem"}},
    "GetCourseFunction": {**ROUTED, T: {"GetItem"}},
    "UpdateCourseFunction": {**WRITER, T: {"GetItem", "UpdateItem"}},
    "ListInstructorsFunction": {**ROUTED, T: {"BatchGetItem", "Query"}},
    "CreateInstructorFunction": {**WRITER, T: {"PutItem", "UpdateItem"}},
    "GetInstructorFunction": {**ROUTED, T: {"GetItem"}},
    "ListStudentsFunction": {**ROUTED, T: {"GetItem", "BatchGetItem", "Query"}},
    "CreateStudentFunction": {**WRITER, T: {"PutItem", "UpdateItem"}},
    "GetStudentFunction": {**ROUTED, T: {"GetItem"}},
    "UpdateStudentFunction": {**WRITER, T: {"GetItem", "PutItem", "UpdateItem", "DeleteItem"}},
    "ListEnrollmentsFunction": {**ROUTED, T: {"BatchGetItem", "Query"}},
    "CreateEnrollmentFunction": {
        **WRITER,
        T: {"GetItem", "BatchGetItem", "PutItem", "UpdateItem", "DeleteItem"},
    },
    "GetEnrollmentFunction": {**ROUTED, T: {"GetItem"}},
    "CancelEnrollmentFunction": {**WRITER, T: {"GetItem", "PutItem", "UpdateItem", "DeleteItem"}},
    "GetOpenApiFunction": {},
    "GetDocsFunction": {},
    "SendWelcomeEmailFunction": {
        T: {"BatchGetItem"},  # the student and the course, to compose the mail
        WELCOME: {"GetItem", "PutItem", "UpdateItem", "DeleteItem"},
    },
}
# The indexes each function's Query may read (the table itself always).
QUERY_INDEXES = {
    "ListCoursesFunction": {"GSI1", "GSI2", "GSI3"},
    "ListEnrollmentsFunction": {f"GSI{n}" for n in range(1, 8)},
}
TABLE_ARN = {"Fn::GetAtt": ["Table", "Arn"]}


def _grants(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    """DynamoDB statements as prefix → actions, insisting that each names exactly one prefix."""
    found: dict[str, set[str]] = {}
    for statement in statements:
        table_actions = {a for a in _actions(statement) if a.startswith("dynamodb:")}
        if not table_actions:
            continue
        assert table_actions == _actions(statement), statement  # no mixed statements
        assert statement["Effect"] == "Allow"
        condition = statement["Condition"]
        assert list(condition) == ["ForAllValues:StringLike"], statement
        (prefix,) = condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        found.setdefault(prefix, set()).update(a.removeprefix("dynamodb:") for a in table_actions)
    return found


def test_every_function_has_its_needs(transformed: dict[str, Any]) -> None:
    assert set(_resources(transformed, "AWS::Lambda::Function")) == set(NEEDS)


@pytest.mark.parametrize("function_id", sorted(NEEDS))
def test_function_gets_exactly_the_table_access_it_needs(
    transformed: dict[str, Any], function_id: str
) -> None:
    statements = _statements(transformed, function_id)
    table_statements = [
        s for s in statements if any(a.startswith("dynamodb:") for a in _actions(s))
    ]

    assert _grants(statements) == NEEDS[function_id]
    for statement in table_statements:
        resources = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        if _actions(statement) == {"dynamodb:Query"}:
            indexes = {r["Fn::Sub"].removeprefix("${Table.Arn}/index/") for r in resources[1:]}
            assert resources[0] == TABLE_ARN
            assert indexes == QUERY_INDEXES.get(function_id, set())
        else:  # items are read and written on the table, never "*"
            assert resources == [TABLE_ARN], statement


@pytest.mark.parametrize("function_id", sorted(NEEDS))
def test_no_statement_of_ours_grants_every_resource(
    transformed: dict[str, Any], function_id: str
) -> None:
    for statement in _statements(transformed, function_id):
        resources = statement["Resource"]
        assert resources != "*"
        assert "*" not in (resources if isinstance(resources, list) else [])


def test_rate_limit_and_idempotency_statements_are_declared_once(
    transformed: dict[str, Any],
) -> None:
    attached: dict[str, set[str]] = {"RateLimitPolicy": set(), "IdempotencyPolicy": set()}
    inline_rate_limits = 0
    for function_id in NEEDS:
        role_id = transformed["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
        role = transformed["Resources"][role_id]["Properties"]
        for arn in role.get("ManagedPolicyArns", []):
            if isinstance(arn, dict) and arn.get("Ref") in attached:
                attached[arn["Ref"]].add(function_id)
        for policy in role.get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                inline_rate_limits += RL in json.dumps(statement.get("Condition", {}))
    authenticated = {fid for fid, _, path, *_ in EXPECTED_ROUTES if path not in PUBLIC_PATHS}
    writers = {fid for fid, method, *_ in EXPECTED_ROUTES if method in ("POST", "PATCH")}

    assert inline_rate_limits == 0
    assert attached == {"RateLimitPolicy": authenticated, "IdempotencyPolicy": writers}
    for policy_id in attached:
        assert transformed["Resources"][policy_id]["Type"] == "AWS::IAM::ManagedPolicy"


@pytest.mark.parametrize(("function_id", "kind"), [(row[0], row[5]) for row in EXPECTED_ROUTES])
def test_only_the_paying_functions_read_stripes_secrets(
    transformed: dict[str, Any], function_id: str, kind: str
) -> None:
    statements = _statements(transformed, function_id)
    ssm = [s for s in statements if "ssm:GetParameter" in _actions(s)]

    assert bool(ssm) is (kind == STRIPE)
    if ssm:  # both of Stripe's secrets, test and live, GetParameter only
        (statement,) = ssm
        assert _actions(statement) == {"ssm:GetParameter"}
        prefix = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
        assert statement["Resource"] == [
            {"Fn::Sub": prefix + "${StripeTestSecretParameterName}"},
            {"Fn::Sub": prefix + "${StripeLiveSecretParameterName}"},
        ]


def test_welcome_email_function_reads_the_stream_of_new_active_enrollments(
    transformed: dict[str, Any],
) -> None:
    (mapping,) = _resources(transformed, "AWS::Lambda::EventSourceMapping").values()
    properties = mapping["Properties"]
    statements = _statements(transformed, "SendWelcomeEmailFunction")
    granted = set().union(*(_actions(s) for s in statements))
    s3 = {
        json.dumps(s["Resource"], sort_keys=True): _actions(s)
        for s in statements
        if any(a.startswith("s3:") for a in _actions(s))
    }
    bucket = {"Fn::GetAtt": ["WelcomeFailureBucket", "Arn"]}

    # Through the alias: a stream record reaches the version the canary says.
    assert properties["FunctionName"] == {"Ref": "SendWelcomeEmailFunctionAliaslive"}
    assert properties["EventSourceArn"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert properties["StartingPosition"] == "LATEST"
    assert properties["BatchSize"] == 10
    assert properties["MaximumRetryAttempts"] == 3
    assert properties["BisectBatchOnFunctionError"] is True
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # Failed records are kept whole in S3 (SQS and SNS would get sequence numbers only).
    assert properties["DestinationConfig"] == {"OnFailure": {"Destination": bucket}}
    assert properties["MetricsConfig"] == {"Metrics": ["EventCount"]}
    assert {"ses:SendEmail", "ses:SendRawEmail"} <= granted
    assert s3 == {
        json.dumps({"Fn::Join": ["/", [bucket, "*"]]}, sort_keys=True): {"s3:PutObject"},
        json.dumps(bucket, sort_keys=True): {"s3:ListBucket"},
    }
    assert not any(a.startswith("sqs:") for a in granted)


def test_failure_bucket_is_private_encrypted_tls_only_and_forgets(
    transformed: dict[str, Any],
) -> None:
    bucket = transformed["Resources"]["WelcomeFailureBucket"]
    properties = bucket["Properties"]
    (policy,) = _resources(transformed, "AWS::S3::BucketPolicy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    (rule,) = properties["LifecycleConfiguration"]["Rules"]

    assert bucket["Type"] == "AWS::S3::Bucket"
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert properties["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert properties["OwnershipControls"] == {
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]
    }
    (encryption,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert rule["Status"] == "Enabled"
    assert 0 < rule["ExpirationInDays"] <= 90
    assert policy["Properties"]["Bucket"] == {"Ref": "WelcomeFailureBucket"}
    assert (statement["Effect"], statement["Action"]) == ("Deny", "s3:*")
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_stream_filter_passes_the_sample_insert_and_nothing_else(template: dict[str, Any]) -> None:
    (function,) = stream_functions(template)
    (pattern,) = function.filter_patterns
    (record,) = _load_json(EVENTS / "stream_enrollment_insert.json")["Records"]

    assert (function.function_id, function.table_id) == ("SendWelcomeEmailFunction", "Table")
    assert (function.batch_size, function.maximum_retry_attempts) == (10, 3)
    assert function.report_batch_item_failures is True
    assert _matches(pattern, record)
    for change in (
        {"eventName": "MODIFY"},
        {
            "dynamodb": {
                **record["dynamodb"],
                "NewImage": {**record["dynamodb"]["NewImage"], "status": {"S": "canceled"}},
            }
        },
        {
            "dynamodb": {
                **record["dynamodb"],
                "NewImage": {
                    **record["dynamodb"]["NewImage"],
                    "welcome_email": {"S": "not_requested"},
                },
            }
        },
        {
            "dynamodb": {
                **record["dynamodb"],
                "NewImage": {**record["dynamodb"]["NewImage"], "type": {"S": "course"}},
            }
        },
    ):
        assert not _matches(pattern, {**record, **change}), change


def test_outputs_name_the_api_table_and_usage_plans(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]

    # The custom domain when there is one (the execute-api URL is then switched off).
    assert outputs["ApiUrl"]["Value"] == {
        "Fn::If": [
            "HasCustomDomain",
            {"Fn::Sub": "https://${DomainName}/v2"},
            {"Fn::Sub": "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/v2"},
        ]
    }
    assert outputs["ApiId"]["Value"] == {"Ref": "Api"}
    assert outputs["TableName"]["Value"] == {"Ref": "Table"}
    assert outputs["StandardUsagePlanId"]["Value"] == {"Ref": "StandardUsagePlan"}
    assert outputs["ProUsagePlanId"]["Value"] == {"Ref": "ProUsagePlan"}


def test_authorizer_view_points_at_the_authorizer_function(template: dict[str, Any]) -> None:
    declared = authorizer(template)

    assert (declared.name, declared.function_id) == ("LearnFlowAuthorizer", "AuthorizerFunction")
    assert (declared.code_uri, declared.module, declared.handler_attr) == (
        "functions/authorizer/",
        "authorize",
        "lambda_handler",
    )
    assert declared.dotted_module == "functions.authorizer.authorize"
    assert declared.identity_header == "Authorization"
    assert 0 < declared.ttl <= 60


# ---------------------------------------------------------------------------- sample events


def _route(template: dict[str, Any], module: str) -> Route:
    (route,) = [r for r in routes(template) if r.module == module]
    return route


@pytest.mark.parametrize("module", ROUTE_IDS)
def test_sample_event_matches_its_route(template: dict[str, Any], module: str) -> None:
    route = _route(template, module)
    event = _load_json(EVENTS / f"{module}.json")
    context = event["requestContext"]
    path_params = event["pathParameters"] or {}

    assert (event["httpMethod"], event["resource"]) == (route.method, route.path)
    assert (context["httpMethod"], context["resourcePath"]) == (route.method, route.path)
    assert context["stage"] == "v2"
    assert context["path"] == "/v2" + event["path"]
    assert event["path"] == route.path.format(**path_params)
    assert set(path_params) == set(re.findall(r"{(\w+)}", route.path))
    for name, value in path_params.items():
        assert _id_pattern(ID_PREFIX[name]).fullmatch(value), (name, value)
    assert event["stageVariables"] is None
    assert event["isBase64Encoded"] is False
    assert {k: [v] for k, v in event["headers"].items()} == event["multiValueHeaders"]
    query = event["queryStringParameters"]
    assert event["multiValueQueryStringParameters"] == (
        None if query is None else {k: [v] for k, v in query.items()}
    )
    assert isinstance(context["requestTimeEpoch"], int)
    assert context["identity"]["sourceIp"]
    assert context["requestId"]


@pytest.mark.parametrize("module", ROUTE_IDS)
def test_sample_event_carries_the_authorizer_context_of_a_secret_test_key(
    template: dict[str, Any], module: str
) -> None:
    route = _route(template, module)
    event = _load_json(EVENTS / f"{module}.json")

    if not route.auth_required:
        assert "authorizer" not in event["requestContext"]
        return
    context = event["requestContext"]["authorizer"]
    assert authorizer(template).accepts(event["headers"]["Authorization"])
    assert context["principalId"]
    assert isinstance(context["integrationLatency"], int)
    assert set(context) >= AUTHORIZER_CONTEXT
    assert all(isinstance(context[key], str) for key in AUTHORIZER_CONTEXT)
    assert _id_pattern("acct").fullmatch(context["account_id"])
    assert _id_pattern("key").fullmatch(context["key_id"])
    assert (context["mode"], context["plan"], context["rate_limit"]) == ("test", "standard", "60")
    assert (context["key_kind"], context["permissions"]) == ("secret", "*")


@pytest.mark.parametrize("module", ROUTE_IDS)
def test_sample_event_body_is_a_json_object_exactly_when_the_method_takes_one(
    template: dict[str, Any], module: str
) -> None:
    route = _route(template, module)
    event = _load_json(EVENTS / f"{module}.json")

    if route.method in {"POST", "PATCH"}:
        assert isinstance(json.loads(event["body"]), dict)
        assert event["headers"]["Content-Type"] == "application/json"
    else:
        assert event["body"] is None


def test_sample_bodies_refer_to_well_formed_ids() -> None:
    enrollment = json.loads(_load_json(EVENTS / "create_enrollment.json")["body"])
    course = json.loads(_load_json(EVENTS / "create_course.json")["body"])

    assert _id_pattern("stu").fullmatch(enrollment["student_id"])
    assert _id_pattern("crs").fullmatch(enrollment["course_id"])
    assert enrollment["payment_method_id"] == "pm_card_visa"
    assert isinstance(course["price"], float)
    assert course["currency"] == "USD"


def test_sample_token_event_is_what_api_gateway_sends_the_authorizer(
    template: dict[str, Any],
) -> None:
    event = _load_json(EVENTS / "authorizer_token.json")

    assert event["type"] == "TOKEN"
    assert authorizer(template).accepts(event["authorizationToken"])
    assert re.fullmatch(r"Bearer sk_test_[0-9A-Za-z]{40}", event["authorizationToken"])
    assert event["methodArn"] == (
        "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v2/GET/courses"
    )


def test_sample_stream_event_is_an_enrollment_insert_in_dynamodb_json() -> None:
    (record,) = _load_json(EVENTS / "stream_enrollment_insert.json")["Records"]
    image = record["dynamodb"]["NewImage"]

    assert (record["eventSource"], record["eventName"]) == ("aws:dynamodb", "INSERT")
    assert record["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert record["dynamodb"]["Keys"] == {"PK": image["PK"], "SK": image["SK"]}
    assert _id_pattern("enr").fullmatch(image["SK"]["S"])
    assert image["PK"]["S"].startswith("T#acct_")
    assert image["type"] == {"S": "enrollment"}
    assert image["status"] == {"S": "active"}
    assert image["welcome_email"] == {"S": "requested"}


# ---------------------------------------------------------------------------- the loader


def test_load_template_turns_every_short_tag_into_its_long_form(tmp_path: Path) -> None:
    source = tmp_path / "t.yaml"
    source.write_text(
        """
Resources:
  R:
    Type: X
    Properties:
      Ref: !Ref Thing
      GetAtt: !GetAtt Db.Endpoint.Address
      GetAttList: !GetAtt [Db, Arn]
      Sub: !Sub "${AWS::StackName}-x"
      SubList: !Sub ["${A}", {A: !Ref B}]
      Join: !Join ["-", [a, !Ref C]]
      If: !If [IsProd, 1, 2]
      Equals: !Equals [!Ref Env, prod]
      Select: !Select [0, !GetAZs ""]
      Split: !Split [",", "a,b"]
      FindInMap: !FindInMap [M, K, V]
      ImportValue: !ImportValue Shared
      Base64: !Base64 hello
      GetAZs: !GetAZs us-east-1
      Not: !Not [!Condition IsProd]
      And: !And [!Condition A, !Condition B]
      Or: !Or [!Condition A, !Condition B]
      Condition: !Condition IsProd
      Cidr: !Cidr ["10.0.0.0/16", 4, 8]
"""
    )

    properties = load_template(source)["Resources"]["R"]["Properties"]

    assert properties == {
        "Ref": {"Ref": "Thing"},
        "GetAtt": {"Fn::GetAtt": ["Db", "Endpoint.Address"]},
        "GetAttList": {"Fn::GetAtt": ["Db", "Arn"]},
        "Sub": {"Fn::Sub": "${AWS::StackName}-x"},
        "SubList": {"Fn::Sub": ["${A}", {"A": {"Ref": "B"}}]},
        "Join": {"Fn::Join": ["-", ["a", {"Ref": "C"}]]},
        "If": {"Fn::If": ["IsProd", 1, 2]},
        "Equals": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
        "Select": {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
        "Split": {"Fn::Split": [",", "a,b"]},
        "FindInMap": {"Fn::FindInMap": ["M", "K", "V"]},
        "ImportValue": {"Fn::ImportValue": "Shared"},
        "Base64": {"Fn::Base64": "hello"},
        "GetAZs": {"Fn::GetAZs": "us-east-1"},
        "Not": {"Fn::Not": [{"Condition": "IsProd"}]},
        "And": {"Fn::And": [{"Condition": "A"}, {"Condition": "B"}]},
        "Or": {"Fn::Or": [{"Condition": "A"}, {"Condition": "B"}]},
        "Condition": {"Condition": "IsProd"},
        "Cidr": {"Fn::Cidr": ["10.0.0.0/16", 4, 8]},
    }
    assert set(SHORT_TAGS) == {key for key in properties if not key.endswith("List")}


def test_load_template_still_rejects_unknown_tags_and_leaves_safe_load_alone(
    tmp_path: Path,
) -> None:
    source = tmp_path / "t.yaml"
    source.write_text("Resources:\n  R: !Python os.system\n")

    with pytest.raises(yaml.constructor.ConstructorError):
        load_template(source)
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load("x: !Ref y")


def test_load_template_defaults_to_the_repository_template() -> None:
    assert DEFAULT_TEMPLATE_PATH == ROOT / "template.yaml"
    assert "Api" in load_template()["Resources"]


# ---------------------------------------------------------------------------- custom domain


def test_custom_domain_serves_the_contracts_base_url(transformed: dict[str, Any]) -> None:
    resources = transformed["Resources"]
    domain = resources["ApiDomain"]
    mapping = resources["ApiBasePathMapping"]
    assert domain["Type"] == "AWS::ApiGateway::DomainName"
    assert domain["Condition"] == mapping["Condition"] == "HasCustomDomain"
    assert domain["Properties"]["SecurityPolicy"] == "TLS_1_2"
    assert domain["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert mapping["Properties"]["BasePath"] == "v2"  # https://api.learnflow.com/v2/…
    assert mapping["Properties"]["Stage"] == "v2"
    assert "Apiv2Stage" in mapping["DependsOn"]
    assert transformed["Outputs"]["CustomDomainUrl"]["Condition"] == "HasCustomDomain"


def test_custom_domain_needs_both_a_name_and_a_certificate(template: dict[str, Any]) -> None:
    condition = template["Conditions"]["HasCustomDomain"]["Fn::And"]
    named = {json.dumps(part, sort_keys=True) for part in condition}
    for parameter in ("DomainName", "CertificateArn"):
        assert template["Parameters"][parameter]["Default"] == ""
        assert json.dumps({"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]}) in named
