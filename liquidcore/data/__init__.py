"""Data for training: long-format tables, per-stream windows with real Δt, dataset protocols.

Importing this package needs only numpy; reading CSV or Parquet needs pandas (the ``train``
extra), imported when a table is read.
"""

from liquidcore.data.longformat import (
    Columns,
    Stream,
    StreamTable,
    parse_times,
    read_table,
    streams_from_frame,
)
from liquidcore.data.sequences import (
    LOSS_ON,
    TASKS,
    DatasetSplits,
    LossOn,
    SequenceSet,
    Task,
    TaskSpec,
    check_targets,
    concat_sets,
)
from liquidcore.data.windows import (
    SPLIT_BY,
    cut_windows,
    fit_normalization,
    fit_target_scale,
    median_dt,
    split_streams,
    stream_dt,
    window_starts,
)

__all__ = [
    "LOSS_ON",
    "SPLIT_BY",
    "TASKS",
    "Columns",
    "DatasetSplits",
    "LossOn",
    "SequenceSet",
    "Stream",
    "StreamTable",
    "Task",
    "TaskSpec",
    "check_targets",
    "concat_sets",
    "cut_windows",
    "fit_normalization",
    "fit_target_scale",
    "median_dt",
    "parse_times",
    "read_table",
    "split_streams",
    "stream_dt",
    "streams_from_frame",
    "window_starts",
]
