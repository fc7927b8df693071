"""Logging set-up with redaction of API keys and the bot token (docs/security.md §T2, §3).

Two layers: noisy loggers that print request URLs (httpx logs the token-bearing URL at
INFO; PTB logs it at DEBUG) are raised to WARNING, and every log record is redacted as
it is created — message, arguments and traceback — so no handler (including test
capture) ever sees a secret. Redaction is by pattern (token, `sk-…`, Bearer) and by
exact value for every live `Secret` and the registered bot token.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

from bot.secret import registered_values

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\d{5,}:[A-Za-z0-9_-]{20,}"), "<bot-token>"),
    (re.compile(r"(?i)bearer\s+[^\s'\",]+"), "Bearer <redacted>"),
    (re.compile(r"\b(sk|sess|xai|pplx)-[A-Za-z0-9_\-]{6,}"), r"\1-<redacted>"),
    (re.compile(r"\b(gsk|hf|r8|fw)_[A-Za-z0-9]{8,}"), r"\1_<redacted>"),
    (re.compile(r"(?i)(x-api-key['\"]?\s*[:=]\s*['\"]?)[^\s'\",]+"), r"\1<redacted>"),
]
_QUIET = {
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "hpack": logging.WARNING,
    "aiohttp.access": logging.WARNING,
    "apscheduler": logging.WARNING,
    "alembic": logging.WARNING,
}


def redact(text: str) -> str:
    for value in registered_values():
        if len(value) >= 6 and value in text:
            text = text.replace(value, "<redacted>")
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def _redact_arg(arg: object) -> object:
    if isinstance(arg, (int, float, bool)) or arg is None:
        return arg
    return redact(str(arg))


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    if getattr(record, "_redacted", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # a broken format string must not hide the record
        message = f"{record.msg!r} {record.args!r}"
    record.msg = redact(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._redacted = True  # type: ignore[attr-defined]
    return record


class RedactingFilter(logging.Filter):
    """Second line of defence on handlers, for records made before set-up."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_base_factory = logging.getLogRecordFactory()


def _factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    return redact_record(_base_factory(*args, **kwargs))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_text:
            data["exc"] = record.exc_text
        return json.dumps(data, ensure_ascii=False)


def install_redaction() -> None:
    """Redact every record at creation and quiet URL-logging libraries."""
    if logging.getLogRecordFactory() is not _factory:
        logging.setLogRecordFactory(_factory)
    for name, level in _QUIET.items():
        logger = logging.getLogger(name)
        if logger.level < level:
            logger.setLevel(level)
    # PTB logs "Set Bot API URL: .../bot<token>" at DEBUG: keep telegram at INFO or above.
    tg = logging.getLogger("telegram")
    if tg.getEffectiveLevel() < logging.INFO:
        tg.setLevel(logging.INFO)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    install_redaction()
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("telegram").setLevel(max(logging.INFO, logging.getLevelName(level)))
