"""Events bodies into engine calls and engine results into answers: the ingest path shared by
``POST /v1/streams/{stream_id}/events``, ``POST /v1/events`` and the live WebSocket."""

from __future__ import annotations

from typing import Any

from service.api.deps import AppContext
from service.api.encode import prediction_json, rejection_error
from service.api.errors import STATUS, ApiError, ErrorCode
from service.api.parsing import FieldError, ParsedEvent, parse_event
from service.engine import Event, EventResult, Rejection
from service.engine.registry import FeatureSpec, ServedModel


def field_error(exc: FieldError, prefix: str | None = None) -> ApiError:
    err = exc.prefixed(prefix) if prefix else exc
    message = (
        f"{err.field}: {err.message}" if err.field and err.field not in err.message else err.message
    )
    return ApiError(err.code, message, err.detail())


def _batch_items(body: Any) -> list[Any] | None:
    """The event list of a batch body, or None when the body is a single event."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict) and "events" in body and "t" not in body and "x" not in body:
        extra = [k for k in body if k != "events"]
        if extra:
            raise ApiError(
                ErrorCode.INVALID_EVENT,
                f"unknown field(s) {', '.join(map(repr, extra[:5]))} beside 'events'",
                {"field": extra[0]},
            )
        if not isinstance(body["events"], list):
            raise ApiError(ErrorCode.INVALID_EVENT, "'events' must be a list", {"field": "events"})
        return body["events"]
    if isinstance(body, dict):
        return None
    raise ApiError(
        ErrorCode.INVALID_EVENT,
        'the body must be an event object, a list of events or {"events": [...]}',
    )


def check_count(ctx: AppContext, n: int) -> None:
    limit = ctx.settings.max_events_per_request
    if n > limit:
        raise ApiError(
            ErrorCode.TOO_MANY_EVENTS,
            f"{n} events in one request; at most {limit} are accepted",
            {"max_events": limit, "got": n},
        )


def parse_batch(items: list[Any], spec: FeatureSpec) -> list[ParsedEvent]:
    """Every event of a one-stream batch, or an error naming each invalid one (nothing is
    applied unless all are valid)."""
    parsed: list[ParsedEvent] = []
    errors: list[FieldError] = []
    for i, item in enumerate(items):
        try:
            parsed.append(parse_event(item, spec))
        except FieldError as exc:
            errors.append(exc.prefixed(f"events[{i}]"))
    if errors:
        first = errors[0]
        raise ApiError(
            first.code,
            f"{first.field}: {first.message}; {len(errors)} invalid event(s), none applied",
            {
                "field": first.field,
                **first.details,
                "errors": [
                    {"code": e.code.value, "message": e.message, **e.detail()} for e in errors[:50]
                ],
            },
        )
    return parsed


async def apply_events(
    ctx: AppContext, tenant: str, served: ServedModel, stream_id: str, body: Any, received_at: float
) -> tuple[int, dict[str, Any]]:
    """Validate one stream's events (one object, a list or ``{"events": [...]}``), apply them
    and return ``(status, json)``: a prediction or a 409 error for one event, per-item results
    for a list. Raises :class:`ApiError` before applying anything when any event is invalid."""
    items = _batch_items(body)
    engine = ctx.require_engine()
    if items is None:
        try:
            one = parse_event(body, served.features)
        except FieldError as exc:
            raise field_error(exc) from None
        (result,) = await engine.submit(
            tenant, served.name, [Event(stream_id, one.t, one.x, one.id, received_at)]
        )
        if isinstance(result, Rejection):
            return STATUS[ErrorCode(result.code)], {"error": rejection_error(result)}
        return 200, prediction_json(ctx.registry, result)
    check_count(ctx, len(items))
    parsed = parse_batch(items, served.features)
    events = [Event(stream_id, e.t, e.x, e.id, received_at) for e in parsed]
    results = await engine.submit(tenant, served.name, events) if events else []
    return 200, batch_results(ctx, [(i, stream_id, r) for i, r in enumerate(results)], [])


def batch_results(
    ctx: AppContext,
    done: list[tuple[int, str, EventResult]],
    failed: list[tuple[int, str | None, int, dict[str, Any]]],
) -> dict[str, Any]:
    """Per-item results in request order: ``done`` engine results, ``failed`` validation errors
    as ``(index, stream_id, status, error)``."""
    rows: list[tuple[int, dict[str, Any]]] = []
    applied = duplicates = errors = 0
    for index, stream_id, result in done:
        if isinstance(result, Rejection):
            errors += 1
            rows.append(
                (
                    index,
                    {
                        "index": index,
                        "stream_id": stream_id,
                        "status": STATUS[ErrorCode(result.code)],
                        "prediction": None,
                        "error": rejection_error(result),
                    },
                )
            )
            continue
        if result.duplicate:
            duplicates += 1
        else:
            applied += 1
        rows.append(
            (
                index,
                {
                    "index": index,
                    "stream_id": stream_id,
                    "status": 200,
                    "prediction": prediction_json(ctx.registry, result),
                    "error": None,
                },
            )
        )
    for index, sid, status, error in failed:
        errors += 1
        rows.append(
            (
                index,
                {
                    "index": index,
                    "stream_id": sid,
                    "status": status,
                    "prediction": None,
                    "error": error,
                },
            )
        )
    rows.sort(key=lambda r: r[0])
    return {
        "results": [r for _, r in rows],
        "applied": applied,
        "duplicates": duplicates,
        "failed": errors,
    }
