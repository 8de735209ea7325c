"""A Python client generated from the OpenAPI document runs the README's walk-through.

`openapi-python-client` generates a client from `functions/openapi/openapi.json` into a fresh
temporary directory (nothing is cached between runs); it must do so without a warning, since a
warning means a part of the document it could not turn into code. The test then imports the
generated package and walks from a course to a refund through its `sync_detailed` functions, as
the README's `sh walkthrough` block does with curl: a course (a draft), published, the list of
published courses, a student, a declined card (402), a paid enrollment with `pm_card_visa` and an
`Idempotency-Key` (sent twice: the second answer is a replay), retrieved, then cancelled with a
refund. Every answer must be parsed by the generated models, as the document describes it.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "functions" / "openapi" / "openapi.json"
PACKAGE = "learnflow_generated_client"
GENERATION_TIMEOUT = 30  # seconds; it takes about 1.5
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
REQUEST_TIMEOUT = 10.0


class Generated:
    """The generated package's modules, looked up by dotted name below the package."""

    def __init__(self, root: ModuleType) -> None:
        self.root = root

    def module(self, name: str) -> Any:
        return importlib.import_module(f"{PACKAGE}.{name}")

    def api(self, tag: str, operation: str) -> Any:
        return self.module(f"api.{tag}.{operation}")

    @property
    def models(self) -> Any:
        return self.module("models")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    """The client generated from the document, importable for the length of the module."""
    out = tmp_path_factory.mktemp("client")
    bin_dir = str(Path(sys.executable).parent)  # ruff, which the generator formats with
    started = time.monotonic()
    result = subprocess.run(  # noqa: S603 - the generator, on our own document
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(DOCUMENT),
            "--meta",
            "none",
            "--output-path",
            str(out / PACKAGE),
            "--fail-on-warning",
        ],
        cwd=out,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=GENERATION_TIMEOUT,
        check=False,
    )
    elapsed = time.monotonic() - started
    said = f"{result.stdout}\n{result.stderr}".strip()
    assert result.returncode == 0, f"openapi-python-client failed ({elapsed:.1f} s):\n{said}"
    assert "warning" not in said.lower(), f"openapi-python-client warned:\n{said}"
    assert "error" not in said.lower(), f"openapi-python-client reported an error:\n{said}"
    assert (out / PACKAGE / "__init__.py").exists(), said
    sys.path.insert(0, str(out))
    try:
        yield Generated(importlib.import_module(PACKAGE))
    finally:
        sys.path.remove(str(out))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def _ok(response: Any, status: int) -> Any:
    """The parsed body of a response that must have `status`."""
    assert response.status_code == status, (
        f"expected {status}, got {int(response.status_code)}: {response.content!r}"
    )
    assert response.parsed is not None, f"the client could not parse {response.content!r}"
    return response.parsed


def test_the_generator_reads_every_operation_of_the_document(generated: Generated) -> None:
    """One module per operation, named by its operationId, under its first tag."""
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    for item in document["paths"].values():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            module = generated.api(operation["tags"][0], operation["operationId"])
            assert callable(module.sync_detailed), operation["operationId"]


