"""Topic templates: ``sensors/{stream_id}/events`` and friends.

A placeholder (``{stream_id}``, ``{tenant}``) fills one whole topic level. A template gives the
subscription filter (each placeholder a ``+``), matches an incoming topic back to its values,
and formats the topic of an answer.
"""

from __future__ import annotations

from dataclasses import dataclass

PLACEHOLDERS = ("tenant", "stream_id")
# An events topic with this level appended carries SenML (RFC 8428) packs.
SENML_SUFFIX = "senml"


@dataclass(frozen=True)
class TopicTemplate:
    text: str
    levels: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, *, name: str = "topic") -> TopicTemplate:
        levels = tuple(text.split("/"))
        seen: list[str] = []
        for level in levels:
            if "+" in level or "#" in level:
                raise ValueError(f"{name} {text!r}: a template has no wildcards (+, #)")
            if level.startswith("{") and level.endswith("}"):
                key = level[1:-1]
                if key not in PLACEHOLDERS or key in seen:
                    raise ValueError(
                        f"{name} {text!r}: unknown or repeated placeholder {level}; "
                        f"use {{stream_id}} once and optionally {{tenant}} once"
                    )
                seen.append(key)
            elif "{" in level or "}" in level:
                raise ValueError(f"{name} {text!r}: a placeholder must be a whole topic level")
        if "stream_id" not in seen:
            raise ValueError(f"{name} {text!r} needs a {{stream_id}} level")
        if not text or text.startswith("$"):
            raise ValueError(f"{name} {text!r}: empty, or a broker-reserved '$' topic")
        return cls(text, levels)

    @property
    def placeholders(self) -> tuple[str, ...]:
        return tuple(level[1:-1] for level in self.levels if level.startswith("{"))

    def subscription(self, *extra_levels: str) -> str:
        """The filter matching every topic of this template (plus ``extra_levels``)."""
        return "/".join(
            ["+" if level.startswith("{") else level for level in self.levels] + list(extra_levels)
        )

    def match(self, topic: str) -> tuple[dict[str, str], tuple[str, ...]] | None:
        """``(values, extra levels)`` of a topic this template's filter (with any extra
        levels) matched; None when it is not one of this template's topics."""
        parts = topic.split("/")
        if len(parts) < len(self.levels):
            return None
        values: dict[str, str] = {}
        for level, part in zip(self.levels, parts, strict=False):
            if level.startswith("{"):
                values[level[1:-1]] = part
            elif level != part:
                return None
        return values, tuple(parts[len(self.levels) :])

    def format(self, **values: str) -> str:
        return "/".join(
            values[level[1:-1]] if level.startswith("{") else level for level in self.levels
        )
