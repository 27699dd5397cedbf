"""One root exception for shopflow; each subclass names a class of failure.

Boundaries (file reads, Delta commits, Kafka calls, model loads) catch the library's
error and `raise <ShopflowError subclass>(...) from exc`, with a message that says what
was wrong and what to do about it.
"""

from __future__ import annotations


class ShopflowError(Exception):
    """Root of every error shopflow raises on purpose."""


class ConfigError(ShopflowError):
    """A setting is missing, malformed or unsafe for the chosen profile."""


class SourceReadError(ShopflowError):
    """An input file cannot be read at all (missing, unreadable, wrong format)."""


class ValidationError(ShopflowError):
    """A record does not match its schema. `reasons` lists every problem found."""

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons or [message]


class TableError(ShopflowError):
    """A Delta table is missing, has the wrong schema, or a commit failed."""


class TableNotFoundError(TableError):
    """The Delta table at the given path does not exist (run the upstream job first)."""


class ModelError(ShopflowError):
    """A model cannot be trained, saved, found or loaded."""


class ModelNotFoundError(ModelError):
    """No such model version or alias in the registry."""


class CorruptCheckpointError(ModelError):
    """A checkpoint failed verification: missing files, bad checksums, half-written."""


class BrokerError(ShopflowError):
    """The Kafka broker cannot be started, reached or administered."""


class ConcurrentCommitError(TableError):
    """Another writer committed first and the two commits conflict: re-read and retry."""
