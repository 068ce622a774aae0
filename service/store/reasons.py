"""Why a stream's state started afresh: the one spelling of the reset reasons."""

from __future__ import annotations

from enum import Enum


class ResetReason(str, Enum):
    """Why a stream's state started afresh at an event.

    Records, predictions and messages carry the plain string (``.value``); the stored code of a
    reason is its position here plus one (0: no reset), so the order is part of the format."""

    FIRST_EVENT = "first_event"  # no record: the stream's first event (not counted as a reset)
    GAP = "gap"  # more than max_gap_s since the last event
    MODEL_CHANGE = "model_change"  # the record belongs to another model version
    EXPIRED = "expired"  # no write for longer than the state TTL


RESET_REASONS: tuple[str | None, ...] = (None, *(r.value for r in ResetReason))
# Reported as resets (liquid_stream_resets_total): every reason but a stream's first event.
COUNTED_RESETS: tuple[str, ...] = tuple(
    r.value for r in ResetReason if r is not ResetReason.FIRST_EVENT
)
RESET_CODE: dict[str | None, int] = {reason: code for code, reason in enumerate(RESET_REASONS)}
