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
# DynamoDB answers in milliseconds: short timeouts let the standard retries (3 attempts) finish
# well inside the functions' 10 s timeout instead of being cut off by it mid-retry.
_BOTO_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=1,
    read_timeout=2,
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
def ses() -> SESV2Client:
    with _lock:
        return _session().client("sesv2", region_name=get_settings().region, config=_BOTO_CONFIG)


def reset() -> None:
    """Forget every cached client and setting (tests, or the local stack after re-pointing)."""
    for factory in (dynamodb, table, ses, get_settings):
        factory.cache_clear()
