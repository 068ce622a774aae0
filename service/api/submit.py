"""Events bodies into engine calls and engine results into answers: the ingest path shared by
``POST /v1/streams/{stream_id}/events``, ``POST /v1/events`` and the live WebSocket.

A body is decoded once into columns (:mod:`service.api.columns`) and handed to the engine as
arrays; a body the fast path does not take whole (any invalid or unusual input) goes through
the exact parser (:mod:`service.api.parsing`), which gives every fault its error. Each stage is
timed in ``liquid_stage_seconds{stage}`` (decode, validate, encode).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any

import msgspec
from fastapi import Response

from service.api.columns import (
    EventColumns,
    decode_many_streams,
    decode_one_stream,
    validate,
)
from service.api.deps import AppContext
from service.api.errors import STATUS, ApiError, ErrorCode
from service.api.formats import BodyFormat, exact_body
from service.api.parsing import FieldError, ParsedEvent, check_stream_id, parse_event
from service.engine import Event, EventResult, Rejection
from service.engine.encode import PredictionBody, dumps, prediction_body, rejection_error
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


Answer = tuple[int, Any]  # an HTTP status and the answer (JSON-encodable, Structs included)


class ResultRow(msgspec.Struct):
    """One item of a batch answer (``results[i]``); fields in the order of its JSON keys."""

    index: int
    stream_id: str | None
    status: int
    prediction: PredictionBody | None
    error: dict[str, Any] | None


class _AnswerLater:
    """The answer to events already queued: awaiting it waits for their results and shapes
    them (an awaitable object, not a coroutine: one that is never awaited, on a socket that
    closed, is simply dropped)."""

    __slots__ = ("_results", "_shape")

    def __init__(
        self, results: Awaitable[list[EventResult]], shape: Callable[[list[EventResult]], Answer]
    ) -> None:
        self._results = results
        self._shape = shape

    def __await__(self) -> Generator[Any, None, Answer]:
        results = yield from self._results.__await__()
        return self._shape(results)


def _single_answer(output_names: Sequence[str] | None) -> Callable[[list[EventResult]], Answer]:
    def shape(results: list[EventResult]) -> Answer:
        (result,) = results
        if isinstance(result, Rejection):
            return STATUS[ErrorCode(result.code)], {"error": rejection_error(result)}
        return 200, prediction_body(result, output_names)

    return shape


def _stream_answer(
    output_names: Sequence[str] | None, stream_id: str
) -> Callable[[list[EventResult]], Answer]:
    def shape(results: list[EventResult]) -> Answer:
        done = [(i, stream_id, r) for i, r in enumerate(results)]
        return 200, batch_results(output_names, done, [])

    return shape


async def enqueue_exact(
    ctx: AppContext,
    tenant: str,
    served: ServedModel,
    stream_id: str,
    body: Any,
    received_at: float,
) -> Awaitable[Answer]:
    """The exact path of one stream's events (one object, a list or ``{"events": [...]}``):
    raises :class:`ApiError` before queueing anything when any event is invalid."""
    items = _batch_items(body)
    engine = ctx.require_engine()
    if items is None:
        try:
            one = parse_event(body, served.features)
        except FieldError as exc:
            raise field_error(exc) from None
        event = Event(stream_id, one.t, one.x, one.id, received_at)
        pending = await engine.enqueue(tenant, served.name, [event])
        return _AnswerLater(pending, _single_answer(served.output_names))
    check_count(ctx, len(items))
    parsed = parse_batch(items, served.features)
    events = [Event(stream_id, e.t, e.x, e.id, received_at) for e in parsed]
    pending = await engine.enqueue(tenant, served.name, events)
    return _AnswerLater(pending, _stream_answer(served.output_names, stream_id))


async def enqueue_columns(
    ctx: AppContext,
    tenant: str,
    served: ServedModel,
    stream_id: str,
    cols: EventColumns,
    received_at: float,
) -> Awaitable[Answer]:
    """Queue one stream's validated events; the answer to await (a prediction or an error
    for one event object, per-item results for a list)."""
    engine = ctx.require_engine()
    results = await engine.enqueue_columns(
        tenant, served.name, cols.stream_ids, cols.t, cols.x, cols.ids, received_at
    )
    shape = (
        _single_answer(served.output_names)
        if cols.single
        else _stream_answer(served.output_names, stream_id)
    )
    return _AnswerLater(results, shape)


async def enqueue_one_stream(
    ctx: AppContext,
    tenant: str,
    served: ServedModel,
    stream_id: str,
    raw: bytes,
    fmt: BodyFormat,
    received_at: float,
) -> Awaitable[Answer]:
    """Decode and validate one stream's events (``raw`` in ``fmt``), queue them and return the
    answer to await. Raises :class:`ApiError` before queueing anything when any event is
    invalid."""
    stages = ctx.metrics.stages
    t0 = time.perf_counter()
    decoded = decode_one_stream(raw, ctx.settings.max_events_per_request, fmt)
    t1 = time.perf_counter()
    stages["decode"].observe(t1 - t0)
    cols = validate(decoded, served.features, stream_id) if decoded is not None else None
    if cols is None:  # the exact path: today's parser and errors
        body = exact_body(raw, fmt)
        pending = await enqueue_exact(ctx, tenant, served, stream_id, body, received_at)
        stages["validate"].observe(time.perf_counter() - t1)
        return pending
    stages["validate"].observe(time.perf_counter() - t1)
    return await enqueue_columns(ctx, tenant, served, stream_id, cols, received_at)


async def apply_events(
    ctx: AppContext, tenant: str, served: ServedModel, stream_id: str, body: Any, received_at: float
) -> Answer:
    """Validate one stream's events given as plain values, apply them and return ``(status,
    json)`` (see :func:`enqueue_one_stream`)."""
    return await (await enqueue_exact(ctx, tenant, served, stream_id, body, received_at))


def batch_results(
    output_names: Sequence[str] | None,
    done: list[tuple[int, str, EventResult]],
    failed: list[tuple[int, str | None, int, dict[str, Any]]],
) -> dict[str, Any]:
    """Per-item results in request order: ``done`` engine results, ``failed`` validation errors
    as ``(index, stream_id, status, error)``."""
    rows: list[tuple[int, ResultRow]] = []
    applied = duplicates = errors = 0
    for index, stream_id, result in done:
        if isinstance(result, Rejection):
            errors += 1
            status = STATUS[ErrorCode(result.code)]
            rows.append((index, ResultRow(index, stream_id, status, None, rejection_error(result))))
            continue
        if result.duplicate:
            duplicates += 1
        else:
            applied += 1
        body = prediction_body(result, output_names)
        rows.append((index, ResultRow(index, stream_id, 200, body, None)))
    for index, sid, status, error in failed:
        errors += 1
        rows.append((index, ResultRow(index, sid, status, None, error)))
    if failed:
        rows.sort(key=lambda r: r[0])
    return {
        "results": [r for _, r in rows],
        "applied": applied,
        "duplicates": duplicates,
        "failed": errors,
    }


_ITEM_KEYS = frozenset({"stream_id"})


def _answer(ctx: AppContext, status: int, payload: dict[str, Any], t0: float) -> Response:
    """The JSON answer; ``t0``: when encoding began (the results' shaping counts too)."""
    body = dumps(payload)
    ctx.metrics.stages["encode"].observe(time.perf_counter() - t0)
    return Response(body, status_code=status, media_type="application/json")


async def submit_one_stream(
    ctx: AppContext,
    tenant: str,
    served: ServedModel,
    stream_id: str,
    raw: bytes,
    fmt: BodyFormat,
    received_at: float,
) -> Response:
    """``POST /v1/streams/{stream_id}/events``: the answer to the body ``raw``."""
    pending = await enqueue_one_stream(ctx, tenant, served, stream_id, raw, fmt, received_at)
    status, payload = await pending
    return _answer(ctx, status, payload, time.perf_counter())


def _multi_items(body: Any) -> list[Any]:
    if isinstance(body, dict) and set(body) == {"events"} and isinstance(body["events"], list):
        return body["events"]
    if isinstance(body, list):
        return body
    raise ApiError(
        ErrorCode.INVALID_EVENT,
        'the body must be {"events": [{"stream_id": ..., "t": ..., "x": [...]}, ...]}',
    )


async def submit_many_streams(
    ctx: AppContext,
    tenant: str,
    served: ServedModel,
    raw: bytes,
    fmt: BodyFormat,
    received_at: float,
) -> Response:
    """``POST /v1/events``: per-item results for the body ``raw`` in ``fmt`` (invalid items are
    reported and skipped; a malformed envelope fails the request)."""
    stages = ctx.metrics.stages
    t0 = time.perf_counter()
    decoded = decode_many_streams(raw, ctx.settings.max_events_per_request, fmt)
    t1 = time.perf_counter()
    stages["decode"].observe(t1 - t0)
    cols = None
    if decoded is not None:
        cols = validate(decoded, served.features, stream_id_re=ctx.stream_id_re)
        if cols is not None:
            stages["validate"].observe(time.perf_counter() - t1)
            engine = ctx.require_engine()
            results = await engine.submit_columns(
                tenant, served.name, cols.stream_ids, cols.t, cols.x, cols.ids, received_at
            )
            t0 = time.perf_counter()
            done = list(zip(range(len(results)), cols.stream_ids, results, strict=True))
            return _answer(ctx, 200, batch_results(served.output_names, done, []), t0)
    # the exact path: today's parser, with a result per invalid item
    t0 = time.perf_counter()
    items = _multi_items(exact_body(raw, fmt))
    t1 = time.perf_counter()
    stages["decode"].observe(t1 - t0)
    check_count(ctx, len(items))
    events: list[Event] = []
    positions: list[tuple[int, str]] = []
    failed: list[tuple[int, str | None, int, dict[str, Any]]] = []
    for i, item in enumerate(items):
        stream_id: str | None = None
        try:
            if not isinstance(item, dict) or "stream_id" not in item:
                raise FieldError(ErrorCode.INVALID_EVENT, "an item needs 'stream_id'", "stream_id")
            stream_id = check_stream_id(item["stream_id"], ctx.stream_id_re)
            parsed = parse_event(item, served.features, extra_keys=_ITEM_KEYS)
        except FieldError as exc:
            error = {"code": exc.code.value, "message": exc.message, "details": exc.detail()}
            failed.append((i, stream_id, STATUS[exc.code], error))
            continue
        assert stream_id is not None
        events.append(Event(stream_id, parsed.t, parsed.x, parsed.id, received_at))
        positions.append((i, stream_id))
    stages["validate"].observe(time.perf_counter() - t1)
    engine = ctx.require_engine()
    results = await engine.submit(tenant, served.name, events) if events else []
    t0 = time.perf_counter()
    done = [(i, sid, r) for (i, sid), r in zip(positions, results, strict=True)]
    return _answer(ctx, 200, batch_results(served.output_names, done, failed), t0)
