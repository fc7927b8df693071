"""Logs never carry API keys or the bot token (docs/security.md §T2, §T4, §3, §7)."""

from __future__ import annotations

import io
import json
import logging
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from bot.logs import RedactingFilter, setup_logging
from bot.secret import Secret, register_static
from tests.conftest import TEST_TOKEN
from tests.foundation.conftest import Opened

log = logging.getLogger("bot.test_logs")
_QUIETED = (
    "httpx",
    "httpcore",
    "hpack",
    "aiohttp.access",
    "apscheduler",
    "alembic",
    "telegram",
    "sqlalchemy.engine",
)


@pytest.fixture
def logging_setup(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., io.StringIO]]:
    """Run `setup_logging` with stderr captured; put every piece of global state back."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_factory = logging.getLogRecordFactory()
    saved_levels = {name: logging.getLogger(name).level for name in _QUIETED}

    def setup(level: str = "DEBUG", fmt: str = "text") -> io.StringIO:
        stream = io.StringIO()
        monkeypatch.setattr(sys, "stderr", stream)
        setup_logging(level, fmt)
        return stream

    yield setup
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    logging.setLogRecordFactory(saved_factory)
    for name, level in saved_levels.items():
        logging.getLogger(name).setLevel(level)


def leaked(needles: list[str], records: list[logging.LogRecord], *texts: str) -> list[str]:
    """Every place a needle shows up: record message, msg, args, traceback, formatted line."""
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    found = []
    for record in records:
        parts = [
            record.getMessage(),
            str(record.msg),
            repr(record.args),
            record.exc_text or "",
            record.stack_info or "",
            formatter.format(record),
        ]
        for part in parts:
            found += [f"{record.name}: {part[:200]}" for n in needles if n in part]
    for text in texts:
        found += [f"text: {n[:12]}…" for n in needles if n in text]
    return found


def _upstream_call(api_key: str, token: str) -> None:
    authorization = f"Bearer {api_key}"  # noqa: F841 - a local that holds the key
    url = f"https://api.telegram.org/bot{token}/getMe?key={api_key}"  # noqa: F841
    raise RuntimeError(f"upstream rejected {api_key} (bot{token})")


async def test_debug_logs_of_the_key_flows_contain_no_secret(
    opened: Opened,
    canary: str,
    caplog: pytest.LogCaptureFixture,
    logging_setup: Callable[..., io.StringIO],
) -> None:
    stream = logging_setup("DEBUG")
    logging.getLogger().addHandler(caplog.handler)  # setup_logging replaced the root handlers
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.DEBUG)  # SQL and its parameters
    odd = f"CANARYODD{uuid.uuid4().hex}"  # a key with no known shape: redacted by value

    added = await opened.keys.add(77, Secret(canary), "deepseek", label="canary")
    await opened.keys.add(77, Secret(canary), "deepseek")  # the duplicate path
    odd_secret = Secret(odd)
    await opened.keys.add(77, odd_secret, "relay", base_url="https://relay.example")
    results = await opened.keys.requests(77)
    assert {r.secret.reveal() for _, r in results if r} == {canary, odd}  # really decrypted
    for view, req in results:
        log.debug("checking %s with %r", view, req)
        assert req is not None
        log.info("careless: %s", req.secret.reveal())  # the values themselves, by mistake
        log.info(f"careless f-string {req.secret.reveal()} token {TEST_TOKEN}")
        log.debug("headers %r", {"Authorization": f"Bearer {req.secret.reveal()}"})
    log.warning("token %s and url %s", TEST_TOKEN, f"https://api.telegram.org/bot{TEST_TOKEN}/x")

    try:
        _upstream_call(canary, TEST_TOKEN)
    except RuntimeError:
        log.exception("check of %s failed", added.key.id)
    try:
        try:
            _upstream_call(odd, TEST_TOKEN)
        except RuntimeError as exc:
            raise ValueError(f"wrapped: {exc}") from exc
    except ValueError:
        log.error("chained failure", exc_info=True)
    log.debug("stack for %s", canary, stack_info=True)

    # Libraries that put secrets in URLs: httpx logs request lines, PTB logs its base URL.
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ok": True})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        await client.get(f"https://api.telegram.org/bot{TEST_TOKEN}/getMe", params={"key": canary})
    import telegram

    telegram.Bot(TEST_TOKEN)

    records = list(caplog.records)
    output = stream.getvalue()
    assert len([r for r in records if r.name == log.name]) >= 10  # the lines were logged
    assert "<redacted>" in caplog.text and "check of" in output and "Traceback" in output
    assert "_upstream_call" in output  # tracebacks are kept, only redacted
    assert leaked([canary, odd, TEST_TOKEN], records, caplog.text, output) == []


def test_logging_levels_after_setup(logging_setup: Callable[..., io.StringIO]) -> None:
    logging_setup("DEBUG")
    assert logging.getLogger().getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("telegram").getEffectiveLevel() >= logging.INFO
    assert logging.getLogger("telegram.ext").getEffectiveLevel() >= logging.INFO
    assert logging.getLogger("telegram.Bot").getEffectiveLevel() >= logging.INFO


def test_static_secrets_are_redacted_by_value(
    logging_setup: Callable[..., io.StringIO], caplog: pytest.LogCaptureFixture
) -> None:
    stream = logging_setup("INFO")
    logging.getLogger().addHandler(caplog.handler)
    token = f"plain{uuid.uuid4().hex}"  # a token of no known shape
    register_static(token)
    log.info("token is %s", token)
    assert leaked([token], list(caplog.records), stream.getvalue()) == []
    assert "token is <redacted>" in stream.getvalue()


def test_records_made_elsewhere_are_redacted_by_the_handler(
    logging_setup: Callable[..., io.StringIO], canary: str
) -> None:
    stream = logging_setup("INFO")
    # A record built without the factory (e.g. unpickled from another process).
    try:
        _upstream_call(canary, TEST_TOKEN)
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("other", logging.ERROR, __file__, 1, "key %s", (canary,), exc_info)
    [handler] = logging.getLogger().handlers
    assert any(isinstance(f, RedactingFilter) for f in handler.filters)
    handler.handle(record)
    output = stream.getvalue()
    assert "key sk-<redacted>" in output and "Traceback" in output
    assert canary not in output and TEST_TOKEN not in output


def test_json_format_is_one_object_per_line(
    logging_setup: Callable[..., io.StringIO], canary: str
) -> None:
    stream = logging_setup("INFO", "json")
    log.info("plain line")
    log.warning("multi\nline with ünïcödé and %s", canary)
    try:
        _upstream_call(canary, TEST_TOKEN)
    except RuntimeError:
        log.exception("failed")
    log.debug("below the level")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    objects = [json.loads(line) for line in lines]
    assert [o["level"] for o in objects] == ["INFO", "WARNING", "ERROR"]
    assert all(o["logger"] == log.name and o["ts"] for o in objects)
    assert objects[1]["msg"].startswith("multi\nline with ünïcödé")
    assert "Traceback" in objects[2]["exc"] and "RuntimeError" in objects[2]["exc"]
    assert canary not in stream.getvalue() and TEST_TOKEN not in stream.getvalue()


class _Reporter(logging.Handler):
    """Like an error-tracking handler: formats `exc_info` itself and reads frame locals."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.exc_info:
            return
        exc_type, exc, tb = record.exc_info
        self.seen.append("".join(traceback.format_exception(exc_type, exc, tb)))
        self.seen.append(f"{exc_type.__name__}: {exc}")  # type: ignore[union-attr]
        while tb is not None:  # what locals-capturing reporters send
            self.seen.append(repr(tb.tb_frame.f_locals))
            tb = tb.tb_next


def test_exc_info_is_redacted_at_the_source(
    logging_setup: Callable[..., io.StringIO], canary: str
) -> None:
    """A reporter reading `record.exc_info` gets the type name and redacted text, no frames."""
    stream = logging_setup("INFO")
    reporter = _Reporter()
    logging.getLogger().addHandler(reporter)
    try:
        try:
            _upstream_call(canary, TEST_TOKEN)
        except RuntimeError:
            log.exception("check failed")
        assert len(reporter.seen) >= 2
        for text in reporter.seen:
            assert canary not in text and TEST_TOKEN not in text, text
        assert reporter.seen[1].startswith("RuntimeError: upstream rejected sk-<redacted>")
        assert "_upstream_call" in stream.getvalue()  # the handler's traceback is kept
    finally:
        logging.getLogger().removeHandler(reporter)
