"""write_transaction: conditions reported by reason, conflicts retried, a token on every attempt."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from learnflow.db.transactions import write_transaction

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


def _put(table: Table, pk: str) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": table.name,
            "Item": {"PK": pk, "SK": "X", "type": "test"},
            "ConditionExpression": "attribute_not_exists(PK)",
        }
    }


def test_commit_returns_none_and_writes(table: Table) -> None:
    assert write_transaction(table, [_put(table, "A"), _put(table, "B")]) is None
    assert {item["PK"] for item in table.scan()["Items"]} == {"A", "B"}


def test_failed_condition_names_the_action(table: Table) -> None:
    write_transaction(table, [_put(table, "A")])
    reasons = write_transaction(table, [_put(table, "B"), _put(table, "A")])
    assert reasons == ["None", "ConditionalCheckFailed"]
    assert {item["PK"] for item in table.scan()["Items"]} == {"A"}  # all or nothing


def test_every_attempt_carries_its_own_client_request_token(table: Table) -> None:
    tokens: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        tokens.append(params.get("ClientRequestToken", ""))

    events = table.meta.client.meta.events
    events.register("provide-client-params.dynamodb.TransactWriteItems", record)
    try:
        write_transaction(table, [_put(table, "A")])
        write_transaction(table, [_put(table, "B")])
    finally:
        events.unregister("provide-client-params.dynamodb.TransactWriteItems", record)
    assert len(tokens) == 2
    assert all(36 >= len(token) > 0 for token in tokens)
    assert tokens[0] != tokens[1]
