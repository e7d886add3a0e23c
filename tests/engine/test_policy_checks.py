"""``Policy``'s checks, value by value, at each bound: what a worker's options accept, what they
are made into, and the words of each refusal. Fast unit tests that mutation testing runs against
``engine/policy.py`` (docs/testing.md, "Mutation testing")."""

from __future__ import annotations

import math

import pytest

from nbworkers.engine.policy import (
    DEFAULT_BATCH_WAIT_S,
    MAX_BATCH,
    MAX_BATCH_WAIT_S,
    MAX_KEEP,
    Policy,
)
from nbworkers.engine.rate import Rate
from nbworkers.errors import ArgumentValueError


def refused(words: str, **options) -> str:
    with pytest.raises(ArgumentValueError) as caught:
        Policy(**options)
    assert str(caught.value) == words
    return str(caught.value)


def test_keep_accepts_one_to_the_most_and_says_the_bounds_otherwise():
    assert Policy(keep=1).keep == 1
    assert Policy(keep=MAX_KEEP).keep == MAX_KEEP
    assert Policy().keep is None
    for bad in (0, MAX_KEEP + 1, -3):
        refused(f"keep must be a whole number of traces from 1 to 10,000, not {bad!r}", keep=bad)
    for bad in (2.0, True, "5"):  # in range, but not a whole number
        refused(f"keep must be a whole number of traces from 1 to 10,000, not {bad!r}", keep=bad)


def test_ttl_accepts_any_time_above_zero_and_says_so_otherwise():
    assert Policy(ttl_s=0.001).ttl_s == 0.001
    assert Policy(ttl_s=1).ttl_s == 1
    assert Policy(ttl_s=0.5).ttl_s == 0.5  # under a second is a time too
    assert Policy().ttl_s is None
    for bad in (0, -1, math.inf, math.nan, True, "60"):
        refused(f"ttl must be a number of seconds above 0 (or None), not {bad!r}", ttl_s=bad)


def test_a_rate_is_parsed_into_a_rate():
    assert Policy(rate="10/s").rate == Rate(10, "s")
    assert Policy(rate=Rate(5, "h")).rate == Rate(5, "h")
    assert Policy().rate is None
    with pytest.raises(ArgumentValueError, match="rate must look like 10/s"):
        Policy(rate="fast")


def test_batch_accepts_one_to_the_most_and_says_the_bounds_otherwise():
    assert Policy(batch=1).batch == 1
    assert Policy(batch=MAX_BATCH).batch == MAX_BATCH
    for bad in (0, MAX_BATCH + 1, 2.0, True):
        refused(
            f"batch must be a whole number of messages from 1 to 100,000 (or None), not {bad!r}",
            batch=bad,
        )


def test_a_batch_waits_a_second_for_more_unless_told_and_no_batch_waits_for_nothing():
    assert Policy(batch=10).batch_wait_s == DEFAULT_BATCH_WAIT_S == 1.0
    assert Policy(batch=10, batch_wait_s=0).batch_wait_s == 0
    assert Policy(batch=10, batch_wait_s=2.5).batch_wait_s == 2.5
    assert Policy(batch=10, batch_wait_s=MAX_BATCH_WAIT_S).batch_wait_s == MAX_BATCH_WAIT_S
    assert Policy().batch_wait_s is None


def test_batch_wait_needs_a_batch_and_a_time_within_its_bounds():
    refused("batch_wait needs batch: give the batch size too, such as --batch 500", batch_wait_s=2)
    refused("batch_wait needs batch: give the batch size too, such as --batch 500", batch_wait_s=0)
    for bad in (-0.5, MAX_BATCH_WAIT_S + 1, math.nan, "1", True):
        refused(
            f"batch_wait must be a number of seconds from 0 to 3600, not {bad!r}",
            batch=10,
            batch_wait_s=bad,
        )
