"""Typed errors. Adapters translate library errors into these; entry points turn them into exit codes / HTTP."""

from __future__ import annotations


class NearrecError(Exception):
    """Base class for every error nearrec raises on purpose."""

    http_status = 500


class ConfigError(NearrecError):
    """Settings are missing or inconsistent."""


class NotFoundError(NearrecError):
    """An external id (user or item) does not exist."""

    http_status = 404


class ValidationError(NearrecError):
    """A request or record is malformed. `path` names the offending field (e.g. ``filter.and[1].price``)."""

    http_status = 422

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class InputFileError(NearrecError):
    """A whole input file is unusable (missing required column, empty, unreadable encoding)."""

    def __init__(self, file: str, message: str, line: int | None = None) -> None:
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message}")
        self.file = file
        self.line = line


class StoreUnavailableError(NearrecError):
    """Postgres or the vector store cannot be reached."""

    http_status = 503


class VectorStoreLockedError(StoreUnavailableError):
    """The embedded vector store directory is owned by another process."""


class ModelMismatchError(NearrecError):
    """The vectors in a collection were made by another embedding model; run `nearrec reindex`."""

    http_status = 409
