"""AWS and Stripe clients: small cached factories, the one place tests replace them.

Nothing is created at import time: a function's first request builds what it uses.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from learnflow.config import get_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource, Table
    from mypy_boto3_sesv2.client import SESV2Client

# boto3's sessions are not thread-safe when clients are created concurrently (tests and tools
# call handlers from threads), so clients are built from one session under a lock.
_lock = threading.Lock()
# DynamoDB answers in milliseconds: short timeouts let the standard retries finish inside the
# functions' 10 s timeout instead of being cut off by it mid-retry: three attempts of at most
# 0.5 + 1.5 s, and standard mode's random backoff of at most 1 s then 2 s between them: 9 s.
# (`total_max_attempts` counts the first attempt; botocore's `max_attempts` would not.)
_BOTO_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 3},
    connect_timeout=0.5,
    read_timeout=1.5,
)
# The authorizer must answer inside its own 5 s timeout even when DynamoDB is slow, so that a
# slow key store ends as its 503 (a raised error), never as a timeout: two attempts of at most
# 0.5 + 0.8 s, and at most 1 s of backoff between them: 3.6 s.
KEY_STORE_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 2},
    connect_timeout=0.5,
    read_timeout=0.8,
)


@lru_cache(maxsize=1)
def _session() -> boto3.session.Session:
    # Kept across reset(): it holds botocore's loaded service models, which are costly to load
    # again; clients take the region from the settings when they are made.
    return boto3.session.Session()


@lru_cache(maxsize=1)
def dynamodb() -> DynamoDBServiceResource:
    with _lock:
        return _session().resource(
            "dynamodb", region_name=get_settings().region, config=_BOTO_CONFIG
        )


@lru_cache(maxsize=1)
def table() -> Table:
    return dynamodb().Table(get_settings().require_table())


@lru_cache(maxsize=1)
def key_store() -> Table:
    """The table as the authorizer reads it: with the short timeouts of KEY_STORE_CONFIG."""
    with _lock:
        resource = _session().resource(
            "dynamodb", region_name=get_settings().region, config=KEY_STORE_CONFIG
        )
    return resource.Table(get_settings().require_table())


@lru_cache(maxsize=1)
def ses() -> SESV2Client:
    with _lock:
        return _session().client("sesv2", region_name=get_settings().region, config=_BOTO_CONFIG)


def reset() -> None:
    """Forget every cached client and setting (tests, or the local stack after re-pointing)."""
    for factory in (dynamodb, table, key_store, ses, get_settings):
        factory.cache_clear()
