"""The ``NBWorkers`` options (config.py) and the runtime settings they build."""

from __future__ import annotations

from dataclasses import fields

from nbworkers.config import NBWorkers
from nbworkers.engine.settings import Settings


def test_every_setting_is_an_option_with_the_same_default():
    cfg = NBWorkers()
    assert cfg.settings() == Settings()
    for f in fields(Settings):
        assert cfg.trait_metadata(f.name, "config") is True, f.name
        assert cfg.trait_metadata(f.name, "help"), f.name


def test_the_options_set_reach_the_settings():
    # Given every option set to something other than its default
    cfg = NBWorkers()
    words = {"timezone": "Europe/Paris", "dask_address": "tcp://127.0.0.1:8786"}
    changed = {f.name: words.get(f.name) or getattr(cfg, f.name) * 2 or 3 for f in fields(Settings)}
    for name, value in changed.items():
        setattr(cfg, name, value)
    # Then the settings carry each of them
    assert cfg.settings() == Settings(**changed)


def test_an_empty_timezone_is_the_kernels_own_zone():
    assert NBWorkers(timezone="").settings().timezone is None