def test_the_readme_walkthrough_through_the_generated_client(
    stack: Stack, generated: Generated
) -> None:
    models = generated.models
    unset = generated.module("types").UNSET
    account = stack.create_account("pro")
    client = generated.module("client").AuthenticatedClient(
        base_url=stack.api,
        token=account.keys["test"],
        timeout=httpx.Timeout(REQUEST_TIMEOUT),
        raise_on_unexpected_status=True,
    )

    # a course (always created as a draft), then published
    course = _ok(
        generated.api("courses", "create_course").sync_detailed(
            client=client,
            body=models.CourseCreate(
                title="Intro to Python",
                description="From zero to scripts.",
                price=49.99,
                currency="usd",
            ),
        ),
        201,
    )
    assert isinstance(course, models.CourseOut)
    assert (course.title, course.price, course.currency) == ("Intro to Python", 49.99, "USD")
    assert course.status == models.CourseOutStatus.DRAFT
    assert (course.category, course.instructor, course.livemode) == (None, None, False)
    assert course.enrollment_count == 0
    published = _ok(
        generated.api("courses", "update_course").sync_detailed(
            course.id,
            client=client,
            body=models.CourseUpdate(status=models.CourseUpdateStatus.PUBLISHED),
        ),
        200,
    )
    assert (published.id, published.status) == (course.id, models.CourseOutStatus.PUBLISHED)

    # published courses, newest first, five at a time
    listed = _ok(
        generated.api("courses", "list_courses").sync_detailed(
            client=client, status=models.ListCoursesStatusType0.PUBLISHED, limit=5
        ),
        200,
    )
    assert isinstance(listed, models.CourseList)
    assert [item.id for item in listed.data] == [course.id]
    assert (listed.has_more, listed.total_count, listed.url) == (False, 1, "/v2/courses")

    # a student
    student = _ok(
        generated.api("students", "create_student").sync_detailed(
            client=client,
            body=models.StudentCreate(email="ada@example.com", name="Ada Lovelace"),
        ),
        201,
    )
    assert isinstance(student, models.StudentOut)
    assert (student.email, student.name) == ("ada@example.com", "Ada Lovelace")

    create_enrollment = generated.api("enrollments", "create_enrollment").sync_detailed

    # a declined card: 402 card_error, nothing enrolled or charged
    declined = _ok(
        create_enrollment(
            client=client,
            body=models.EnrollmentCreate(
                student_id=student.id,
                course_id=course.id,
                payment_method_id="pm_card_chargeDeclined",
            ),
        ),
        402,
    )
    assert isinstance(declined, models.Error)
    assert (declined.error.type_, declined.error.code, declined.error.decline_code) == (
        "card_error",
        "card_declined",
        "generic_decline",
    )

    # a paid enrollment with Stripe's test card, sent twice with one Idempotency-Key
    key = f"enroll-{student.id}-{course.id}"
    body = models.EnrollmentCreate(
        student_id=student.id,
        course_id=course.id,
        payment_method_id="pm_card_visa",
        send_welcome_email=True,
    )
    first = create_enrollment(client=client, body=body, idempotency_key=key)
    enrollment = _ok(first, 201)
    assert isinstance(enrollment, models.EnrollmentOut)
    assert enrollment.status == models.EnrollmentOutStatus.ACTIVE
    assert (enrollment.student_id, enrollment.course_id) == (student.id, course.id)
    assert enrollment.canceled_at is None
    assert enrollment.welcome_email == models.EnrollmentOutWelcomeEmail.REQUESTED
    payment = enrollment.payment
    assert isinstance(payment, models.PaymentOut)
    assert (payment.amount, payment.amount_refunded, payment.currency, payment.status) == (
        4999,
        0,
        "usd",
        models.PaymentOutStatus.SUCCEEDED,
    )
    assert payment.id.startswith("pi_")
    assert "Idempotent-Replayed" not in first.headers
    again = create_enrollment(client=client, body=body, idempotency_key=key)
    replayed = _ok(again, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (replayed.id, replayed.payment.id) == (enrollment.id, payment.id)

    # retrieve it
    retrieved = _ok(
        generated.api("enrollments", "get_enrollment").sync_detailed(enrollment.id, client=client),
        200,
    )
    assert retrieved.to_dict() == enrollment.to_dict()

    # cancel with a full refund: the payment shows "refunded"
    canceled = _ok(
        generated.api("enrollments", "cancel_enrollment").sync_detailed(
            enrollment.id, client=client, body=models.EnrollmentCancel(refund=True)
        ),
        200,
    )
    assert (canceled.id, canceled.status) == (enrollment.id, models.EnrollmentOutStatus.CANCELED)
    assert canceled.canceled_at not in (None, unset)
    assert (canceled.payment.status, canceled.payment.amount_refunded) == (
        models.PaymentOutStatus.REFUNDED,
        4999,
    )


def test_the_reference_routes_through_the_generated_client(
    stack: Stack, generated: Generated
) -> None:
    """GET /openapi.json and GET /docs need no key: the plain `Client` reaches them."""
    client = generated.module("client").Client(
        base_url=stack.api, timeout=httpx.Timeout(REQUEST_TIMEOUT), raise_on_unexpected_status=True
    )
    document = _ok(generated.api("reference", "get_openapi").sync_detailed(client=client), 200)
    served = document.to_dict()
    assert served == json.loads(DOCUMENT.read_text(encoding="utf-8"))
    page = _ok(generated.api("reference", "get_docs").sync_detailed(client=client), 200)
    assert isinstance(page, str)
    assert page.lstrip().lower().startswith("<!doctype html")
