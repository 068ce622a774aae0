"""The engine's errors; the API maps each to an HTTP status (in parentheses below).

The names are the interface the API codes against (``StreamNotFound``, not
``StreamNotFoundError``).
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of the engine's errors."""


class UnknownModel(EngineError, LookupError):  # noqa: N818
    """No served model has this name (404)."""


class StreamNotFound(EngineError, LookupError):  # noqa: N818
    """No live state for this stream (absent, deleted or expired) (404)."""


class InvalidTime(EngineError, ValueError):  # noqa: N818
    """A time that the request cannot use, e.g. before the stream's last event (422)."""


class InvalidState(EngineError, ValueError):  # noqa: N818
    """A state that does not fit the served model (size, non-finite values, version) (409/422)."""


class InvalidEvent(EngineError, ValueError):  # noqa: N818
    """An event the API should have rejected (wrong size, non-finite values) (422)."""


class EngineStopped(EngineError, RuntimeError):  # noqa: N818
    """The engine is not running (not started, or stopping) (503)."""


class StateConflict(EngineError, RuntimeError):  # noqa: N818
    """A stream's state kept changing under this writer beyond ``max_cas_retries`` (503)."""


class StateUnreadable(EngineError, RuntimeError):  # noqa: N818
    """The stored record cannot be decoded (written by a newer format, or corrupt) (500).
    Nothing is overwritten; deleting the stream clears it."""
