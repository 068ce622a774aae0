"""The engine's settings, checked at construction (``service.settings`` builds them).

Expiry: a record not written for ``state_ttl_s`` is expired: reads treat it as absent and the
next event restarts the stream with ``reset="expired"``. The store keeps it for
``expiry_grace_s`` more (its TTL is :attr:`EngineConfig.store_ttl_s`, the sum) so that this can
be reported; after that the key is gone and the next event is a ``"first_event"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_batch: int = 1024
    max_delay_s: float = 0.002
    state_ttl_s: float = 86400.0
    max_gap_s: float = 3600.0
    first_event_dt_s: float | None = None  # None -> model.default_dt
    dedupe_window: int = 32
    device: str = "cpu"
    max_cas_retries: int = 16
    active_window_s: float = 300.0
    expiry_grace_s: float = 3600.0  # an expired record is kept this long to report "expired"
    max_queue: int = 65536  # events waiting; submit waits while the queue is full
    publish_live: bool = True
    # Features beyond this magnitude are refused (the API answers 422 value_out_of_range).
    max_abs_input: float = 1e15
    # Padded batch sizes of the device step (service.engine.staging); None: the device's
    # default (none on a CPU, a handful on CUDA), (): none.
    batch_buckets: tuple[int, ...] | None = None
    # Batches processed at once (one may plan and compute while another waits on the store);
    # batches that share a stream never overlap.
    max_inflight_batches: int = 2
    # Streams with one event in a batch are decided and recorded as arrays
    # (service.engine.lane); off: every stream takes the per-stream path (the reference).
    lane: bool = True
    # Model calls on a CPU with at most this many steps run on the event loop's thread instead
    # of the worker thread (service.engine.compute.DeviceExecutor); 0: always the worker.
    inline_steps: int = 4096

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        need(self.max_batch >= 1, f"max_batch must be greater than 0; got {self.max_batch}")
        need(self.max_delay_s >= 0, f"max_delay_s must be >= 0; got {self.max_delay_s}")
        need(self.state_ttl_s > 0, f"state_ttl_s must be > 0 seconds; got {self.state_ttl_s}")
        need(
            self.max_gap_s > 0, f"max_gap_s must be > 0 seconds (inf: never); got {self.max_gap_s}"
        )
        need(
            self.first_event_dt_s is None
            or (math.isfinite(self.first_event_dt_s) and self.first_event_dt_s >= 0),
            f"first_event_dt_s must be None or finite and >= 0; got {self.first_event_dt_s}",
        )
        need(self.dedupe_window >= 0, f"dedupe_window must be >= 0; got {self.dedupe_window}")
        need(self.max_cas_retries >= 0, f"max_cas_retries must be >= 0; got {self.max_cas_retries}")
        need(self.active_window_s > 0, f"active_window_s must be > 0; got {self.active_window_s}")
        need(
            math.isfinite(self.expiry_grace_s) and self.expiry_grace_s >= 0,
            f"expiry_grace_s must be finite and >= 0; got {self.expiry_grace_s}",
        )
        need(
            self.max_queue >= self.max_batch,
            f"max_queue must be >= max_batch ({self.max_batch}); got {self.max_queue}",
        )
        need(
            self.max_abs_input > 0,
            f"max_abs_input must be > 0 (inf: only the float32 range); got {self.max_abs_input}",
        )
        need(bool(self.device), "device must be 'cpu', 'cuda', 'cuda:N' or 'auto'")
        need(
            self.max_inflight_batches >= 1,
            f"max_inflight_batches must be >= 1; got {self.max_inflight_batches}",
        )
        need(self.inline_steps >= 0, f"inline_steps must be >= 0; got {self.inline_steps}")
        need(
            self.batch_buckets is None or all(b >= 1 for b in self.batch_buckets),
            f"batch_buckets must be positive batch sizes; got {self.batch_buckets}",
        )

    @property
    def store_ttl_s(self) -> float:
        """The TTL a write gives the key: the logical TTL plus the grace to report expiry."""
        return self.state_ttl_s + self.expiry_grace_s
