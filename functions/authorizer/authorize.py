"""TOKEN authorizer: `Bearer <key>` → SHA-256 → one GetItem → Allow on the whole API, or 401."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponse,
    APIGatewayAuthorizerTokenEvent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow import clients
from learnflow.db.accounts import AccountRepository, ApiKey
from learnflow.keys import hash_secret, key_type, parse_authorization
from learnflow.observability import logger

# API Gateway answers 401 (its UNAUTHORIZED gateway response) exactly when a TOKEN authorizer
# raises an error whose message is "Unauthorized"; a Deny policy would be a 403 and any other
# error a 500, so every refusal takes this one path.
UNAUTHORIZED = "Unauthorized"


class _RefusedError(Exception):
    """A refusal with a reason to log (never the key itself)."""


def _repository() -> AccountRepository:
    # clients.table() is built at the first request and cached; the repository is a thin wrapper.
    return AccountRepository(clients.table())


def context_of(key: ApiKey) -> dict[str, str]:
    """What handlers read from `requestContext.authorizer`; strings, as API Gateway passes them."""
    return {
        "account_id": key.account_id,
        "mode": key.mode,
        "plan": key.plan,
        "rate_limit": str(key.rate_limit),
        "key_id": key.id,
        "key_kind": key.kind,
        "permissions": "*" if key.kind == "secret" else ",".join(sorted(key.permissions)),
    }


def allow(key: ApiKey, method_arn: str) -> dict[str, Any]:
    """Allow every method and path of the API and stage that asked (`…/v2/*/*`), so API
    Gateway's cached answer for this token serves every route, not only the first one called."""
    response = APIGatewayAuthorizerResponse.from_route_arn(
        method_arn,
        principal_id=key.account_id,
        context=context_of(key),
        # None (an account without an API Gateway key, e.g. on the local stack) is left out.
        usage_identifier_key=key.api_gateway_key_value,
    )
    response.allow_all_routes()
    return response.asdict()


def authorize(event: dict[str, Any], now: float) -> dict[str, Any]:
    """The policy for a TOKEN event; raises `_RefusedError` for any key that must not pass."""
    token_event = APIGatewayAuthorizerTokenEvent(event)
    secret = parse_authorization(token_event.get("authorizationToken"))
    if secret is None:
        raise _RefusedError("malformed")
    key = _repository().find_key(hash_secret(secret))
    if key is None:
        raise _RefusedError("unknown")
    declared = key_type(secret)
    # The hash covers the prefix, so these always agree; checking costs nothing and keeps a
    # corrupted item from ever crossing modes.
    if declared is None or (declared.kind, declared.mode) != (key.kind, key.mode):
        raise _RefusedError("inconsistent")
    state = key.state_at(now)
    if state != "active":
        logger.info("key refused", extra={"key_id": key.id, "reason": state})
        raise _RefusedError(state)
    result = allow(key, token_event.method_arn)
    logger.info(
        "key accepted",
        extra={"key_id": key.id, "account_id": key.account_id, "mode": key.mode},
    )
    return result


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return authorize(event, time.time())
    except _RefusedError as refusal:
        logger.info("unauthorized", extra={"reason": str(refusal)})
    except Exception:
        # Every failure (a DynamoDB error, a malformed event) must still be a 401, never a 500
        # that a client could tell apart; the log formatter scrubs any key from the traceback.
        logger.exception("authorizer failed")
    raise Exception(UNAUTHORIZED)
