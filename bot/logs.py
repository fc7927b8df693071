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
import threading
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


class RedactedError(Exception):
    """Stands in for a logged exception: same type name, redacted message, no frames.

    A record's `exc_info` holds the live exception, whose message may carry a secret and
    whose traceback frames hold locals (a decrypted key, the token). Reporters that read
    `exc_info` themselves (an error-tracking handler, a test capture) get this instead;
    the full traceback, redacted, stays in `exc_text`.
    """


_STAND_INS: dict[type[BaseException], type[RedactedError]] = {}


def _stand_in(exc_info: Any) -> Any:
    exc_type, exc, _tb = exc_info
    if exc_type is None or isinstance(exc, RedactedError):
        return exc_info
    cls = _STAND_INS.get(exc_type)
    if cls is None:
        cls = type(
            exc_type.__name__,
            (RedactedError,),
            {"__module__": exc_type.__module__, "__qualname__": exc_type.__qualname__},
        )
        _STAND_INS[exc_type] = cls
    try:
        message = redact(str(exc))
    except Exception:
        message = ""
    return (cls, cls(message), None)


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    if getattr(record, "_redacted", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # a broken format string must not hide the record
        message = f"{record.msg!r} {record.args!r}"
    record.msg = redact(message)
    record.args = None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.exc_info:
        record.exc_info = _stand_in(record.exc_info)
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


def _format_redacted(exc_type: type[BaseException], exc: BaseException, tb: Any) -> str:
    return redact("".join(traceback.format_exception(exc_type, exc, tb)))


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    """Python's own last-resort print of an uncaught exception, redacted.

    The default hook writes the traceback straight to stderr, past every log filter:
    PTB's InvalidToken message alone carries the bot token.
    """
    sys.stderr.write(_format_redacted(exc_type, exc, tb))
    sys.stderr.flush()


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    exc = args.exc_value if args.exc_value is not None else args.exc_type()
    text = _format_redacted(args.exc_type, exc, args.exc_traceback)
    sys.stderr.write(f"Exception in thread {name}:\n{text}")
    sys.stderr.flush()


def _unraisablehook(unraisable: Any) -> None:
    """'Exception ignored in …' (e.g. an error in __del__), redacted like the rest."""
    where = unraisable.err_msg or "Exception ignored in"
    head = f"{where}: {unraisable.object!r}\n" if unraisable.object is not None else f"{where}\n"
    exc = unraisable.exc_value
    body = _format_redacted(unraisable.exc_type, exc, unraisable.exc_traceback) if exc else ""
    sys.stderr.write(redact(head) + body)
    sys.stderr.flush()


def install_redaction() -> None:
    """Redact every record at creation, every uncaught-exception print, and quiet
    URL-logging libraries.

    asyncio's "exception was never retrieved" and PTB's error paths go through logging,
    so the record factory covers them; the three hooks cover what Python prints itself.
    """
    if logging.getLogRecordFactory() is not _factory:
        logging.setLogRecordFactory(_factory)
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
    sys.unraisablehook = _unraisablehook
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
