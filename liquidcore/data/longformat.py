"""Long-format timestamped data: one row per (stream, time), with feature and target columns.

``read_table`` reads CSV or Parquet (pandas; the ``train`` extra). ``streams_from_frame`` checks
the table and turns it into per-stream arrays. Every problem with the data is a ``ValueError``
that names the column, the stream and the row, because a CLI user has to fix the file:
missing columns, non-numeric or NaN/infinite values, unparseable timestamps, timestamps out of
order or repeated within a stream.

Dtype rule for time: timestamps become float64 seconds since the Unix epoch (numbers are taken
as epoch seconds; strings and datetimes are parsed, naive ones as UTC). Only differences are
ever cast to float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from liquidcore.data.sequences import Task

if TYPE_CHECKING:
    import pandas as pd

# Seconds per unit of numeric timestamps (epoch milliseconds are a common export format).
TIME_UNITS: dict[str, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class Columns:
    """Which columns are what. ``stream=None`` treats the whole table as one stream.
    ``features=None`` takes every numeric column that is not the stream, time or a target."""

    time: str
    targets: tuple[str, ...]
    features: tuple[str, ...] | None = None
    stream: str | None = None

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError("name at least one target column")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"target columns repeat: {list(self.targets)}")
        if self.features is not None and len(set(self.features)) != len(self.features):
            raise ValueError(f"feature columns repeat: {list(self.features)}")
        if self.time in self.targets or self.time == self.stream:
            raise ValueError(f"the time column {self.time!r} cannot also be a stream or target")
        if self.features is not None and self.time in self.features:
            raise ValueError(f"the time column {self.time!r} cannot also be a feature")
        if self.stream is not None and (
            self.stream in self.targets or self.stream in (self.features or ())
        ):
            raise ValueError(f"the stream column {self.stream!r} cannot be a feature or target")


@dataclass(frozen=True)
class Stream:
    """One stream's rows in time order: ``t[n]`` float64 epoch seconds, ``x[n,F]`` float32,
    ``y[n,O]`` float32 (regression) or ``y[n]`` int64 (classification).

    ``t_before`` is the time of the row just before ``t[0]`` when the stream was cut from a
    longer one (a split by time), so the first Δt can still be the real one.
    """

    id: str
    t: npt.NDArray[np.float64]
    x: npt.NDArray[np.float32]
    y: npt.NDArray[Any]
    t_before: float | None = None

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def slice(self, start: int, stop: int | None = None) -> Stream:
        stop = len(self) if stop is None else stop
        before = self.t_before if start == 0 else float(self.t[start - 1])
        return Stream(self.id, self.t[start:stop], self.x[start:stop], self.y[start:stop], before)


def _require_pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ValueError(
            "reading tables needs pandas (and pyarrow for Parquet): "
            "pip install 'liquidstream[train]'"
        ) from exc
    return pandas


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (``.csv``, ``.tsv``, optionally gzipped) or Parquet file into a DataFrame."""
    pd = _require_pandas()
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"data file {str(p)!r} does not exist")
    name = p.name.lower()
    try:
        if name.endswith(PARQUET_SUFFIXES):
            return pd.read_parquet(p)
        if name.endswith(CSV_SUFFIXES):
            sep = "\t" if ".tsv" in name else ","
            return pd.read_csv(p, sep=sep)
    except (ValueError, OSError, ImportError) as exc:
        raise ValueError(f"cannot read {str(p)!r}: {exc}") from exc
    raise ValueError(
        f"unknown data file type {p.name!r}; use one of "
        f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
    )


def parse_times(values: pd.Series, column: str, numeric_unit: str = "s") -> npt.NDArray[np.float64]:
    """Epoch seconds (float64) from numbers (in ``numeric_unit``: s, ms, us or ns), numeric
    strings or date-times (naive ones are UTC)."""
    pd = _require_pandas()
    if numeric_unit not in TIME_UNITS:
        raise ValueError(f"unknown time unit {numeric_unit!r}; valid: {', '.join(TIME_UNITS)}")
    scale = TIME_UNITS[numeric_unit]
    if pd.api.types.is_bool_dtype(values):
        raise ValueError(f"time column {column!r} holds booleans, not timestamps")
    if pd.api.types.is_numeric_dtype(values):
        secs = values.to_numpy(dtype=np.float64, na_value=np.nan) * scale
    elif pd.api.types.is_datetime64_any_dtype(values):
        secs = _datetimes_to_seconds(values)
    else:
        numeric = pd.to_numeric(values, errors="coerce")
        if bool(numeric.notna().all()):
            secs = numeric.to_numpy(dtype=np.float64) * scale
        else:
            parsed = None
            for fmt in ("ISO8601", "mixed"):
                try:
                    parsed = pd.to_datetime(values, utc=True, format=fmt)
                    break
                except (ValueError, TypeError, OverflowError):
                    continue
            if parsed is None:
                bad = _first_unparseable(values)
                raise ValueError(
                    f"time column {column!r}: cannot parse {bad} as epoch seconds or a date-time"
                )
            secs = _datetimes_to_seconds(parsed)
    bad_pos = np.flatnonzero(~np.isfinite(secs))
    if bad_pos.size:
        raise ValueError(
            f"time column {column!r} has a missing or non-finite timestamp at "
            f"row {int(bad_pos[0])} (line {int(bad_pos[0]) + 2} of a CSV)"
        )
    return secs


