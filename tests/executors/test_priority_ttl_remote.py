"""emit(..., priority=, ttl=) and emit_many(..., priority=, ttl=) from a handler in another
process (--executor processes, or dask) reach the notebook's queues with their options."""

from __future__ import annotations

import pytest
from distributed import Client, LocalCluster

from nbworkers import api, current, handlers
from nbworkers.engine.policy import Policy


@pytest.fixture
def remote(request, fresh_runtime):
    if request.param == "dask":
        cluster = LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = Client(cluster)
        fresh_runtime.use_dask(client)
        yield request.param
        current._dask_client = None
        client.close()
        cluster.close()
    else:
        yield request.param


@pytest.mark.parametrize("remote", ["processes", "dask"], indirect=True)
def test_a_remote_handler_emits_with_priority_and_ttl(remote):
    rt = api.runtime()
    rt.pause("sink")
    namespace = {"__name__": "__main__", "emit": api.emit, "nw": api}
    source = (
        "emit('low', 'sink', priority=-3)\n"
        "emit('high', 'sink', priority=8, ttl=600)\n"
        "nw.emit_many(['mid-1', 'mid-2'], 'sink', priority=2, ttl=300)\n"
        "'sent'"
    )
    rt.define("fan", handlers.from_cell("fan", source, namespace), policy=Policy(executor=remote))
    api.emit(None, "fan")
    assert rt.wait("fan", 60)
    assert rt.traces("fan")[0].result == "sent", rt.traces("fan")[0].error
    listed = api.messages("sink")
    assert [(m["preview"], m["priority"]) for m in listed] == [
        ("'high'", 8),
        ("'mid-1'", 2),
        ("'mid-2'", 2),
        ("'low'", -3),
    ]
    assert [m["expires_at"] is not None for m in listed] == [True, True, True, False]
