"""A template of test functions for the local API Gateway emulator, written out and ready to
run: an authorizer whose token picks its answer (allow, deny, raise, time out, crash, ...), an
echo of the event, context and environment, slow, broken and unimportable functions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from learnflow_cli.local.functions import FunctionSpec, Intrinsics, function_specs

FUNCTIONS = {
    "auth.py": """
import json, os

def handler(event, context):
    with open(os.environ["INVOCATIONS"], "a") as log:
        log.write(json.dumps(event) + "\\n")
    token = event["authorizationToken"].split(" ", 1)[1]
    arn = event["methodArn"]
    base = arn.split("/", 1)[0]
    if token == "unauthorized":
        raise Exception("Unauthorized")
    if token == "boom":
        raise RuntimeError("database unavailable")
    if token == "slow":
        import time
        time.sleep(5)
    if token == "crash":
        os._exit(3)
    if token == "malformed":
        return {"policyDocument": {}}
    statements = {
        "allow": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": base + "/*/*"}],
        "getonly": [{"Action": "execute-api:*", "Effect": "Allow",
                     "Resource": [base + "/v2/GET/*"]}],
        "deny": [{"Action": "*", "Effect": "Allow", "Resource": "*"},
                 {"Action": "execute-api:Invoke", "Effect": "Deny",
                  "Resource": base + "/v2/GET/items/secre?"}],
        "nothing": [],
    }.get(token, [])
    return {"principalId": "user-" + token,
            "policyDocument": {"Version": "2012-10-17", "Statement": statements},
            "context": {"account": "acct_1", "n": 5, "flag": True, "ratio": 0.5}}
""",
    "echo.py": """
import os
COUNT = 0

def handler(event, context):
    global COUNT
    COUNT += 1
    import json, base64
    body = {
        "event": event,
        "count": COUNT,
        "pid": os.getpid(),
        "context": {
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "invoked_function_arn": context.invoked_function_arn,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "remaining": context.get_remaining_time_in_millis(),
        },
        "env": {name: os.environ.get(name) for name in (
            "TABLE", "GREETING", "OWN", "AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION", "LOCAL",
            "AWS_PROFILE", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE")},
    }
    query = event.get("queryStringParameters") or {}
    if query.get("binary"):
        return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    return {
        "statusCode": int(query.get("status", 200)),
        "headers": {"Content-Type": "application/json",
                    "Request-Id": event["requestContext"]["requestId"], "X-One": "single"},
        "multiValueHeaders": {"X-Many": ["a", "b"]},
        "body": json.dumps(body),
    }
""",
    "slow.py": """
import json, time

def handler(event, context):
    seconds = float((event.get("queryStringParameters") or {}).get("seconds", "0"))
    time.sleep(seconds)
    return {"statusCode": 200, "body": json.dumps({"slept": seconds})}
""",
    "broken.py": """
from decimal import Decimal

def handler(event, context):
    mode = (event.get("queryStringParameters") or {}).get("mode")
    if mode == "raise":
        raise ValueError("handler bug")
    if mode == "status":
        return {"statusCode": "two hundred", "body": "{}"}
    if mode == "digits":
        return {"statusCode": "201", "body": "{}"}
    if mode == "object":
        return {"statusCode": 200, "body": {"not": "a string"}}
    if mode == "decimal":
        return {"statusCode": 200, "body": "{}", "headers": {"X-Price": Decimal("1.5")}}
    if mode == "exit":
        import os
        os._exit(3)
    return None
""",
    "nosuch.py": "import module_that_does_not_exist\n",
}

_RESPONSE = {
    "ResponseParameters": {"Headers": {"Request-Id": "context.requestId"}},
    "ResponseTemplates": {
        "application/json": '{"error": {"type": "%s", "code": "%s", '
        '"request_id": "$context.requestId"}}'
    },
}


def _gateway_response(status: int | None, kind: str, code: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(_RESPONSE))
    template = body["ResponseTemplates"]["application/json"]
    body["ResponseTemplates"]["application/json"] = template % (kind, code)
    if status is not None:
        body["StatusCode"] = status
    return body


def _function(handler: str, events: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {"CodeUri": "fns/", "Handler": handler, **extra}
    if events:
        properties["Events"] = events
    return {"Type": "AWS::Serverless::Function", "Properties": properties}


def _api(path: str, method: str, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "Api",
        "Properties": {"RestApiId": {"Ref": "Api"}, "Path": path, "Method": method, **extra},
    }


TEMPLATE: dict[str, Any] = {
    "Parameters": {"Greeting": {"Type": "String", "Default": "hello"}},
    "Globals": {
        "Function": {
            "Timeout": 5,
            "MemorySize": 256,
            "Environment": {
                "Variables": {
                    "TABLE": {"Ref": "Table"},
                    "GREETING": {"Ref": "Greeting"},
                    "INVOCATIONS": "",
                    "ARN": {"Fn::GetAtt": ["Table", "Arn"]},
                }
            },
        }
    },
    "Resources": {
        "Api": {
            "Type": "AWS::Serverless::Api",
            "Properties": {
                "StageName": "v2",
                "BinaryMediaTypes": ["application~1octet-stream"],
                "Auth": {
                    "DefaultAuthorizer": "TokenAuth",
                    "Authorizers": {
                        "TokenAuth": {
                            "FunctionPayloadType": "TOKEN",
                            "FunctionArn": {"Fn::GetAtt": ["AuthFunction", "Arn"]},
                            "Identity": {
                                "Header": "Authorization",
                                "ValidationExpression": "^Bearer [a-z]+$",
                                "ReauthorizeEvery": 60,
                            },
                        }
                    },
                },
                "GatewayResponses": {
                    "UNAUTHORIZED": _gateway_response(401, "authentication_error", "unauthorized"),
                    "ACCESS_DENIED": _gateway_response(403, "permission_error", "denied"),
                    "MISSING_AUTHENTICATION_TOKEN": _gateway_response(
                        404, "invalid_request_error", "route_not_found"
                    ),
                    "DEFAULT_5XX": _gateway_response(None, "api_error", "gateway"),
                    # AUTHORIZER_CONFIGURATION_ERROR is left out: it falls back to DEFAULT_5XX.
                    "AUTHORIZER_FAILURE": {
                        **_gateway_response(503, "api_error", "service_unavailable"),
                        "ResponseParameters": {
                            "Headers": {"Request-Id": "context.requestId", "Retry-After": "'1'"}
                        },
                    },
                },
            },
        },
        "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
        "AuthFunction": _function("auth.handler", Timeout=1),
        "EchoFunction": _function(
            "echo.handler",
            {
                "Get": _api("/items/{item_id}", "get"),
                "Post": _api("/items", "post"),
                "Literal": _api("/items/special", "get"),
                "Open": _api("/open/{proxy+}", "any", Auth={"Authorizer": "NONE"}),
            },
            MemorySize=256,
            Environment={"Variables": {"OWN": "mine", "GREETING": "overridden"}},
        ),
        "SlowFunction": _function("slow.handler", {"Get": _api("/slow", "get")}, Timeout=3),
        "TimeoutFunction": _function("slow.handler", {"Get": _api("/timeout", "get")}, Timeout=1),
        "BrokenFunction": _function("broken.handler", {"Get": _api("/broken", "get")}),
        "MissingFunction": _function("nosuch.handler", {"Get": _api("/missing", "get")}),
    },
}


ALLOW = {"Authorization": "Bearer allow"}


def write_app(root: Path, invocations: Path) -> tuple[dict[str, Any], dict[str, FunctionSpec]]:
    """TEMPLATE, and its functions written under `root` and ready to run; the authorizer
    appends each event it gets to `invocations`."""
    (root / "fns").mkdir()
    for name, source in FUNCTIONS.items():
        (root / "fns" / name).write_text(source)
    template = json.loads(json.dumps(TEMPLATE))
    template["Globals"]["Function"]["Environment"]["Variables"]["INVOCATIONS"] = str(invocations)
    intrinsics = Intrinsics(
        template,
        refs={"Table": "local-table", "Api": "api123"},
        attributes={("Table", "Arn"): "arn:aws:dynamodb:us-east-1:123456789012:table/local-table"},
        region="us-east-1",
    )
    specs = function_specs(
        template, root, intrinsics, region="us-east-1", local_environment={"LOCAL": "yes"}
    )
    return template, specs


def echo(response: requests.Response) -> dict[str, Any]:
    """The echo function's answer: the event, context and environment it saw."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body