def _datetimes_to_seconds(values: pd.Series) -> npt.NDArray[np.float64]:
    pd = _require_pandas()
    s = values
    if getattr(s.dt, "tz", None) is None:
        s = s.dt.tz_localize("UTC")
    s = s.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    ns = s.to_numpy(dtype="datetime64[ns]")
    out = ns.astype(np.int64).astype(np.float64) / 1e9
    out[pd.isna(values).to_numpy()] = np.nan
    return np.asarray(out, dtype=np.float64)


def _first_unparseable(values: pd.Series) -> str:
    pd = _require_pandas()
    for pos, v in enumerate(values.tolist()):
        try:
            float(v)
            continue
        except (TypeError, ValueError):
            pass
        try:
            pd.to_datetime(v, utc=True, format="mixed")
        except (ValueError, TypeError, OverflowError):
            return f"{v!r} at row {pos} (line {pos + 2} of a CSV)"
    return "a value"


def infer_feature_columns(df: pd.DataFrame, columns: Columns) -> tuple[str, ...]:
    """Every numeric column that is not the stream, the time or a target."""
    pd = _require_pandas()
    skip = {columns.time, *columns.targets}
    if columns.stream is not None:
        skip.add(columns.stream)
    feats = tuple(
        str(c)
        for c in df.columns
        if c not in skip
        and pd.api.types.is_numeric_dtype(df[c])
        and not pd.api.types.is_bool_dtype(df[c])
    )
    if not feats:
        raise ValueError(
            "no numeric feature columns besides the stream, time and target columns; "
            "name them with --features"
        )
    return feats


def _numeric_block(
    df: pd.DataFrame, names: Sequence[str], what: str, stream_of: npt.NDArray[Any]
) -> npt.NDArray[np.float64]:
    pd = _require_pandas()
    cols = []
    for c in names:
        col = df[c]
        if pd.api.types.is_bool_dtype(col):
            col = col.astype(np.float64)
        elif not pd.api.types.is_numeric_dtype(col):
            num = pd.to_numeric(col, errors="coerce")
            bad = np.flatnonzero(num.isna().to_numpy() & col.notna().to_numpy())
            if bad.size:
                pos = int(bad[0])
                raise ValueError(
                    f"{what} column {c!r} is not numeric: {col.iloc[pos]!r} in stream "
                    f"{stream_of[pos]!r} at row {pos} (line {pos + 2} of a CSV)"
                )
            col = num
        arr = col.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            pos = int(bad[0])
            kind = "NaN (missing)" if np.isnan(arr[pos]) else "infinite"
            raise ValueError(
                f"{what} column {c!r} has a {kind} value in stream {stream_of[pos]!r} at "
                f"row {pos} (line {pos + 2} of a CSV); {int(bad.size)} such value(s) in all"
            )
        cols.append(arr)
    return np.stack(cols, axis=1)


def class_labels(
    df: pd.DataFrame, column: str, stream_of: npt.NDArray[Any], classes: Sequence[str] | None
) -> tuple[npt.NDArray[np.int64], tuple[str, ...]]:
    """Class indices for a label column and the class names (sorted unless given)."""
    pd = _require_pandas()
    col = df[column]
    missing = np.flatnonzero(col.isna().to_numpy())
    if missing.size:
        pos = int(missing[0])
        raise ValueError(
            f"target column {column!r} has a missing label in stream {stream_of[pos]!r} at "
            f"row {pos} (line {pos + 2} of a CSV)"
        )
    if pd.api.types.is_float_dtype(col):
        arr = col.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(
                f"target column {column!r} holds non-integer numbers; classification needs "
                "integer or text labels (use --task regression for numbers)"
            )
        labels = [str(int(v)) for v in arr]
    else:
        labels = [str(v) for v in col.tolist()]
    if classes is None:
        uniq = set(labels)
        if all(_is_int(u) for u in uniq):
            names = tuple(sorted(uniq, key=int))
        else:
            names = tuple(sorted(uniq))
    else:
        names = tuple(str(c) for c in classes)
    index = {n: i for i, n in enumerate(names)}
    out = np.empty(len(labels), dtype=np.int64)
    for pos, lab in enumerate(labels):
        i = index.get(lab)
        if i is None:
            raise ValueError(
                f"target column {column!r}: label {lab!r} in stream {stream_of[pos]!r} at "
                f"row {pos} is not one of the model's classes {list(names)}"
            )
        out[pos] = i
    return out, names


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class StreamTable:
    """The streams of one table, with the column names and class names they were built with."""

    streams: list[Stream]
    feature_names: tuple[str, ...]
    output_names: tuple[str, ...]
    classes: tuple[str, ...] | None


