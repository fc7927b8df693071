"""`kill -9` in the middle of /add never loses a key silently (issue 11 item 5).

The bot runs as a real process (`python -m bot run`, polling the fake Telegram). The key's
message is deleted only after the key is sealed in the database, so when the process dies
while the provider is being asked, the key is still there; the restarted bot tells the user
and saves it on one press. (Before: the message was deleted first, the update was already
confirmed to Telegram, and the key was simply gone.)
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.flows import FlowRow
from bot.storage.models import ApiKey
from tests.alerts.conftest import poll_until
from tests.alerts.test_processes import bot_env, ready, spawn, stop
from tests.e2e.test_add import DEEPSEEK_OK, _read_db_files, canary
from tests.fakes.provider_server import FakeProviderServer
from tests.fakes.telegram_api import FakeTelegram, button_data


async def _rows(url: str) -> tuple[list[FlowRow], list[ApiKey]]:
    db = Database(url)
    try:
        async with db.session() as s:
            flows = list((await s.scalars(select(FlowRow))).all())
            keys = list((await s.scalars(select(ApiKey))).all())
            return flows, keys
    finally:
        await db.dispose()


@pytest.mark.slow
async def test_sigkill_while_a_new_key_is_checked_loses_nothing(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    tg = await FakeTelegram().start()
    providers = await FakeProviderServer().start()
    providers.reply("/user/balance", json=DEEPSEEK_OK, delay=60)  # the first check hangs
    url = f"sqlite+aiosqlite:///{tmp_path}/data/bot.db"
    env = bot_env(tg, providers, url, tmp_path)
    procs = [spawn(env, tmp_path, tmp_path / "first.log")]
    try:
        await ready(tg, 1)
        ann = tg.user(1001, "Ann")
        key = canary()
        mid = await tg.send(ann, f"/add {key} work provider=deepseek")

        async def asking() -> bool:
            return providers.count("/user/balance") >= 1

        await poll_until(asking, 30)  # the key is with the provider...
        procs[0].send_signal(signal.SIGKILL)  # ...when the process dies
        procs[0].wait(10)
        assert (ann.id, mid) in tg.deleted  # the message is gone, so the key must not be
        flows, keys = await _rows(url)
        assert keys == []
        [flow] = flows
        assert flow.user_id == ann.id and flow.sealed is not None
        assert key.encode() not in _read_db_files(tmp_path / "data" / "bot.db")

        providers.reply("/user/balance", json=DEEPSEEK_OK)  # the provider answers now
        procs.append(spawn(env, tmp_path, tmp_path / "second.log"))
        told = await tg.wait_for_reply(
            ann, timeout=30, predicate=lambda m: "interrupted" in (m.text or "")
        )
        assert f"…{key[-4:]}" in told.text and "not saved yet" in told.text
        qid = await tg.press(ann, told.message_id, button_data(told, "Save it now"))
        await tg.wait_for_answer(qid, timeout=15)
        done = await tg.wait_for_reply(
            ann, timeout=30, predicate=lambda m: "Saved" in (m.text or "")
        )
        assert "Saved work" in done.text and "110" in done.text
        flows, keys = await _rows(url)
        assert flows == [] and [k.label for k in keys] == ["work"]
        assert key not in tg.transcript()
        assert len([m for m in tg.messages(ann.id) if "interrupted" in (m.text or "")]) == 1
    finally:
        for proc in procs:
            stop(proc)
        await tg.stop()
        await providers.stop()
