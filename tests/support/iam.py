"""What IAM decides for a function's DynamoDB calls, without AWS: each call is turned into the
requests IAM authorizes (action, resource, `dynamodb:LeadingKeys`), and the function's role, as
SAM translates template.yaml, is evaluated on them as IAM evaluates an identity policy.

- Requests: GetItem, PutItem, UpdateItem, DeleteItem name one partition key; BatchGetItem and
  BatchWriteItem all of theirs; a Query the partition key value of its key condition, on the
  table or on `table/index/<name>`; each item of TransactWriteItems is authorized as the
  PutItem, UpdateItem, DeleteItem or ConditionCheckItem it holds (and TransactGetItems as
  GetItems), which is how DynamoDB authorizes transactions.
- Evaluation: an Allow statement whose Action and Resource patterns match (`*` and `?`) and whose
  conditions hold; `ForAllValues:StringLike` holds when every leading key matches one of the
  patterns (and, as in IAM, for a request with none). No Deny statements are used here.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.client import BaseClient

REGION = "us-east-1"
ACCOUNT = "123456789012"


def table_arn(name: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"


@dataclass(frozen=True, slots=True)
class Request:
    """One authorization IAM makes for a call."""

    action: str  # dynamodb:GetItem
    resource: str  # the table's ARN, or its index's
    leading_keys: tuple[str, ...]


def _pk(key: Mapping[str, Any], attribute: str = "PK") -> str:
    return str(key[attribute]["S"])


def _query_partition(body: Mapping[str, Any]) -> str | None:
    """The partition key value a Query's key condition names (`#n0 = :v0 AND …`)."""
    expression = str(body.get("KeyConditionExpression", ""))
    names = body.get("ExpressionAttributeNames", {})
    values = body.get("ExpressionAttributeValues", {})
    index = body.get("IndexName")
    partition = f"{index}PK" if index else "PK"
    for name, value in re.findall(r"(#?\w+)\s*=\s*(:\w+)", expression):
        if names.get(name, name) == partition:
            return str(values[value]["S"])
    return None


def _single(operation: str, body: Mapping[str, Any]) -> list[Request]:
    key = body["Item"] if operation == "PutItem" else body["Key"]
    return [Request(f"dynamodb:{operation}", table_arn(body["TableName"]), (_pk(key),))]


def _query(operation: str, body: Mapping[str, Any]) -> list[Request]:
    resource = table_arn(body["TableName"])
    if body.get("IndexName"):
        resource += f"/index/{body['IndexName']}"
    partition = _query_partition(body)
    return [Request(f"dynamodb:{operation}", resource, (partition,) if partition else ())]


def _batch_key(request: Mapping[str, Any]) -> str:
    """A BatchGetItem key, or a BatchWriteItem put or delete."""
    if "PutRequest" in request:
        return _pk(request["PutRequest"]["Item"])
    if "DeleteRequest" in request:
        return _pk(request["DeleteRequest"]["Key"])
    return _pk(request)


def _batch(operation: str, body: Mapping[str, Any]) -> list[Request]:
    found = []
    for name, wanted in body["RequestItems"].items():
        items = wanted["Keys"] if isinstance(wanted, dict) else wanted
        keys = tuple(sorted({_batch_key(item) for item in items}))
        found.append(Request(f"dynamodb:{operation}", table_arn(name), keys))
    return found


_TRANSACTION_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _transaction(operation: str, body: Mapping[str, Any]) -> list[Request]:
    del operation  # each item is authorized as the single-item action it holds
    found = []
    for item in body["TransactItems"]:
        ((kind, detail),) = item.items()
        key = detail.get("Key") or detail["Item"]
        action = f"dynamodb:{_TRANSACTION_ACTIONS[kind]}"
        found.append(Request(action, table_arn(detail["TableName"]), (_pk(key),)))
    return found


def _whole_table(operation: str, body: Mapping[str, Any]) -> list[Request]:
    return [Request(f"dynamodb:{operation}", table_arn(str(body.get("TableName", "*"))), ())]


