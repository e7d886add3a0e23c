from __future__ import annotations

import logging
import time
from dataclasses import fields

import pytest

from nbworkers.engine import Runtime
from nbworkers.engine.settings import Settings
from tests.kernel import Kernel

_SETTINGS = {f.name for f in fields(Settings)}


def open_runtime(path: str, **kw) -> Runtime:
    """``Runtime(path, Settings(...), ...)`` from one set of keywords: those that name a
    ``Settings`` field go into the settings, the others (clock, rng, store) to ``Runtime``."""
    settings = Settings(**{k: v for k, v in kw.items() if k in _SETTINGS})
    return Runtime(path, settings, **{k: v for k, v in kw.items() if k not in _SETTINGS})


class Clock:
    """A clock tests set by hand: ``Runtime(..., clock=Clock(t))``, then ``clock.now = ...``."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self):
        return self.now


def advance(clock: Clock, seconds: float) -> None:
    """Move ``clock`` ``seconds`` past its own now and the wall clock's, whichever is later:
    emit times are the wall clock's, so a ttl counted from an emit has passed however slowly
    the test got there."""
    clock.now = max(clock.now, time.time()) + seconds


@pytest.fixture
def make_runtime(tmp_path):
    """Make runtimes on one temporary file (``make(**options)``); all stopped afterwards."""
    made = []

    def make(**kw):
        rt = open_runtime(str(tmp_path / "q.duckdb"), **kw)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.stop()


@pytest.fixture
def rt(tmp_path):
    """A runtime with the default settings on a temporary file, stopped afterwards."""
    runtime = Runtime(str(tmp_path / "q.duckdb"))
    yield runtime
    runtime.stop()


@pytest.fixture
def kernel(tmp_path):
    """A fresh kernel in a temporary folder, with nbworkers loaded and its own database."""
    k = Kernel(str(tmp_path), env={"NBWORKERS_DB": str(tmp_path / "q.duckdb")})
    k.ok("%load_ext nbworkers\nimport nbworkers as nw")
    yield k
    k.shutdown()


@pytest.fixture
def fresh_runtime(tmp_path):
    """The module-level runtime of this process, on a temporary file, stopped afterwards."""
    from nbworkers import api

    api.shutdown()
    api.use_config(None)
    api.config().db_path = str(tmp_path / "q.duckdb")
    yield api
    api.shutdown()
    api.use_config(None)


@pytest.fixture
def logged(caplog):
    """The records nbworkers logs (``logging.getLogger("nbworkers")``, which does not
    propagate to the root logger that ``caplog`` listens on)."""
    log = logging.getLogger("nbworkers")
    log.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        log.removeHandler(caplog.handler)
