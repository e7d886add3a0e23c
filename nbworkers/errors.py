"""Errors nbworkers raises for things a user can fix."""


class NBWorkersError(RuntimeError):
    """A problem the user can fix; the message says how."""


class StoreLockedError(NBWorkersError):
    """The queue database is held by another process."""