def streams_from_frame(
    df: pd.DataFrame,
    columns: Columns,
    *,
    task: Task,
    classes: Sequence[str] | None = None,
    horizon: int = 0,
    time_unit: str = "s",
) -> StreamTable:
    """Check the table and cut it into streams (rows of a stream keep their file order).

    ``time_unit`` is the unit of numeric timestamps (``s``, ``ms``, ``us``, ``ns``).
    ``horizon`` > 0 makes row ``i``'s target the target columns of row ``i + horizon`` of the
    same stream (forecasting); each stream then loses its last ``horizon`` rows.
    """
    if horizon < 0:
        raise ValueError(f"horizon must be >= 0 rows; got {horizon}")
    if task == "classification" and len(columns.targets) != 1:
        raise ValueError(
            f"classification takes one label column; got {len(columns.targets)}: "
            f"{list(columns.targets)}"
        )
    if len(df) == 0:
        raise ValueError("the data has no rows")
    feats = columns.features if columns.features is not None else infer_feature_columns(df, columns)
    needed = [columns.time, *feats, *columns.targets]
    if columns.stream is not None:
        needed.insert(0, columns.stream)
    present = {str(c) for c in df.columns}
    missing = [c for c in dict.fromkeys(needed) if c not in present]
    if missing:
        raise ValueError(f"missing column(s) {missing}; the data has columns {sorted(present)}")

    if columns.stream is None:
        stream_of = np.array(["0"] * len(df), dtype=object)
    else:
        sc = df[columns.stream]
        bad = np.flatnonzero(sc.isna().to_numpy())
        if bad.size:
            raise ValueError(
                f"stream column {columns.stream!r} is empty at row {int(bad[0])} "
                f"(line {int(bad[0]) + 2} of a CSV)"
            )
        stream_of = np.array([str(v) for v in sc.tolist()], dtype=object)

    t = parse_times(df[columns.time], columns.time, time_unit)
    x = _numeric_block(df, feats, "feature", stream_of).astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError("feature values overflow float32 (|x| > 3.4e38)")
    if task == "classification":
        y, class_names = class_labels(df, columns.targets[0], stream_of, classes)
        out_names: tuple[str, ...] = class_names
        cls: tuple[str, ...] | None = class_names
    else:
        y = _numeric_block(df, columns.targets, "target", stream_of).astype(np.float32)
        out_names = tuple(columns.targets)
        cls = None

    streams: list[Stream] = []
    order = np.argsort(stream_of, kind="stable")
    ids, starts = np.unique(stream_of[order], return_index=True)
    bounds = [*starts.tolist(), len(order)]
    for k, sid in enumerate(ids):
        rows = order[bounds[k] : bounds[k + 1]]
        ts = t[rows]
        d = np.diff(ts)
        if d.size and not bool((d > 0).all()):
            j = int(np.flatnonzero(d <= 0)[0])
            r0, r1 = int(rows[j]), int(rows[j + 1])
            what = "duplicate" if d[j] == 0 else "out-of-order"
            raise ValueError(
                f"stream {sid!r} has a {what} timestamp in column {columns.time!r}: "
                f"row {r1} ({_fmt_time(ts[j + 1])}) after row {r0} ({_fmt_time(ts[j])}); "
                "rows of a stream must have strictly increasing times (sort the file, "
                "and merge or drop repeated readings)"
            )
        ys = y[rows]
        xs = x[rows]
        if horizon:
            ts, xs, ys = ts[:-horizon], xs[:-horizon], ys[horizon:]
        if len(ts) == 0:
            continue
        streams.append(Stream(str(sid), ts, xs, ys))
    if not streams:
        raise ValueError(f"no stream has more than horizon={horizon} rows")
    return StreamTable(streams, tuple(feats), out_names, cls)


def _fmt_time(s: float) -> str:
    return f"t={s:.6f}".rstrip("0").rstrip(".")
