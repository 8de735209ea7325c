"""Reads template.yaml (CloudFormation short tags included) and gives typed views of it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

DEFAULT_TEMPLATE_PATH = Path(__file__).resolve().parent.parent.parent / "template.yaml"

_FUNCTION = "AWS::Serverless::Function"
_API = "AWS::Serverless::Api"
_TABLE = "AWS::DynamoDB::Table"
_USAGE_PLAN = "AWS::ApiGateway::UsagePlan"

# Every short form CloudFormation accepts; each becomes its long form (`!Sub x` → {"Fn::Sub": x}).
SHORT_TAGS: dict[str, str] = {
    "Ref": "Ref",
    "Condition": "Condition",
    **{
        name: f"Fn::{name}"
        for name in (
            "And",
            "Base64",
            "Cidr",
            "Equals",
            "FindInMap",
            "GetAZs",
            "GetAtt",
            "If",
            "ImportValue",
            "Join",
            "Not",
            "Or",
            "Select",
            "Split",
            "Sub",
        )
    },
}


class CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader that also reads CloudFormation's short tags; any other unknown tag still fails."""


def _construct_short_tag(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    tag = node.tag.removeprefix("!")
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - yaml has no fourth node kind
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node!r}")
    if tag == "GetAtt" and isinstance(value, str):
        # `!GetAtt Resource.Attribute`: the attribute itself may contain dots (Endpoint.Address).
        value = value.split(".", 1)
    return {SHORT_TAGS[tag]: value}


for _tag in SHORT_TAGS:
    CloudFormationLoader.add_constructor(f"!{_tag}", _construct_short_tag)


