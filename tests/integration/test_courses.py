"""Courses in-process: handlers fed events/, over moto's table from template.yaml."""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from functions.courses import create_course, get_course, list_courses, update_course
from functions.instructors import create_instructor
from learnflow import clients, deps, ids
from learnflow.db import counters, keys
from learnflow.db.courses import CourseRepository, StaleCourseError
from learnflow.models.courses import STATUSES, Course, CourseStatus
from learnflow.tenancy import Tenant
from tests.support.dynamo_calls import DynamoCalls, count_dynamo_calls
from tests.support.handlers import Caller, Reply
from tests.support.pages import walk_backward, walk_forward

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
CATEGORIES = ("web", "data-science", "design", "music")


@dataclass
class Api(Caller):
    """The course and instructor routes, called as API Gateway calls them, for one caller."""

    def create(self, **body: Any) -> Reply:
        body = {
            "title": "A course",
            "description": "What it teaches.",
            "price": Decimal("49.99"),
            "currency": "USD",
            **body,
        }
        return self.call(create_course.lambda_handler, "create_course", body=body)

    def get(self, course_id: str) -> Reply:
        return self.call(
            get_course.lambda_handler,
            "get_course",
            path=f"/courses/{course_id}",
            path_params={"course_id": course_id},
        )

    def patch(self, course_id: str, body: dict[str, Any] | str) -> Reply:
        return self.call(
            update_course.lambda_handler,
            "update_course",
            path=f"/courses/{course_id}",
            path_params={"course_id": course_id},
            body=body,
        )

    def list(self, **query: str) -> Reply:
        return self.call(list_courses.lambda_handler, "list_courses", query=query)

    def instructor(self, name: str = "Ada Lovelace") -> dict[str, Any]:
        reply = self.call(
            create_instructor.lambda_handler, "create_instructor", body={"name": name}
        )
        assert reply.status == 201
        return reply.body


def course(tenant: Tenant, *, category: str | None, status: CourseStatus) -> Course:
    """A course to load straight into the table (ids made now, so in creation order)."""
    now = "2025-06-01T12:00:00Z"
    return Course(
        id=ids.new_id("crs"),
        title="Seeded course",
        description="Loaded in a batch.",
        category=category,
        instructor_id=None,
        instructor=None,
        price=Decimal("19.99"),
        currency="USD",
        status=status,
        enrollment_count=0,
        livemode=tenant.livemode,
        created_at=now,
        updated_at=now,
    )


def seed(tenant: Tenant, count: int, rng: random.Random) -> dict[str, tuple[str | None, str]]:
    """`count` courses in random categories (or none) and statuses; id → (category, status)."""
    courses = [
        course(
            tenant,
            category=rng.choice((*CATEGORIES, None)),
            status=rng.choice(STATUSES),
        )
        for _ in range(count)
    ]
    assert deps.repository(CourseRepository).load(tenant, courses) == count
    return {c.id: (c.category, c.status) for c in courses}


def stored(api: Api, course_id: str) -> dict[str, Any]:
    """The raw item of a course."""
    item = clients.table().get_item(Key=keys.item(api.tenant, keys.COURSE, course_id))
    return dict(item["Item"])


def assert_full_pages(pages: list[dict[str, Any]], limit: int, total: int) -> None:
    """Every page but the last holds exactly `limit` items with has_more; the last says no more."""
    for page in pages[:-1]:
        assert page["has_more"] is True
        assert len(page["data"]) == limit
    assert pages[-1]["has_more"] is False
    assert len(pages[-1]["data"]) <= limit
    for page in pages:
        assert page["object"] == "list"
        assert page["url"] == "/v2/courses"
        assert page["total_count"] == total


# --------------------------------------------------------------------------- catalogue


@dataclass
class Catalogue:
    api: Api
    courses: dict[str, tuple[str | None, str]]  # id → (category, status)

    def expected(self, filters: dict[str, str]) -> list[str]:
        """Ids matching `filters` exactly, newest first."""
        matching = [
            course_id
            for course_id, (category, status) in self.courses.items()
            if filters.get("category", category) == category
            and filters.get("status", status) == status
        ]
        return sorted(matching, reverse=True)


