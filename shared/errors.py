"""One root exception for shopflow; each subclass names a class of failure.

Boundaries (file reads, Delta commits, Kafka calls, model loads) catch the library's
error and `raise <ShopflowError subclass>(...) from exc`, with a message that says what
was wrong and what to do about it.
"""

from __future__ import annotations


class ShopflowError(Exception):
    """Root of every error shopflow raises on purpose."""


class UserError:
    """Mixin: the error is the user's to fix (a missing file or table, an unknown task, a
    model not found, a broker that is down). The `shopflow` command prints its message as
    one line and exits 2 instead of showing a traceback; anything else is a bug."""


def is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, UserError)


class ConfigError(UserError, ShopflowError):
    """A setting is missing, malformed or unsafe for the chosen profile."""


class SourceReadError(UserError, ShopflowError):
    """An input file cannot be read at all (missing, unreadable, wrong format)."""


class ValidationError(ShopflowError):
    """A record does not match its schema. `reasons` lists every problem found."""

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons or [message]


class TableError(ShopflowError):
    """A Delta table is missing, has the wrong schema, or a commit failed."""


class TableNotFoundError(UserError, TableError):
    """The Delta table at the given path does not exist (run the upstream job first)."""


class ModelError(ShopflowError):
    """A model cannot be trained, saved, found or loaded."""


class UnknownTaskError(UserError, ModelError):
    """No task of that name (see shared.tasks.TASKS)."""


class ModelNotFoundError(UserError, ModelError):
    """No such model version or alias in the registry."""


class CorruptCheckpointError(UserError, ModelError):
    """A checkpoint failed verification: missing files, bad checksums, half-written."""


class WeightsReclaimedError(CorruptCheckpointError):
    """The version's weights were reclaimed by the registry retention: its manifest stays
    (what it was trained on, its metrics, why it was refused), it can no longer be served."""


class BrokerError(UserError, ShopflowError):
    """The Kafka broker cannot be started, reached or administered."""


class UsageError(UserError, ShopflowError):
    """The command line asks for something impossible (an unknown task, options that do
    not go together, an input file that is not there)."""


class ConcurrentCommitError(TableError):
    """Another writer committed first and the two commits conflict: re-read and retry."""


class GateRefusedError(UserError, ModelError):
    """A version may not go live: it is worse than its task's strongest baseline on the
    evaluation slice, or its manifest holds no evidence that it is not (an older
    release's). `shopflow models promote ... --force` overrides, on the record."""
