"""SenML JSON (RFC 8428) packs to events of a model with named features.

A pack is a JSON array of records. Base fields (``bn``, ``bt``, ``bu``, ``bv``) apply to their
record and every later one until redefined; a record's name is ``bn + n``, its time ``bt + t``
and its value ``bv + v``. A time below 2**28 is relative to now (RFC 8428 §4.5.3: "now" is
when the service received the message). Mapping onto the model:

- a record names a feature by its resolved name, or by its own ``n`` alone (``bn`` is then
  the device, e.g. ``urn:dev:mac:0024befffe804ff1:``); any other name is ``unknown_feature``;
- records with the same resolved time make one event, which needs every feature once
  (``missing_feature``; a feature twice at one time is ``invalid_event``); events come out in
  time order;
- a unit (``u``, else ``bu``) must equal the model's unit for that feature, when the model's
  metadata gives units (``metadata.feature_units``: ``{feature: unit}``); a record without a
  unit is taken to be in the model's unit;
- only numeric values (``v``) make features: a string, boolean, data or sum-only record is
  ``invalid_event``; a field ending in ``_`` (must-understand, §4.4) is ``invalid_event``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.api.errors import ErrorCode
from service.api.parsing import FieldError, parse_features, parse_number, parse_timestamp
from service.engine.registry import FeatureSpec
from service.mqtt.wire import SENML_CONTENT_TYPE

CONTENT_TYPE = SENML_CONTENT_TYPE
RELATIVE_TIME_LIMIT = 2.0**28  # RFC 8428 §4.5.3: smaller times are relative to "now"
_BASE = ("bn", "bt", "bu", "bv", "bs", "bver")
_RECORD = ("n", "u", "v", "vs", "vb", "vd", "s", "t", "ut")
SENML_VERSION = 10


@dataclass(frozen=True)
class SenmlEvent:
    """One event of a pack: its time and features in model order, and the index of the first
    record that made it (to name it in errors and to derive its id)."""

    t: float
    x: tuple[float, ...]
    index: int


def _field_error(message: str, field: str, code: ErrorCode = ErrorCode.INVALID_EVENT) -> FieldError:
    return FieldError(code, message, field)


def _string(record: Mapping[str, Any], key: str, field: str) -> str | None:
    value = record.get(key)
    if value is not None and not isinstance(value, str):
        raise _field_error(f"{field}.{key} must be a string", f"{field}.{key}")
    return value


def feature_units(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """The model's units by feature (``metadata.feature_units``), empty when it gives none."""
    units = (metadata or {}).get("feature_units") or {}
    if not isinstance(units, Mapping):
        return {}
    return {str(k): str(v) for k, v in units.items()}


def decode_pack(
    pack: Any, spec: FeatureSpec, units: Mapping[str, str], now: float
) -> list[SenmlEvent]:
    """The events of a parsed SenML pack, or :class:`FieldError` for the first fault (the
    field is ``senml[i].key``)."""
    if spec.names is None:
        raise _field_error(
            "the model does not name its features, so SenML records cannot be mapped to them",
            "senml",
        )
    if not isinstance(pack, list) or not pack:
        raise _field_error("a SenML pack is a non-empty JSON array of records", "senml")
    base: dict[str, Any] = {"bn": "", "bt": 0.0, "bu": None, "bv": 0.0}
    # time -> (first record index, {feature: (value, field)})
    by_time: dict[float, tuple[int, dict[str, tuple[Any, str]]]] = {}
    for i, record in enumerate(pack):
        field = f"senml[{i}]"
        if not isinstance(record, dict):
            raise _field_error("a SenML record is a JSON object", field)
        for key in record:
            if key.endswith("_"):
                raise _field_error(f"must-understand field {key!r} is not supported", field)
        version = record.get("bver", SENML_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version > SENML_VERSION:
            raise _field_error(f"SenML version {version!r} is not supported", f"{field}.bver")
        if "bn" in record:
            base["bn"] = _string(record, "bn", field) or ""
        if "bu" in record:
            base["bu"] = _string(record, "bu", field)
        for key in ("bt", "bv"):
            if key in record:
                base[key] = parse_number(record[key], f"{field}.{key}")
        if not any(key in record for key in _RECORD):
            if any(key in record for key in _BASE):
                continue  # a record of base fields only (a header)
            raise _field_error("a SenML record needs a name and a value", field)
        name = base["bn"] + (_string(record, "n", field) or "")
        own = _string(record, "n", field) or ""
        feature = name if name in spec.names else own
        if not feature:
            raise _field_error("a SenML record needs a name (n or bn)", f"{field}.n")
        if "v" not in record:
            raise _field_error(
                f"record {name!r} has no numeric value 'v' (string, boolean, data and sum "
                "values cannot be model features)",
                field,
            )
        value = parse_number(record["v"], f"{field}.v") + base["bv"]
        unit = _string(record, "u", field) or base["bu"]
        expected = units.get(feature)
        if unit is not None and expected is not None and unit != expected:
            raise FieldError(
                ErrorCode.INVALID_EVENT,
                f"record {name!r} is in {unit!r}; the model takes {feature} in {expected!r}",
                f"{field}.u",
                expected_unit=expected,
                unit=unit,
            )
        t_raw = base["bt"] + (parse_number(record["t"], f"{field}.t") if "t" in record else 0.0)
        t = parse_timestamp(now + t_raw if t_raw < RELATIVE_TIME_LIMIT else t_raw, f"{field}.t")
        first, values = by_time.setdefault(t, (i, {}))
        if feature in values:
            raise _field_error(
                f"feature {feature!r} appears twice at time {t!r}", field=f"{field}.n"
            )
        values[feature] = (value, f"{field}.v")
    events = []
    for t in sorted(by_time):
        first, values = by_time[t]
        x = parse_features(
            {name: value for name, (value, _) in values.items()}, spec, field=f"senml@{t!r}"
        )
        events.append(SenmlEvent(t, x, first))
    return events
