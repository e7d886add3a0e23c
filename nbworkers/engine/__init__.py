"""The engine: the runtime of one database file and the parts it is made of.

``runtime.Runtime`` wires them: ``registry`` (the one lock, every name's state, the threads),
``intake`` (emit), ``dispatch`` (run threads on demand), ``outcomes`` (done, retried, dead;
traces), ``policies/`` (retries, time limit, storm guard, failure notice), ``timers`` (crons,
delays, deadlines), ``admin`` (pause, queue control), ``dead`` (what is kept of dead letters:
counts by failure group) and ``dead_admin`` (listing, requeueing and discarding them, read from
the store), ``failures`` (nw.failures), ``definitions`` (define a
worker or cron), ``queries`` (counts, snapshot, wait), ``replay``, ``events`` (panels,
``on_failure``, notices) and ``startup`` (the state loaded from the store).
"""

from .dispatch import run_owner
from .intake import check_events, pickled
from .runtime import Runtime
from .settings import Settings

__all__ = ["Runtime", "Settings", "check_events", "pickled", "run_owner"]
