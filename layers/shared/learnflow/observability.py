"""Structured logging for every function: JSON lines with the request id, and no secrets ever."""

from __future__ import annotations

import logging
import re

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

# API keys (sk_/rk_, live/test, any length) and bearer tokens: whatever path a secret takes into
# a log record (message, extra field, exception text), it leaves as a redacted stub.
_SECRET = re.compile(r"\b([sr]k_(?:live|test)_)[A-Za-z0-9]{4,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',}]+")


def redact(text: str) -> str:
    """Remove API key secrets and bearer tokens from `text`."""
    return _BEARER.sub(r"\1[REDACTED]", _SECRET.sub(r"\1[REDACTED]", text))


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter with secrets scrubbed from the finished line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


# Powertools' Logger reads POWERTOOLS_SERVICE_NAME / POWERTOOLS_LOG_LEVEL itself; creating it
# here costs no I/O, and every module of a function shares it.
logger = Logger(logger_formatter=RedactingFormatter())
