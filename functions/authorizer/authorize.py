"""TOKEN authorizer: `Bearer <key>` → SHA-256 → one GetItem → Allow on the whole API, 401 for a
key that must not pass, 503 when the key store cannot say."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponse,
    APIGatewayAuthorizerTokenEvent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from learnflow import clients
from learnflow.db.accounts import AccountRepository, ApiKey
from learnflow.keys import hash_secret, key_type, parse_authorization
from learnflow.observability import instrument, logger, metrics

# API Gateway answers 401 (its UNAUTHORIZED gateway response) exactly when a TOKEN authorizer
# raises an error whose message is "Unauthorized"; a Deny policy would be a 403. Any other error
# is its AUTHORIZER_FAILURE / AUTHORIZER_CONFIGURATION_ERROR response, which template.yaml makes a
# 503 service_unavailable with Retry-After: what a key store that cannot be read must answer, so
# a client with a good key is never told that its key is bad.
UNAUTHORIZED = "Unauthorized"
UNAVAILABLE = "KeyStoreUnavailable"


class _RefusedError(Exception):
    """A refusal with a reason to log (never the key itself)."""


def _repository() -> AccountRepository:
    # Built at the first request and cached; its short timeouts keep a slow read inside this
    # function's own timeout, so it ends as a 503 rather than a timeout.
    return AccountRepository(clients.key_store())


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
@instrument()
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return authorize(event, time.time())
    except _RefusedError as refusal:
        logger.info("unauthorized", extra={"reason": str(refusal)})
        reason = str(refusal)
    except (ClientError, BotoCoreError):
        # The key store could not be read (an error, a throttle, a timeout): we cannot tell
        # whether the key is good, so the answer is "retry" (503), never "your key is bad" (401).
        # The log formatter scrubs any key from the traceback.
        logger.exception("authorizer could not read the key store")
        # Its own reason: the alarm on this one means "keys cannot be checked", not "bad keys".
        metrics.add("AuthorizerRefusals", reason="key_store_unavailable")
        raise Exception(UNAVAILABLE) from None
    except Exception:
        # Anything else (a malformed event, an item that is not a key) says nothing good about
        # the request: it is refused like an unknown key.
        logger.exception("authorizer refused an unreadable request")
        reason = "unreadable_request"
    metrics.add("AuthorizerRefusals", reason=reason)
    raise Exception(UNAUTHORIZED)