def build_catalogue() -> Catalogue:
    """1,000 courses loaded in batches and three dozen made and changed through the handlers,
    with other tenants' courses in the same categories around them."""
    rng = random.Random(20250601)
    api = Api()
    courses: dict[str, tuple[str | None, str]] = {}
    # Through the handlers first, while the table is small: moto copies the whole table for
    # every transaction, so transactions on a big table are slow there (not in DynamoDB).
    for n in range(36):
        category = CATEGORIES[n % 4] if n % 5 else None
        reply = api.create(category=category, title=f"Handler course {n}")
        assert reply.status == 201
        courses[reply.body["id"]] = (category, "draft")
    for n, course_id in enumerate(sorted(courses)):
        body: dict[str, Any] = {"status": ("published", "archived", "draft")[n % 3]}
        if n % 4 == 0:
            body["category"] = CATEGORIES[(n // 4) % 4]
        if n % 7 == 0:
            body["category"] = None
        reply = api.patch(course_id, body)
        assert reply.status == 200, reply.body
        courses[course_id] = (reply.body["category"], reply.body["status"])
    courses.update(seed(api.tenant, 1_000, rng))
    # Other tenants in the same categories: the same account's live mode, another account.
    seed(api.as_mode("live").tenant, 60, rng)
    seed(Api().tenant, 60, rng)
    return Catalogue(api=api, courses=courses)


LISTS: list[dict[str, str]] = [
    {},
    *({"status": str(s)} for s in STATUSES),
    *({"category": c} for c in CATEGORIES),
    *({"category": c, "status": str(s)} for c in CATEGORIES for s in STATUSES),
]


def _list_id(filters: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(filters.items())) or "all"


@pytest.mark.slow
class TestCatalogue:
    """One catalogue of 1,000+ courses (plus other tenants' noise), shared by the class."""

    @pytest.fixture(scope="class")
    @classmethod
    def catalogue(cls, class_table: Table) -> Catalogue:
        return build_catalogue()

    @pytest.mark.parametrize("filters", LISTS, ids=_list_id)
    def test_every_filter_walks_forward_in_full_pages_with_no_gap(
        self, catalogue: Catalogue, filters: dict[str, str]
    ) -> None:
        expected = catalogue.expected(filters)
        assert expected, "the seed should fill every list"
        limit = min(100, math.ceil(len(expected) / 4))
        pages = walk_forward(catalogue.api, limit, **filters)
        assert_full_pages(pages, limit, len(expected))
        assert [c["id"] for page in pages for c in page["data"]] == expected
        for page in pages:
            for item in page["data"]:
                assert (item["category"], item["status"]) == catalogue.courses[item["id"]]

    @pytest.mark.parametrize("filters", LISTS, ids=_list_id)
    def test_every_filter_walks_backward_in_full_pages_with_no_gap(
        self, catalogue: Catalogue, filters: dict[str, str]
    ) -> None:
        expected = catalogue.expected(filters)
        limit = min(100, math.ceil(len(expected) / 3))
        pages = walk_backward(catalogue.api, limit, expected[-1], **filters)
        assert_full_pages(pages, limit, len(expected))
        # each page is newest first; read from the last page fetched to the first
        walked = [c["id"] for page in reversed(pages) for c in page["data"]]
        assert walked == expected[:-1]

    def test_a_list_whose_size_is_a_multiple_of_the_limit_ends_without_an_empty_page(
        self, catalogue: Catalogue
    ) -> None:
        sizes = sorted((len(catalogue.expected(f)), _list_id(f), f) for f in LISTS)
        size, _, filters, limit = next(
            (size, name, filters, d)
            for size, name, filters in sizes
            for d in range(size // 2, 1, -1)
            if size % d == 0
        )
        pages = walk_forward(catalogue.api, limit, **filters)
        assert len(pages) == size // limit
        assert all(len(page["data"]) == limit for page in pages)
        assert pages[-1]["has_more"] is False

    def test_default_page_is_the_ten_newest(self, catalogue: Catalogue) -> None:
        reply = catalogue.api.list()
        assert [c["id"] for c in reply.body["data"]] == catalogue.expected({})[:10]
        assert reply.body["has_more"] is True

    def test_a_filter_with_no_match_is_an_empty_list(self, catalogue: Catalogue) -> None:
        reply = catalogue.api.list(category="no-such-category", status="draft")
        assert reply.status == 200
        assert (reply.body["data"], reply.body["has_more"], reply.body["total_count"]) == (
            [],
            False,
            0,
        )

    def test_cursor_from_another_filter_is_400_resource_missing(self, catalogue: Catalogue) -> None:
        draft = catalogue.expected({"status": "draft"})[3]
        for param in ("starting_after", "ending_before"):
            reply = catalogue.api.list(status="published", **{param: draft})
            assert reply.status == 400
            assert (reply.error["code"], reply.error["param"]) == ("resource_missing", param)
        # the same id is a fine cursor in its own list
        assert catalogue.api.list(status="draft", starting_after=draft).status == 200

    @pytest.mark.parametrize(
        "cursor", ["crs_nope", "ins_000000000000000000000001", "crs_" + "0" * 24, "x" * 100]
    )
    def test_cursor_that_is_no_course_of_this_list_is_400(
        self, catalogue: Catalogue, cursor: str
    ) -> None:
        reply = catalogue.api.list(starting_after=cursor)
        assert reply.status == 400
        assert (reply.error["code"], reply.error["param"]) == ("resource_missing", "starting_after")

    def test_other_tenants_courses_are_neither_listed_nor_cursors(
        self, catalogue: Catalogue
    ) -> None:
        live = catalogue.api.as_mode("live")
        live_ids = [c["id"] for c in walk_forward(live, 100)[0]["data"]]
        assert len(live_ids) == 60
        assert not set(live_ids) & set(catalogue.courses)
        reply = catalogue.api.list(ending_before=live_ids[0])
        assert (reply.status, reply.error["param"]) == (400, "ending_before")
        assert catalogue.api.get(live_ids[0]).status == 404
        assert live.get(catalogue.expected({})[0]).status == 404

    def test_both_cursors_at_once_are_400(self, catalogue: Catalogue) -> None:
        newest, older = catalogue.expected({})[:2]
        reply = catalogue.api.list(starting_after=older, ending_before=newest)
        assert reply.status == 400
        assert reply.error["code"] == "parameter_invalid"
        assert reply.error["param"] in ("starting_after", "ending_before")

    def test_counters_match_the_catalogue_for_every_filter(self, catalogue: Catalogue) -> None:
        repository = deps.repository(CourseRepository)
        for filters in LISTS:
            count = repository.count(catalogue.api.tenant, **filters)
            assert count == len(catalogue.expected(filters)), filters


# --------------------------------------------------------------------------- create / get


def _with(course: Course, **changes: Any) -> Course:
    from dataclasses import replace  # noqa: PLC0415 - only these tests build versions by hand

    return replace(course, **changes)


@pytest.mark.usefixtures("class_table")
class TestCourses:
    """Create, retrieve, update, validate: each test in its own tenant of one shared table."""

    def test_create_answers_201_with_a_draft_course(self) -> None:
        api = Api()
        reply = api.create(category="web", metadata={"cohort": "2025"})
        assert reply.status == 201
        body = reply.body
        assert ids.is_valid(body["id"], "crs")
        assert body["object"] == "course"
        assert (body["status"], body["enrollment_count"], body["livemode"]) == ("draft", 0, False)
        assert (body["category"], body["instructor"], body["instructor_id"]) == ("web", None, None)
        assert body["metadata"] == {"cohort": "2025"}
        assert ISO.match(body["created_at"])
        assert body["updated_at"] == body["created_at"]
        assert api.get(body["id"]).body == body
        assert reply.headers["Request-Id"]
        assert reply.headers["X-RateLimit-Limit"] == str(api.rate_limit)

    def test_live_mode_courses_say_livemode_true(self) -> None:
        reply = Api(mode="live").create()
        assert (reply.status, reply.body["livemode"]) == (201, True)

    @pytest.mark.parametrize(
        ("price", "currency", "written"),
        [
            (Decimal("1.13"), "usd", "1.13"),
            (Decimal("0.29"), "CAD", None),  # below CAD's 0.50 minimum
            (Decimal("0.30"), "GBP", "0.3"),
            (Decimal("49.99"), "EUR", "49.99"),
            (5000, "JPY", "5000"),
            (Decimal("1.234"), "BHD", "1.234"),
            (0, "USD", "0"),
        ],
    )
    def test_prices_round_trip_exactly(
        self, price: Decimal | int, currency: str, written: str | None
    ) -> None:
        api = Api()
        created = api.create(price=price, currency=currency)
        if written is None:
            assert (created.status, created.error["param"]) == (400, "price")
            return
        assert created.status == 201
        assert f'"price":{written},' in created.text
        assert created.body["currency"] == currency.upper()
        again = api.get(created.body["id"])
        assert f'"price":{written},' in again.text
        assert stored(api, created.body["id"])["price"] == Decimal(written)

    @pytest.mark.parametrize(
        ("change", "code", "param"),
        [
            ({"price": "49.99"}, "parameter_invalid", "price"),
            ({"price": Decimal("49.999")}, "parameter_invalid", "price"),
            ({"price": Decimal("10.5"), "currency": "JPY"}, "parameter_invalid", "price"),
            ({"price": Decimal("0.49")}, "parameter_invalid", "price"),
            ({"currency": "ABC"}, "parameter_invalid", "currency"),
            ({"title": None}, "parameter_invalid", "title"),
            ({"status": "published"}, "parameter_unknown", "status"),
            ({"category": "Web"}, "parameter_invalid", "category"),
            ({"metadata": {"k": 1}}, "parameter_invalid", "metadata"),
            ("[1, 2]", "invalid_json", None),
            ("{not json", "invalid_json", None),
        ],
    )
    def test_bad_create_bodies_are_400_and_store_nothing(
        self, change: dict[str, Any] | str, code: str, param: str | None
    ) -> None:
        api = Api()
        valid = {"title": "T", "description": "D", "price": 10, "currency": "USD"}
        body = change if isinstance(change, str) else {**valid, **change}
        reply = api.call(create_course.lambda_handler, "create_course", body=body)
        assert reply.status == 400
        assert (reply.error["type"], reply.error["code"]) == ("invalid_request_error", code)
        assert reply.error.get("param") == param
        assert api.list().body["total_count"] == 0

    def test_create_shows_the_instructors_name(self) -> None:
        api = Api()
        instructor = api.instructor("Grace Hopper")
        reply = api.create(instructor_id=instructor["id"])
        assert reply.status == 201
        assert (reply.body["instructor"], reply.body["instructor_id"]) == (
            "Grace Hopper",
            instructor["id"],
        )

    @pytest.mark.parametrize("whose", ["other account", "other mode", "nobody", "malformed"])
    def test_create_with_an_instructor_not_of_this_tenant_is_400_resource_missing(
        self, whose: str
    ) -> None:
        api = Api()
        if whose == "other account":
            instructor_id = Api().instructor()["id"]
        elif whose == "other mode":
            instructor_id = api.as_mode("live").instructor()["id"]
        elif whose == "nobody":
            instructor_id = ids.new_id("ins")
        else:
            instructor_id = "ins_123"
        reply = api.create(instructor_id=instructor_id)
        assert reply.status == 400
        assert (reply.error["code"], reply.error["param"]) == ("resource_missing", "instructor_id")
        assert api.list().body["total_count"] == 0

    @pytest.mark.parametrize("course_id", ["nope", "crs_123", "ins_0000000000000000000000AA"])
    def test_get_by_an_id_of_the_wrong_shape_is_404(self, course_id: str) -> None:
        reply = Api().get(course_id)
        assert reply.status == 404
        assert (reply.error["code"], reply.error["type"]) == (
            "resource_missing",
            "invalid_request_error",
        )

    def test_another_tenants_course_is_404_exactly_as_a_missing_one(self) -> None:
        owner = Api()
        course_id = owner.create().body["id"]
        missing = owner.get(ids.new_id("crs"))
        for stranger in (Api(), owner.as_mode("live")):
            reply = stranger.get(course_id)
            assert reply.status == 404
            assert {k: v for k, v in reply.error.items() if k not in ("message", "request_id")} == {
                k: v for k, v in missing.error.items() if k not in ("message", "request_id")
            }
            assert stranger.patch(course_id, {"title": "Mine now"}).status == 404
            assert stranger.list().body["total_count"] == 0
        assert owner.get(course_id).body["title"] == "A course"

    def test_a_read_only_key_cannot_create(self) -> None:
        reader = Api(permissions="courses:read")
        reply = reader.create()
        assert reply.status == 403
        assert reply.error["code"] == "insufficient_permissions"
        assert reader.list().status == 200

    def test_the_rate_limit_comes_before_the_input_and_a_refused_call_does_nothing(self) -> None:
        api = Api(rate_limit=2)
        assert api.create().status == 201
        assert api.list(limit="abc").status == 400  # counted, though invalid
        refused = api.create()
        assert refused.status == 429
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert deps.repository(CourseRepository).count(api.tenant) == 1

    @pytest.mark.parametrize(
        ("query", "param"),
        [
            ({"limit": "0"}, "limit"),
            ({"limit": "101"}, "limit"),
            ({"limit": "abc"}, "limit"),
            ({"limit": "1.5"}, "limit"),
            ({"limit": "-1"}, "limit"),
            ({"status": "deleted"}, "status"),
            ({"category": "Not A Slug"}, "category"),
            ({"expand": "instructor"}, "expand"),
        ],
    )
    def test_bad_list_queries_are_400_with_param(self, query: dict[str, str], param: str) -> None:
        reply = Api().list(**query)
        assert reply.status == 400
        assert reply.error["param"] == param

    # --------------------------------------------------------------------------- update

    def test_status_machine_through_patch(self) -> None:
        api = Api()
        course_id = api.create().body["id"]
        steps: list[tuple[str, int, str | None]] = [
            ("draft", 200, None),  # the current status again: nothing changes
            ("published", 200, None),
            ("draft", 400, "invalid_status_transition"),
            ("archived", 200, None),
            ("draft", 400, "invalid_status_transition"),
            ("published", 200, None),
        ]
        for status, code, error in steps:
            reply = api.patch(course_id, {"status": status})
            assert reply.status == code, (status, reply.body)
            if error:
                assert (reply.error["code"], reply.error["param"]) == (error, "status")
        assert api.get(course_id).body["status"] == "published"
        draft_then_archived = api.create().body["id"]
        assert api.patch(draft_then_archived, {"status": "archived"}).body["status"] == "archived"

    def test_setting_the_current_status_again_changes_nothing(self) -> None:
        api = Api()
        created = api.create().body
        before = stored(api, created["id"])
        reply = api.patch(created["id"], {"status": "draft"})
        assert reply.body == created
        after = stored(api, created["id"])
        assert after == before

    def test_patch_changes_only_what_it_names(self) -> None:
        api = Api()
        instructor = api.instructor("Barbara Liskov")
        created = api.create(
            category="web", metadata={"a": "1", "b": "2"}, instructor_id=instructor["id"]
        ).body
        reply = api.patch(
            created["id"],
            '{"title": "New title", "price": 19.5, "metadata": {"a": "", "b": null, "c": "3"}}',
        )
        assert reply.status == 200
        body = reply.body
        assert (body["title"], body["price"], body["metadata"]) == (
            "New title",
            Decimal("19.5"),
            {"c": "3"},
        )
        assert '"price":19.5,' in reply.text
        unchanged = ("description", "category", "instructor", "instructor_id", "currency", "status")
        assert {k: body[k] for k in unchanged} == {k: created[k] for k in unchanged}
        assert body["created_at"] == created["created_at"]
        assert api.get(created["id"]).body == body

    def test_patch_null_clears_category_instructor_and_metadata(self) -> None:
        api = Api()
        instructor = api.instructor()
        created = api.create(category="web", instructor_id=instructor["id"], metadata={"k": "v"})
        reply = api.patch(
            created.body["id"], {"category": None, "instructor_id": None, "metadata": None}
        )
        assert reply.status == 200
        body = reply.body
        assert (body["category"], body["instructor"], body["instructor_id"], body["metadata"]) == (
            None,
            None,
            None,
            {},
        )
        item = stored(api, body["id"])
        assert not {"GSI2PK", "GSI2SK", "GSI3PK", "GSI3SK", "category"} & set(item)
        assert api.list(category="web").body["total_count"] == 0

    def test_patch_links_an_instructor_of_this_tenant_only(self) -> None:
        api = Api()
        course_id = api.create().body["id"]
        foreign = Api().instructor()["id"]
        reply = api.patch(course_id, {"instructor_id": foreign})
        assert (reply.status, reply.error["code"], reply.error["param"]) == (
            400,
            "resource_missing",
            "instructor_id",
        )
        own = api.instructor("Edsger Dijkstra")["id"]
        linked = api.patch(course_id, {"instructor_id": own}).body
        assert (linked["instructor_id"], linked["instructor"]) == (own, "Edsger Dijkstra")

    @pytest.mark.parametrize(
        ("body", "param"),
        [
            ('{"currency": "JPY"}', "currency"),  # 49.99 cannot be a JPY price
            ('{"price": 10.5, "currency": "JPY"}', "price"),
            ('{"price": 0.2}', "price"),
            ('{"price": "20"}', "price"),
            ('{"title": null}', "title"),
            ('{"status": null}', "status"),
            ('{"status": "deleted"}', "status"),
            ('{"enrollment_count": 5}', "enrollment_count"),
            ('{"metadata": {"k": 5}}', "metadata"),
        ],
    )
    def test_bad_patches_are_400_and_change_nothing(self, body: str, param: str) -> None:
        api = Api()
        created = api.create().body
        reply = api.patch(created["id"], body)
        assert reply.status == 400
        assert reply.error["param"] == param
        assert api.get(created["id"]).body == created

    def test_a_currency_change_with_a_fitting_price_is_accepted(self) -> None:
        api = Api()
        course_id = api.create().body["id"]
        reply = api.patch(course_id, {"currency": "jpy", "price": 5000})
        assert (reply.status, reply.body["currency"], reply.body["price"]) == (200, "JPY", 5000)
        assert '"price":5000,' in reply.text

    def test_patch_of_a_missing_course_is_404(self) -> None:
        for course_id in (ids.new_id("crs"), "crs_nope"):
            reply = Api().patch(course_id, {"title": "x"})
            assert (reply.status, reply.error["code"]) == (404, "resource_missing")

    def test_counters_follow_status_and_category_changes(self) -> None:
        api = Api()
        a = api.create(category="web").body["id"]
        b = api.create(category="web").body["id"]
        c = api.create().body["id"]
        api.patch(a, {"status": "published"})
        api.patch(b, {"category": "design", "status": "archived"})
        api.patch(c, {"category": "web"})
        api.patch(a, {"category": None})
        expected = {
            (): 3,
            (("status", "draft"),): 1,
            (("status", "published"),): 1,
            (("status", "archived"),): 1,
            (("category", "web"),): 1,
            (("category", "design"),): 1,
            (("category", "web"), ("status", "draft")): 1,
            (("category", "web"), ("status", "published")): 0,
            (("category", "design"), ("status", "archived")): 1,
            (("category", "design"), ("status", "draft")): 0,
        }
        for filters, count in expected.items():
            reply = api.list(**dict(filters))
            assert reply.body["total_count"] == count, filters
            assert len(reply.body["data"]) == count, filters

    def test_a_stale_write_is_refused_and_counters_stay_exact(self) -> None:
        """Two concurrent PATCHes read the same version; only the first may write."""
        api = Api()
        repository = deps.repository(CourseRepository)
        course_id = api.create(category="web").body["id"]
        before = repository.get(api.tenant, course_id)
        first = repository.save(api.tenant, before, _with(before, status="published"))
        with pytest.raises(StaleCourseError):
            repository.save(api.tenant, before, _with(before, status="archived", category="music"))
        assert repository.get(api.tenant, course_id) == first
        assert first.version == before.version + 1
        assert repository.count(api.tenant, status="published") == 1
        assert repository.count(api.tenant, status="archived") == 0
        assert repository.count(api.tenant, category="music") == 0
        assert repository.count(api.tenant, category="web", status="published") == 1
        # a PATCH after the concurrent write applies to the fresh version
        reply = api.patch(course_id, {"status": "archived"})
        assert (reply.status, reply.body["status"]) == (200, "archived")
        assert repository.get(api.tenant, course_id).version == first.version + 1

    def test_a_patch_never_overwrites_the_enrollment_count(self) -> None:
        api = Api()
        course_id = api.create().body["id"]
        # what enrollments will do: an atomic ADD, without touching the version
        clients.table().update_item(
            Key=keys.item(api.tenant, keys.COURSE, course_id),
            UpdateExpression="ADD enrollment_count :one",
            ExpressionAttributeValues={":one": 1},
        )
        reply = api.patch(course_id, {"title": "Renamed", "status": "published"})
        assert reply.body["enrollment_count"] == 1


# --------------------------------------------------------------------------- read budget


def measure(api: Api, **query: str) -> tuple[DynamoCalls, dict[str, Any]]:
    with count_dynamo_calls(clients.table().meta.client) as calls:
        reply = api.list(**query)
    assert reply.status == 200, reply.body
    return calls, reply.body


def assert_within_budget(catalogue: Catalogue, filters: dict[str, str], limit: int) -> None:
    """List `filters` with no cursor and with each cursor (from the middle of the list, so both
    directions have full pages when the list is long enough) and check what was read: one Query
    of at most `limit + 2` items, one BatchGetItem of the count's shards, the rate-limit
    UpdateItem, nothing else."""
    expected = catalogue.expected(filters)
    middle = len(expected) // 2
    for cursor, page in (
        ({}, expected[:limit]),
        ({"starting_after": expected[middle]}, expected[middle + 1 : middle + 1 + limit]),
        ({"ending_before": expected[middle]}, expected[max(0, middle - limit) : middle]),
    ):
        calls, body = measure(catalogue.api, **filters, limit=str(limit), **cursor)
        assert [c["id"] for c in body["data"]] == page
        assert body["total_count"] == len(expected)
        assert calls.calls["Scan"] == 0
        assert calls.calls["UpdateItem"] == 1  # the rate-limit window, nothing else written
        assert (calls.calls["Query"], calls.calls["BatchGetItem"], calls.reads) == (1, 1, 2)
        assert calls.items["Query"] <= limit + (2 if cursor else 1)
        assert calls.items["BatchGetItem"] <= counters.SHARDS  # the count's shards
        bound = limit + (2 if cursor else 1) + counters.SHARDS
        assert calls.items_read <= bound, (filters, cursor, calls.log)


BUDGET_LISTS = [
    {},
    {"status": "published"},
    {"category": "web"},
    {"category": "web", "status": "draft"},
]


@pytest.mark.parametrize("limit", [1, 10, 100])
def test_a_list_call_reads_a_bounded_number_of_items_at_100_courses(
    table: Table, limit: int
) -> None:
    api = Api()
    catalogue = Catalogue(api, seed(api.tenant, 100, random.Random(100)))
    for filters in BUDGET_LISTS:
        assert_within_budget(catalogue, filters, limit)


@pytest.mark.slow
def test_a_list_call_reads_a_bounded_number_of_items_at_10000_courses(table: Table) -> None:
    api = Api()
    catalogue = Catalogue(api, seed(api.tenant, 10_000, random.Random(10_000)))
    for filters in BUDGET_LISTS:
        for limit in (10, 100):
            assert_within_budget(catalogue, filters, limit)
