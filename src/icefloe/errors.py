"""One exception hierarchy for the whole platform.

Every error a user can cause is an :class:`IcefloeError` with a one-line message that names
the thing at fault (table, snapshot, column, file), an HTTP status for the API and an exit
code for the CLI. Anything else that escapes is a bug and is reported as such.
"""

from __future__ import annotations


class IcefloeError(Exception):
    """Base error: a message for people, an HTTP status and a process exit code."""

    http_status: int = 500
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        """The JSON error shape used by the CLI's ``--json`` output and the HTTP API."""
        return {"error": {"type": type(self).__name__, "message": self.message}}


class InvalidInputError(IcefloeError):
    """Input that is malformed: a bad name, an unparsable time, a bad option value."""

    http_status = 422
    exit_code = 2


class InvalidNameError(InvalidInputError):
    """A table, namespace, tag or other name that is not allowed."""


class NotFoundError(IcefloeError):
    """Something that was named does not exist."""

    http_status = 404
    exit_code = 3


class NoSuchTableError(NotFoundError):
    """The named table does not exist."""


class NoSuchNamespaceError(NotFoundError):
    """The named namespace does not exist."""


class NoSuchSnapshotError(NotFoundError):
    """The snapshot id, tag or point in time names no snapshot of the table."""


class FileProblemError(IcefloeError):
    """An input file that does not exist or cannot be parsed."""

    http_status = 422
    exit_code = 4


class ConflictError(IcefloeError):
    """The request conflicts with the current state (exists already, lost too many races)."""

    http_status = 409
    exit_code = 5


class SchemaMismatchError(ConflictError):
    """Data whose columns do not fit the table's schema."""


class ConfigError(IcefloeError):
    """Settings that cannot be used (a bad config file, an unusable Java)."""

    http_status = 500
    exit_code = 6


class DependencyMissingError(ConfigError):
    """An optional component is not installed; the message carries the pip hint."""


class QueryError(InvalidInputError):
    """A SQL query that DuckDB refused."""


class TrainingError(IcefloeError):
    """Training cannot go on with this data and these options (nothing is registered)."""

    http_status = 422
    exit_code = 7


class ParityError(TrainingError):
    """The compiled ONNX model does not score like the Spark model it came from."""


class FingerprintMismatchError(ConflictError):
    """Reproduced rows do not match the fingerprint recorded at training time."""


class AuthError(IcefloeError):
    """Missing, invalid or revoked API key (401), or a role that may not do this (403)."""

    http_status = 401
    exit_code = 9


class ForbiddenError(AuthError):
    """A valid key whose role may not do this."""

    http_status = 403


class RemoteError(IcefloeError):
    """The control plane answered with an error this client does not know."""

    http_status = 502
    exit_code = 10


class UnavailableError(IcefloeError):
    """A service is not ready to answer (e.g. no model replica became ready)."""

    http_status = 503
    exit_code = 11


class BusyError(IcefloeError):
    """Too much work queued already: try again shortly."""

    http_status = 429
    exit_code = 12
