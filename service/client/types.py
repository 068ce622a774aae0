"""What the client sends and gets back: typed, immutable values made from the service's JSON.

These mirror the API's wire shapes (see the OpenAPI schema at ``/openapi.json``), not the
server's internal classes, so the client needs nothing of the server but its HTTP API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Outputs = dict[str, float] | list[float]


@dataclass(frozen=True, slots=True)
class Event:
    """One event: time ``t`` (epoch seconds, or an RFC 3339 string), inputs ``x`` (a list in
    the model's order or ``{name: value}``), an ``id`` (the client assigns one when ``None``, so
    that a retry is recognised as a duplicate) and, for ``POST /v1/events``, its stream."""

    t: float | str
    x: Sequence[float] | Mapping[str, float]
    id: str | None = None
    stream_id: str | None = None


@dataclass(frozen=True, slots=True)
class Prediction:
    """The model's answer to one event (``x``: the input, on live feeds only)."""

    stream_id: str
    t: float
    time: str
    dt: float
    outputs: Outputs
    model: str
    version: str
    duplicate: bool
    reset: str | None
    id: str | None
    count: int
    x: list[float] | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Prediction:
        return cls(
            stream_id=str(d["stream_id"]),
            t=float(d["t"]),
            time=str(d["time"]),
            dt=float(d["dt"]),
            outputs=d["outputs"],
            model=str(d["model"]),
            version=str(d["version"]),
            duplicate=bool(d["duplicate"]),
            reset=d.get("reset"),
            id=d.get("id"),
            count=int(d["count"]),
            x=d.get("x"),
        )


class ServiceError(Exception):
    """The service refused a request: HTTP ``status``, machine-readable ``code`` (such as
    ``out_of_order``, ``wrong_feature_count``, ``unauthorized``), message and details."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    @classmethod
    def from_json(cls, status: int, body: Any) -> ServiceError:
        err = body.get("error") if isinstance(body, Mapping) else None
        if not isinstance(err, Mapping):
            return cls(status, "http_error", f"unexpected answer: {str(body)[:200]}")
        return cls(status, str(err.get("code")), str(err.get("message")), err.get("details"))


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One event of a batch: ``prediction`` when ``status`` is 200, else ``error``."""

    index: int
    stream_id: str | None
    status: int
    prediction: Prediction | None
    error: ServiceError | None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ItemResult:
        status = int(d["status"])
        pred = d.get("prediction")
        return cls(
            index=int(d["index"]),
            stream_id=d.get("stream_id"),
            status=status,
            prediction=Prediction.from_json(pred) if pred is not None else None,
            error=ServiceError.from_json(status, d) if d.get("error") is not None else None,
        )


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per-event results of a batch, in request order, and their counts."""

    results: list[ItemResult]
    applied: int
    duplicates: int
    failed: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BatchResult:
        return cls(
            results=[ItemResult.from_json(r) for r in d["results"]],
            applied=int(d["applied"]),
            duplicates=int(d["duplicates"]),
            failed=int(d["failed"]),
        )
