"""SQLite under write contention (issue 11, item 7): the real Application on a SQLite file.

Before: 500 new users at once → some got "Something went wrong" ("database is locked");
an outside writer holding the lock → even /start failed, with a traceback in the log.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.storage.db import sqlite_path
from tests.e2e.harness import running_bot, without_scheduled_sweep

WELCOME = "encrypted"
BUSY = "very busy"


def no_locked_tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and "locked" in (r.exc_text or "") + r.getMessage()
    ]


async def test_500_new_users_at_once(make_settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with running_bot(make_settings) as bot:
        users = [bot.tg.user(50_000 + i, f"U{i}") for i in range(500)]
        started = time.monotonic()
        await asyncio.gather(*(bot.tg.send(u, "/start") for u in users))
        replies = await asyncio.gather(*(bot.tg.wait_for_reply(u, timeout=120) for u in users))
        print(f"500 new users answered in {time.monotonic() - started:.1f} s")
        assert [r.text for r in replies if WELCOME not in (r.text or "")] == []
        assert no_locked_tracebacks(caplog) == []


@contextmanager
def outside_writer(path: Path) -> Iterator[None]:
    """Another program (a backup script, `sqlite3` by hand) holding the write lock."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        taken.set()
        release.wait(60)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(10)
    try:
        yield
    finally:
        release.set()
        thread.join()


async def test_an_outside_writer_holding_the_lock(
    make_settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running_bot(make_settings) as bot:
        without_scheduled_sweep(bot)
        tg = bot.tg
        known = tg.user(60_001, "Known")
        await tg.send(known, "/start")
        assert WELCOME in (await tg.wait_for_reply(known)).text
        path = sqlite_path(bot.settings.database_url)
        assert path is not None
        newcomers = [tg.user(60_100 + i, f"New{i}") for i in range(5)]
        with outside_writer(path):
            started = time.monotonic()
            await tg.send(known, "/start")  # reads only: answered at once, lock or not
            assert WELCOME in (await tg.wait_for_reply(known, timeout=3)).text
            for user in newcomers:  # a first contact must write: told to try again
                await tg.send(user, "/start")
            replies = await asyncio.gather(*(tg.wait_for_reply(u, timeout=30) for u in newcomers))
            print(f"newcomers told 'busy' after {time.monotonic() - started:.1f} s")
            assert all(BUSY in (r.text or "") for r in replies), [r.text for r in replies]
        await tg.send(newcomers[0], "/start")  # the lock is gone: welcome
        assert WELCOME in (await tg.wait_for_reply(newcomers[0], timeout=10)).text
    assert no_locked_tracebacks(caplog) == []
    assert any("database is busy" in r.getMessage() for r in caplog.records)
