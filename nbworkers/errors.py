"""Errors nbworkers raises for things a user can fix."""


class NBWorkersError(RuntimeError):
    """A problem the user can fix; the message says how."""


class StoreLockedError(NBWorkersError):
    """The queue database is held by another process."""


class StoreCorruptError(NBWorkersError):
    """The queue database could not be read; it was moved aside and a fresh one will be used."""


class StatusTimeoutError(NBWorkersError):
    """Reading a database file for ``python -m nbworkers status`` took longer than allowed."""
