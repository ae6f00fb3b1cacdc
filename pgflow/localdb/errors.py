"""The one error of the local cluster helpers."""


class LocalDbError(RuntimeError):
    """The local cluster could not be set up, started, stopped or reached."""
