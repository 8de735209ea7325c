"""Ids: prefix + 24 base62 characters, sorting in creation order, unguessable."""

from __future__ import annotations

import re
import threading
import time

import pytest

from learnflow import ids


@pytest.mark.parametrize("prefix", sorted(ids.PREFIXES))
def test_new_id_has_prefix_and_24_base62_characters(prefix: str) -> None:
    value = ids.new_id(prefix)
    assert re.fullmatch(rf"{prefix}_[0-9A-Za-z]{{24}}", value)
    assert ids.is_valid(value, prefix)


def test_unknown_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="prefix"):
        ids.new_id("xyz")


def test_ids_sort_as_strings_in_creation_order() -> None:
    made = [ids.new_id("crs") for _ in range(5000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_ids_from_many_threads_are_unique() -> None:
    made: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        local = [ids.new_id("enr") for _ in range(500)]
        with lock:
            made.extend(local)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 4000


def test_ids_made_later_sort_later_across_milliseconds() -> None:
    first = ids.new_id("stu")
    time.sleep(0.003)
    assert ids.new_id("stu") > first


def test_timestamp_is_encoded_in_the_id() -> None:
    before = time.time_ns() // 1_000_000
    value = ids.new_id("ins")
    after = time.time_ns() // 1_000_000
    assert before <= ids.timestamp_ms(value) <= after + 1


def test_random_part_differs_between_milliseconds() -> None:
    # Unguessable: ids from different milliseconds share no predictable random tail.
    tails = set()
    for _ in range(20):
        tails.add(ids.new_id("crs")[-16:])
        time.sleep(0.0015)
    assert len(tails) == 20


@pytest.mark.parametrize(
    "value",
    [
        "crs_123",
        "crs_" + "a" * 24 + "\n",
        "crs_" + "a" * 23,
        "crs_" + "a" * 25,
        "stu_" + "a" * 24,
        "crs_" + "-" * 24,
        "",
    ],
)
def test_is_valid_rejects_wrong_shapes(value: str) -> None:
    assert not ids.is_valid(value, "crs")
