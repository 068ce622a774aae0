"""The garbage collector tuned for a serving process.

The hot path allocates many short-lived objects per batch (events, plans, records, answers),
and CPython's default collector, triggered every 700 net allocations, then repeatedly walks the
long-lived objects of the process (modules, the model, the app). Two changes, made once the
server is built and before it serves: the start-up heap is frozen out of the collector's view
(:func:`service.memory_release.freeze_startup_heap`), and a higher first-generation threshold
makes young collections rarer (cycles are still collected). Measured on the engine alone at
batch 256 (2 cores, loaded machine): +20 to +40 % events/s.
"""

from __future__ import annotations

import gc

from service.memory_release import freeze_startup_heap

YOUNG_THRESHOLD = 50_000  # allocations between young collections (CPython's default: 700)


def tune_gc_for_serving() -> None:
    """Freeze what exists now (collected first) and raise the young-generation threshold."""
    freeze_startup_heap()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
