"""Secrets out of every log line.

A WebSocket may authenticate with ``?token=<key>`` and uvicorn logs request paths with their
query strings (the access log, the WebSocket "accepted" line); at ``trace`` level it logs
whole ASGI scopes, headers included. :class:`RedactSecrets`, a logging filter on every handler
of the server's log configuration (:func:`server_log_config`), rewrites each record before it
is written: credential-like query parameters, ``Authorization`` values and ``Bearer``/``Basic``
credentials become ``[redacted]``, and so does every configured API key wherever it appears.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

REDACTED = "[redacted]"

# ?token=..., &api_key=...: up to the next separator of a query string (or of a repr).
_QUERY_SECRET = re.compile(
    r"(?i)\b((?:access_)?token|api[_-]?key|apikey|key|secret|password)=([^&\s'\"#<>]+)"
)
# "Authorization: x", "'authorization': 'x'", "(b'authorization', b'x')": the whole value.
_AUTHORIZATION = re.compile(r"(?i)(authorization['\"]?\s*[:,=]\s*b?['\"]?)([^'\"\r\n,)}]+)")
# Keys are at least 8 characters: "basic checks" in a message is left alone.
_CREDENTIALS = re.compile(r"(?i)\b(bearer|basic)\s+([A-Za-z0-9._~+/=:-]{8,})")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with credentials and every one of ``secrets`` replaced by ``[redacted]``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, text)
    return _CREDENTIALS.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


class RedactSecrets(logging.Filter):
    """Redacts the message, its arguments and its traceback text of every record it sees.

    Arguments are redacted one by one (formatters such as uvicorn's access formatter read them
    as a tuple); one that is not a string is replaced by its redacted text only when it holds
    a secret, so ``%d`` and friends keep working."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        spelled = {form for key in secrets if key for form in (key, quote(key, safe=""))}
        self.secrets = tuple(sorted(spelled, key=len, reverse=True))  # longest first

    def _clean(self, value: Any) -> Any:
        if isinstance(value, (bool, int, float)) or value is None:
            return value
        text = value if isinstance(value, str) else str(value)
        clean = redact(text, self.secrets)
        return clean if clean != text else value

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._clean(record.msg)
        if isinstance(record.args, dict):
            record.args = {k: self._clean(v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(self._clean(a) for a in record.args)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


def server_log_config(secrets: Iterable[str] = ()) -> dict[str, Any]:
    """uvicorn's log configuration with :class:`RedactSecrets` on every handler, and the root
    logger (so the service's and the libraries' records) written through the same handler."""
    import uvicorn.config

    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["filters"] = {
        "redact": {"()": f"{__name__}.RedactSecrets", "secrets": sorted(secrets)},
    }
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config
