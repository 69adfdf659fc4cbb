"""Where the library's log records go: wherever the embedding app sends its own.

An app that configured structlog gets structured events from it. Any other
app gets standard ``logging`` records on the logger ``supervisor`` (so
``logging.getLogger("supervisor").setLevel(...)`` works), carrying the fields
as ``record.fields``. A ``NullHandler`` keeps the library silent until the
app configures logging: it never prints on its own. The standalone process
(``python -m supervisor run``) configures structlog itself.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ("Log",)

_stdlib = logging.getLogger("supervisor")
_stdlib.addHandler(logging.NullHandler())


class Log:
    """One target's logger: ``log(level, event, **fields)``."""

    __slots__ = ("_structlog", "_target")

    def __init__(self, target: str) -> None:
        self._target = target
        self._structlog = structlog.get_logger("supervisor").bind(target=target)

    def log(self, level: int, event: str, **fields: Any) -> None:
        fields = {k: _brief(v) for k, v in fields.items()}
        if structlog.is_configured():
            self._structlog.log(level, event, **fields)
        elif _stdlib.isEnabledFor(level):
            fields = {"target": self._target, **fields}
            text = " ".join(f"{k}={v!r}" for k, v in fields.items())
            _stdlib.log(level, "%s %s", event, text, extra={"event": event, "fields": fields})


_LISTED = 10
"""Items of a tuple field a log line spells out (a ``Resubscribed`` event of 50,000
channels holds them all; its log line names the first ten and counts the rest)."""


def _brief(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) > _LISTED:
        return (*value[:_LISTED], f"... {len(value) - _LISTED:,} more")
    return value