_REQUESTS = {
    "GetItem": _single,
    "PutItem": _single,
    "UpdateItem": _single,
    "DeleteItem": _single,
    "Query": _query,
    "BatchGetItem": _batch,
    "BatchWriteItem": _batch,
    "TransactWriteItems": _transaction,
    "TransactGetItems": _transaction,
}


def requests_of(operation: str, body: Mapping[str, Any]) -> list[Request]:
    """The authorizations one DynamoDB call needs (its wire body, in DynamoDB JSON)."""
    return _REQUESTS.get(operation, _whole_table)(operation, body)


@contextmanager
def recording() -> Iterator[list[Request]]:
    """Every DynamoDB authorization the code inside needs, from what it sends (after boto3
    has built the request, so resource-level conditions and values are on the wire as sent)."""
    found: list[Request] = []
    original = vars(BaseClient)["_make_request"]

    def record(
        self: BaseClient, operation_model: Any, request_dict: dict[str, Any], *args: Any
    ) -> Any:
        if self.meta.service_model.service_name == "dynamodb":
            raw = request_dict.get("body") or b"{}"
            body = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            found.extend(requests_of(str(operation_model.name), body))
        return original(self, operation_model, request_dict, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseClient, "_make_request", record)
        yield found


# --------------------------------------------------------------------------- evaluation


class Resolver:
    """The intrinsics of a role's statements, with this test's table and the parameters'
    defaults (anything else resolves to a value no pattern matches)."""

    def __init__(self, cfn: Mapping[str, Any], table_name: str) -> None:
        self._refs: dict[str, str] = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": "learnflow",
            "Table": table_name,
        }
        for name, body in cfn.get("Parameters", {}).items():
            if "Default" in body:
                self._refs[name] = str(body["Default"])
        self._attributes = {
            ("Table", "Arn"): table_arn(table_name),
            ("Table", "StreamArn"): table_arn(table_name) + "/stream/test",
        }

    def statement(self, statement: Mapping[str, Any]) -> dict[str, Any]:
        """`statement` with its resources resolved."""
        resolved = dict(statement)
        resolved["Resource"] = [self.resolve(r) for r in _as_list(statement.get("Resource", []))]
        return resolved

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict) or len(value) != 1:
            return value
        ((function, argument),) = value.items()
        functions = {
            "Ref": lambda name: self._refs.get(str(name), f"<unresolved {name}>"),
            "Fn::GetAtt": lambda names: self._attributes.get(tuple(names), f"<unresolved {names}>"),
            "Fn::Join": lambda args: str(args[0]).join(str(self.resolve(i)) for i in args[1]),
            "Fn::Sub": self._sub,
        }
        return functions[function](argument) if function in functions else value

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        local = {key: str(self.resolve(item)) for key, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in local:
                return local[name]
            if "." in name:
                return str(self.resolve({"Fn::GetAtt": name.split(".", 1)}))
            return str(self.resolve({"Ref": name}))

        return re.sub(r"\$\{([^}]+)\}", replace, str(text))


def _like(pattern: str, value: str) -> bool:
    """IAM's wildcard match: `*` any run of characters, `?` one; nothing else is special."""
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass
class Policy:
    statements: list[dict[str, Any]]

    @classmethod
    def of(cls, statements: list[dict[str, Any]], resolver: Resolver) -> Policy:
        return cls([resolver.statement(s) for s in statements])

    def allows(self, request: Request) -> bool:
        return any(self._grants(statement, request) for statement in self.statements)

    @staticmethod
    def _grants(statement: Mapping[str, Any], request: Request) -> bool:
        if statement.get("Effect") != "Allow":
            return False
        if not any(_like(a.lower(), request.action.lower()) for a in _as_list(statement["Action"])):
            return False
        if not any(_like(str(r), request.resource) for r in _as_list(statement["Resource"])):
            return False
        for operator, conditions in statement.get("Condition", {}).items():
            for key, patterns in conditions.items():
                if (operator, key) != ("ForAllValues:StringLike", "dynamodb:LeadingKeys"):
                    return False  # a condition this evaluator does not know: never assume it holds
                if not all(
                    any(_like(str(p), value) for p in _as_list(patterns))
                    for value in request.leading_keys
                ):
                    return False
        return True
