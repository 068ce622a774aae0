"""The engine: stream semantics, one batched model call per batch on a worker thread, and
compare-and-set write-back. ``from service.engine import X`` is the interface; the modules:

- ``types``: the values in and out (``Event``, ``Prediction``, ``Rejection``, ``StreamInfo``,
  ``StateSnapshot``)
- ``errors``: the exceptions the API maps to status codes
- ``config``: ``EngineConfig``
- ``registry``: ``ModelRegistry``, the served models (``ServableModel``: what the engine
  needs of a model; ``ServedModel``: what the API shows of one, with its stream policy)
- ``batcher``: the queue that gathers events into batches
- ``semantics``: the per-stream rules (order, dedupe, gaps, expiry) as a pure function
- ``core``: ``Engine``, the queue and the batch loop (load, decide, compute, commit, retry)
- ``compute``: the batched model call on the device, on the single worker thread
- ``storage``: the store as the engine uses it (timed, records decoded)
- ``results``: the answers of a committed stream's events, and their counts
- ``admin``: predict at a time, metadata, export, import, delete
- ``snapshot``: records to and from the admin values, with the import check
- ``encode``: the one encoder of predictions (HTTP, WebSocket and live-channel shapes)
- ``publish``: the background publisher of live messages
- ``activity``: which streams are active

Interface changes against the brief: none. Additions: ``EngineConfig.expiry_grace_s``,
``max_queue`` and ``publish_live``; ``StreamInfo.stream_id``; ``StateSnapshot.recent``,
``model``, ``created`` and ``updated``; exceptions ``InvalidEvent``, ``EngineStopped``,
``StateConflict`` and ``StateUnreadable``; ``Engine.models``, ``Engine.running``,
``Engine.active_stream_count()``, ``live_message``.
"""

from service.engine.config import EngineConfig
from service.engine.core import Engine
from service.engine.encode import live_message
from service.engine.errors import (
    EngineError,
    EngineStopped,
    InvalidEvent,
    InvalidState,
    InvalidTime,
    StateConflict,
    StateUnreadable,
    StreamNotFound,
    UnknownModel,
)
from service.engine.registry import ModelRegistry, ServableModel, ServedModel
from service.engine.types import (
    Event,
    EventResult,
    Prediction,
    Rejection,
    StateSnapshot,
    StreamInfo,
)
from service.store.recent import RecentEntry

__all__ = [
    "Engine",
    "EngineConfig",
    "EngineError",
    "EngineStopped",
    "Event",
    "EventResult",
    "InvalidEvent",
    "InvalidState",
    "InvalidTime",
    "ModelRegistry",
    "Prediction",
    "RecentEntry",
    "Rejection",
    "ServableModel",
    "ServedModel",
    "StateConflict",
    "StateSnapshot",
    "StateUnreadable",
    "StreamInfo",
    "StreamNotFound",
    "UnknownModel",
    "live_message",
]
