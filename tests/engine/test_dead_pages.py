"""nw.dead_letters pages through a worker's dead letters (issue #22: a worker may have a
million): at most ``limit`` (100 by default), from ``offset``."""

from __future__ import annotations

import pytest

from nbworkers.errors import ArgumentValueError
from nbworkers.handlers import from_function


def fail(event):
    raise ValueError(f"bad {event}")


def test_dead_letters_come_a_page_at_a_time_oldest_first(rt):
    rt.define("w", from_function("w", fail), 2)
    rt.emit_many(range(250), "w")
    assert rt.wait("w", timeout=60) and rt.counts("w")["dead"] == 250
    first = rt.dead_letters("w")
    assert len(first) == 100  # the default page
    pages = [rt.dead_letters("w", 100, offset) for offset in (0, 100, 200, 300)]
    assert [len(p) for p in pages] == [100, 100, 50, 0]
    everything = rt.dead_letters("w", None)
    assert [d["id"] for p in pages for d in p] == [d["id"] for d in everything]
    assert [d["id"] for d in first] == [d["id"] for d in everything[:100]]
    assert len(everything) == 250 and len({d["id"] for d in everything}) == 250
    assert rt.dead_letters("w", 0) == [] and len(rt.dead_letters("w", 5, 248)) == 2


@pytest.mark.parametrize(
    "limit, offset", [(-1, 0), (1.5, 0), (True, 0), ("10", 0), (10, -1), (10, None), (10, 2.0)]
)
def test_a_bad_page_is_refused_with_what_to_give(rt, limit, offset):
    with pytest.raises(ArgumentValueError, match=r"nw.dead_letters: (limit|offset) must be"):
        rt.dead_letters("w", limit, offset)