def load_template(path: Path | None = None) -> dict[str, Any]:
    """The template as plain data, intrinsic functions in their long form and unresolved."""
    text = (path or DEFAULT_TEMPLATE_PATH).read_text(encoding="utf-8")
    data = yaml.load(text, Loader=CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise ValueError("not a CloudFormation template: no Resources mapping")
    return cast("dict[str, Any]", data)


# ---------------------------------------------------------------------------- typed views


@dataclass(frozen=True, slots=True)
class Function:
    """One AWS::Serverless::Function, `Globals` merged in (the function's own settings win)."""

    function_id: str
    code_uri: str  # as declared, relative to the template: functions/courses/
    module: str  # list_courses
    handler_attr: str  # lambda_handler
    runtime: str
    memory_mb: int
    timeout: float  # seconds
    layers: list[Any]  # Globals' layers, then the function's own; unresolved (!Ref or an ARN)
    environment: dict[str, Any]  # Globals' variables, then the function's; intrinsics unresolved


@dataclass(frozen=True, slots=True)
class Route:
    """One method of the REST API and the function behind it."""

    function_id: str
    method: str  # upper case, as in the proxy event's httpMethod
    path: str  # the resource, e.g. /courses/{course_id}
    code_uri: str  # as declared, relative to the template: functions/courses/
    module: str  # list_courses
    handler_attr: str  # lambda_handler
    auth_required: bool  # the TOKEN authorizer runs first
    api_key_required: bool
    environment: dict[str, Any]  # Globals merged with the function's; intrinsics unresolved

    @property
    def dotted_module(self) -> str:
        """Import path from the template's directory, e.g. functions.courses.list_courses."""
        return _dotted(self.code_uri, self.module)


@dataclass(frozen=True, slots=True)
class Authorizer:
    """The API's default TOKEN authorizer."""

    name: str
    function_id: str
    code_uri: str
    module: str
    handler_attr: str
    identity_header: str
    validation_expression: str | None  # API Gateway matches it against the whole header value
    ttl: int  # seconds API Gateway caches a policy per token
    environment: dict[str, Any]

    @property
    def dotted_module(self) -> str:
        return _dotted(self.code_uri, self.module)

    def accepts(self, header_value: str) -> bool:
        """Whether API Gateway would call the authorizer for this header (else it answers 401)."""
        if not header_value:
            return False
        if self.validation_expression is None:
            return True
        return re.fullmatch(self.validation_expression, header_value) is not None


@dataclass(frozen=True, slots=True)
class GatewayResponse:
    """A response API Gateway makes by itself (404 for unknown routes, 401, 429, ...)."""

    response_type: str
    status_code: int | None  # None: keep the status API Gateway chose (DEFAULT_4XX/5XX)
    headers: dict[str, str]  # header → mapping expression: 'literal' or context.requestId
    body_template: str | None  # application/json template with $context.* placeholders

    def render(
        self, context: Mapping[str, str], default_status: int
    ) -> tuple[int, dict[str, str], str]:
        """Status, headers and body as API Gateway would send them, given `$context` values."""
        headers: dict[str, str] = {}
        for name, expression in self.headers.items():
            if len(expression) >= 2 and expression[0] == expression[-1] == "'":
                headers[name] = expression[1:-1]
            elif expression.startswith("context.") and expression[8:] in context:
                headers[name] = context[expression[8:]]
        body = re.sub(
            r"\$context\.([A-Za-z0-9_.]+)",
            lambda match: context.get(match.group(1), ""),
            self.body_template or "",
        )
        return self.status_code or default_status, headers, body


@dataclass(frozen=True, slots=True)
class TableDefinition:
    """The table's definition, split into what CreateTable takes and what needs later calls."""

    logical_id: str
    billing_mode: str
    attribute_definitions: list[dict[str, str]]
    key_schema: list[dict[str, str]]
    global_secondary_indexes: list[dict[str, Any]]
    ttl_attribute: str | None
    stream_view_type: str | None
    point_in_time_recovery: bool
    sse_enabled: bool

    def create_table_kwargs(self, table_name: str, *, stream: bool = True) -> dict[str, Any]:
        """Keyword arguments for boto3's `create_table` (TTL and PITR are separate calls)."""
        kwargs: dict[str, Any] = {
            "TableName": table_name,
            "BillingMode": self.billing_mode,
            "AttributeDefinitions": [dict(item) for item in self.attribute_definitions],
            "KeySchema": [dict(item) for item in self.key_schema],
        }
        if self.global_secondary_indexes:
            kwargs["GlobalSecondaryIndexes"] = [
                json.loads(json.dumps(index)) for index in self.global_secondary_indexes
            ]
        if stream and self.stream_view_type:
            kwargs["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": self.stream_view_type,
            }
        if self.sse_enabled:
            kwargs["SSESpecification"] = {"Enabled": True}
        return kwargs


@dataclass(frozen=True, slots=True)
class StreamFunction:
    """A function fed by the table's DynamoDB stream."""

    function_id: str
    code_uri: str
    module: str
    handler_attr: str
    environment: dict[str, Any]
    table_id: str  # logical id of the table whose stream it reads
    batch_size: int
    maximum_retry_attempts: int | None
    report_batch_item_failures: bool
    filter_patterns: list[dict[str, Any]]  # parsed Lambda event filter patterns
    on_failure: Any  # the OnFailure destination, unresolved (e.g. {"Fn::GetAtt": [...]})

    @property
    def dotted_module(self) -> str:
        return _dotted(self.code_uri, self.module)


@dataclass(frozen=True, slots=True)
class UsagePlan:
    logical_id: str
    rate_limit: float  # requests per second
    burst_limit: int


def _dotted(code_uri: str, module: str) -> str:
    package = ".".join(part for part in code_uri.split("/") if part and part != ".")
    return f"{package}.{module}" if package else module


def _resources(template: Mapping[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    resources = cast("dict[str, dict[str, Any]]", template["Resources"])
    return {name: body for name, body in resources.items() if body.get("Type") == resource_type}


def _one(template: Mapping[str, Any], resource_type: str) -> tuple[str, dict[str, Any]]:
    found = _resources(template, resource_type)
    if len(found) != 1:
        raise ValueError(f"expected one {resource_type}, found {len(found)}")
    return next(iter(found.items()))


def _globals(template: Mapping[str, Any]) -> dict[str, Any]:
    return cast("dict[str, Any]", (template.get("Globals") or {}).get("Function") or {})


def _properties(body: Mapping[str, Any]) -> dict[str, Any]:
    return cast("dict[str, Any]", body.get("Properties") or {})


def _variables(settings: Mapping[str, Any]) -> dict[str, Any]:
    return dict((settings.get("Environment") or {}).get("Variables") or {})


def function(template: Mapping[str, Any], function_id: str) -> Function:
    """The function `function_id` as Lambda runs it: the one place `Globals` is merged in."""
    globals_ = _globals(template)
    properties = _properties(template["Resources"][function_id])

    def setting(name: str, default: Any) -> Any:
        return properties.get(name, globals_.get(name, default))

    module, _, attr = str(setting("Handler", "")).rpartition(".")
    return Function(
        function_id=function_id,
        code_uri=str(setting("CodeUri", ".")),
        module=module,
        handler_attr=attr,
        runtime=str(setting("Runtime", "python3.13")),
        memory_mb=int(setting("MemorySize", 128)),  # SAM's defaults
        timeout=float(setting("Timeout", 3)),
        layers=[*(globals_.get("Layers") or []), *(properties.get("Layers") or [])],
        environment={**_variables(globals_), **_variables(properties)},
    )


def functions(template: Mapping[str, Any]) -> dict[str, Function]:
    """Every AWS::Serverless::Function of the template, in template order."""
    return {name: function(template, name) for name in _resources(template, _FUNCTION)}


def layer_content_uri(template: Mapping[str, Any], layer: Any) -> str | None:
    """Where a layer of this template (a `!Ref` to its LayerVersion) has its code, as declared;
    None for a published layer's ARN or a layer without a local ContentUri."""
    if not (isinstance(layer, dict) and "Ref" in layer):
        return None
    body = template["Resources"].get(str(layer["Ref"])) or {}
    content = _properties(body).get("ContentUri")
    return content if isinstance(content, str) else None


def parameter_defaults(template: Mapping[str, Any]) -> dict[str, str]:
    """Each template parameter that has a default → that default, as a string."""
    return {
        str(name): str(body["Default"])
        for name, body in (template.get("Parameters") or {}).items()
        if "Default" in body
    }


def stage_name(template: Mapping[str, Any]) -> str:
    _, api = _one(template, _API)
    return str(api["Properties"]["StageName"])


def binary_media_types(template: Mapping[str, Any]) -> list[str]:
    """The API's BinaryMediaTypes, `~1` read as `/` (application~1octet-stream)."""
    _, api = _one(template, _API)
    return [str(kind).replace("~1", "/") for kind in _properties(api).get("BinaryMediaTypes", [])]


def routes(template: Mapping[str, Any]) -> list[Route]:
    """Every Api event of every function, in template order."""
    _, api = _one(template, _API)
    api_auth = api["Properties"].get("Auth", {})
    default_authorizer = api_auth.get("DefaultAuthorizer")
    default_key_required = bool(api_auth.get("ApiKeyRequired", False))
    found: list[Route] = []
    for function_id, body in _resources(template, _FUNCTION).items():
        for event in body.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") != "Api":
                continue
            properties = event["Properties"]
            auth = properties.get("Auth", {})
            authorizer_name = auth.get("Authorizer", default_authorizer)
            declared = function(template, function_id)
            found.append(
                Route(
                    function_id=function_id,
                    method=str(properties["Method"]).upper(),
                    path=str(properties["Path"]),
                    code_uri=declared.code_uri,
                    module=declared.module,
                    handler_attr=declared.handler_attr,
                    auth_required=authorizer_name not in (None, "NONE"),
                    api_key_required=bool(auth.get("ApiKeyRequired", default_key_required)),
                    environment=declared.environment,
                )
            )
    return found


def _function_of(arn: Any) -> str:
    """The logical id of the function a FunctionArn names: `!GetAtt Fn.Arn`, or SAM's
    `!Ref Fn.Alias` (the function's AutoPublishAlias, which the local stack runs as the function
    itself: it has one version, the code on disk)."""
    if isinstance(arn, dict) and "Fn::GetAtt" in arn:
        return str(arn["Fn::GetAtt"][0])
    if isinstance(arn, dict) and isinstance(arn.get("Ref"), str) and arn["Ref"].endswith(".Alias"):
        return str(arn["Ref"]).removesuffix(".Alias")
    raise ValueError(f"the authorizer's FunctionArn names no function of this template: {arn!r}")


def authorizer(template: Mapping[str, Any]) -> Authorizer:
    """The API's default authorizer (a TOKEN authorizer backed by a function of this template)."""
    _, api = _one(template, _API)
    auth = api["Properties"]["Auth"]
    name = str(auth["DefaultAuthorizer"])
    declared = auth["Authorizers"][name]
    if declared.get("FunctionPayloadType", "TOKEN") != "TOKEN":
        raise ValueError(f"authorizer {name} is not a TOKEN authorizer")
    function_id = _function_of(declared["FunctionArn"])
    identity = declared.get("Identity", {})
    runs = function(template, function_id)
    expression = identity.get("ValidationExpression")
    return Authorizer(
        name=name,
        function_id=function_id,
        code_uri=runs.code_uri,
        module=runs.module,
        handler_attr=runs.handler_attr,
        identity_header=str(identity.get("Header", "Authorization")),
        validation_expression=None if expression is None else str(expression),
        ttl=int(identity.get("ReauthorizeEvery", 300)),  # API Gateway's default
        environment=runs.environment,
    )


def gateway_responses(template: Mapping[str, Any]) -> dict[str, GatewayResponse]:
    """Response type (UNAUTHORIZED, DEFAULT_4XX, ...) → what API Gateway sends for it."""
    _, api = _one(template, _API)
    declared = api["Properties"].get("GatewayResponses", {})
    responses: dict[str, GatewayResponse] = {}
    for response_type, body in declared.items():
        status = body.get("StatusCode")
        headers = body.get("ResponseParameters", {}).get("Headers", {})
        responses[response_type] = GatewayResponse(
            response_type=response_type,
            status_code=None if status is None else int(status),
            headers={str(name): str(value) for name, value in headers.items()},
            body_template=body.get("ResponseTemplates", {}).get("application/json"),
        )
    return responses


def gateway_response_for(
    responses: Mapping[str, GatewayResponse], response_type: str, status: int
) -> GatewayResponse | None:
    """The response for `response_type`, else DEFAULT_4XX/5XX, as API Gateway picks it."""
    if response_type in responses:
        return responses[response_type]
    return responses.get("DEFAULT_5XX" if status >= 500 else "DEFAULT_4XX")


def table_definition(template: Mapping[str, Any]) -> TableDefinition:
    logical_id, body = _one(template, _TABLE)
    properties = body["Properties"]
    ttl = properties.get("TimeToLiveSpecification", {})
    return TableDefinition(
        logical_id=logical_id,
        billing_mode=str(properties.get("BillingMode", "PROVISIONED")),
        attribute_definitions=list(properties["AttributeDefinitions"]),
        key_schema=list(properties["KeySchema"]),
        global_secondary_indexes=list(properties.get("GlobalSecondaryIndexes", [])),
        ttl_attribute=str(ttl["AttributeName"]) if ttl.get("Enabled") else None,
        stream_view_type=properties.get("StreamSpecification", {}).get("StreamViewType"),
        point_in_time_recovery=bool(
            properties.get("PointInTimeRecoverySpecification", {}).get(
                "PointInTimeRecoveryEnabled", False
            )
        ),
        sse_enabled=bool(properties.get("SSESpecification", {}).get("SSEEnabled", False)),
    )


def stream_functions(template: Mapping[str, Any]) -> list[StreamFunction]:
    """Every function with a DynamoDB event on a table of this template."""
    found: list[StreamFunction] = []
    for function_id, body in _resources(template, _FUNCTION).items():
        for event in body.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") != "DynamoDB":
                continue
            properties = event["Properties"]
            stream = properties["Stream"]
            if not (isinstance(stream, dict) and "Fn::GetAtt" in stream):
                continue  # a stream of some other stack: nothing to run locally
            declared = function(template, function_id)
            filters = properties.get("FilterCriteria", {}).get("Filters", [])
            retries = properties.get("MaximumRetryAttempts")
            found.append(
                StreamFunction(
                    function_id=function_id,
                    code_uri=declared.code_uri,
                    module=declared.module,
                    handler_attr=declared.handler_attr,
                    environment=declared.environment,
                    table_id=str(stream["Fn::GetAtt"][0]),
                    batch_size=int(properties.get("BatchSize", 100)),
                    maximum_retry_attempts=None if retries is None else int(retries),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in properties.get("FunctionResponseTypes", []),
                    filter_patterns=[json.loads(item["Pattern"]) for item in filters],
                    on_failure=properties.get("DestinationConfig", {})
                    .get("OnFailure", {})
                    .get("Destination"),
                )
            )
    return found


def usage_plans(template: Mapping[str, Any]) -> dict[str, UsagePlan]:
    """Usage plans declared in the template (logical id → throttle)."""
    plans: dict[str, UsagePlan] = {}
    for logical_id, body in _resources(template, _USAGE_PLAN).items():
        throttle = body["Properties"].get("Throttle", {})
        plans[logical_id] = UsagePlan(
            logical_id=logical_id,
            rate_limit=float(throttle["RateLimit"]),
            burst_limit=int(throttle["BurstLimit"]),
        )
    return plans
