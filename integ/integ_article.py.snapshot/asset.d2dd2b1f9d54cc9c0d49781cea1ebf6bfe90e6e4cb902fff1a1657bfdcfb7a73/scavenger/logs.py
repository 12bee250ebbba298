"""Structured JSON logs.

In Lambda with the JSON log format, the runtime's own handler already writes
each record as JSON, with the ``extra`` fields; elsewhere (tests, the local
runner) this module installs a small formatter that does the same.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

LOGGER_NAME = "stream_scavenger"
#: The SDK's loggers: at DEBUG, botocore logs each request's parameters and body (keys).
SDK_LOGGERS = ("boto3", "botocore", "urllib3", "s3transfer")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: level, message and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        return json.dumps(line, default=str, separators=(",", ":"))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not at import."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def get_logger() -> logging.Logger:
    """The scavenger's logger, at ``AWS_LAMBDA_LOG_LEVEL`` or ``SCAVENGER_LOG_LEVEL`` (INFO)."""
    logger = logging.getLogger(LOGGER_NAME)
    level = (
        os.environ.get("AWS_LAMBDA_LOG_LEVEL") or os.environ.get("SCAVENGER_LOG_LEVEL") or "INFO"
    )
    logger.setLevel(level.upper())
    if os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() != "JSON" and not logger.handlers:
        stream = _StderrHandler()
        stream.setFormatter(JsonFormatter())
        logger.addHandler(stream)
        logger.propagate = False
    return logger


def quiet_sdk_loggers(log_items: bool) -> None:
    """Keep the SDK's loggers at INFO or above, unless item values may be logged.

    With ``log_level="DEBUG"`` Lambda's runtime sets the root logger to DEBUG, and the
    SDK would then log every key this function deletes.
    """
    if log_items:
        return
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)
