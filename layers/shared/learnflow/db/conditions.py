"""How a DynamoDB call failed, by error code (never by message text)."""

from __future__ import annotations

from typing import Final

from botocore.exceptions import ClientError

CONDITION_FAILED: Final = "ConditionalCheckFailedException"


def error_code(error: ClientError) -> str:
    """AWS's error code of a failed call (`ConditionalCheckFailedException`, …)."""
    return str(error.response.get("Error", {}).get("Code", ""))


def condition_failed(error: ClientError) -> bool:
    """Whether a conditional write was refused because its condition did not hold."""
    return error_code(error) == CONDITION_FAILED
