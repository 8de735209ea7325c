"""Counts at any size: one small item per shard of each count, whatever the number of categories,
and `total_count` equal to what the list holds for every filter."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from learnflow import deps
from learnflow.db import counters, keys
from learnflow.db.courses import CourseRepository
from learnflow.models.courses import Course
from learnflow.tenancy import Tenant
from tests.support.aws import stored_items

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

CATEGORIES = 5_000


def course(number: int) -> Course:
    return Course(
        id=f"crs_0000{number:020d}",
        title="T",
        description="D",
        category=f"c{number}",
        instructor_id=None,
        instructor=None,
        price=counters.SHARDS * 0 + 10,  # type: ignore[arg-type]
        currency="USD",
        status="published" if number % 2 else "draft",
        enrollment_count=0,
        livemode=False,
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
    )


@pytest.mark.slow
def test_counts_stay_exact_and_small_at_5000_categories(table: Table) -> None:
    tenant = Tenant("acct_" + "1" * 24, "test")
    repository = deps.repository(CourseRepository)
    assert repository.load(tenant, (course(n) for n in range(CATEGORIES))) == CATEGORIES
    assert repository.count(tenant) == CATEGORIES
    assert repository.count(tenant, status="published") == CATEGORIES // 2
    for number in (0, 1, 2_499, 4_999):
        category = f"c{number}"
        assert repository.count(tenant, category=category) == 1
        status = "published" if number % 2 else "draft"
        assert repository.count(tenant, category=category, status=status) == 1
        assert repository.count(tenant, category=category, status="archived") == 0
    # every counter item, all 10,000 and more, is one small number, never a growing map
    shards = [item for item in stored_items() if item[keys.TYPE_ATTRIBUTE] == keys.COUNTER_TYPE]
    assert len(shards) >= 2 * CATEGORIES  # a category's count, and its count in its status
    assert {frozenset(item) for item in shards} == {
        frozenset({keys.PK, keys.SK, keys.TYPE_ATTRIBUTE, counters.COUNT_ATTRIBUTE})
    }
    assert max(len(str(item)) for item in shards) < 300
