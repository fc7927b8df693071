"""A provider that is down (issue 11, known gap): the sweep stops asking it for a while,
treats the skipped checks as transient (no revoked alert, no re-arm), and /balance says
since when it is down."""

from __future__ import annotations

from sqlalchemy import select

from bot.secret import Secret
from bot.storage.models import AlertState, KeyStatus
from tests.alerts.conftest import Rig
from tests.e2e.harness import running_bot

USER = 7401


async def test_a_down_provider_is_not_hammered_and_changes_no_alert_state(rig: Rig) -> None:
    secrets = [f"sk-down{i:017d}" for i in range(6)]
    ids = [await rig.add_key(USER, s, label=f"k{i}") for i, s in enumerate(secrets)]
    await rig.alerts.set_thresholds(USER, None, ["50"])
    for s in secrets:
        rig.balances.amounts[s] = "40"
    await rig.sweep()
    assert await rig.kinds() == ["low"] * 6

    for s in secrets:
        rig.balances.amounts[s] = 503  # the provider goes down
    await rig.sweep()  # six failures in a row: the breaker opens
    asked = rig.providers.count("/user/balance")
    for _ in range(3):
        await rig.sweep()  # each a minute later: at most one probe, the other keys skipped
    assert rig.providers.count("/user/balance") - asked <= 3  # was 6 requests a sweep
    assert await rig.kinds() == ["low"] * 6  # no revoked alert, nothing re-armed
    async with rig.db.session() as s:
        states = (await s.scalars(select(AlertState))).all()
        statuses = (await s.scalars(select(KeyStatus))).all()
    assert all(st.memory.get("fired") == ["50"] and st.failing_since for st in states)
    assert {st.last_error_kind for st in statuses} == {"provider_down"}
    assert len(statuses) == len(ids)


async def test_balance_says_since_when_the_provider_is_down(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", status=502, json={"error": "bad gateway"})
        ann = bot.tg.user(7402, "Ann")
        for i in range(5):
            await bot.services.keys.add(ann.id, Secret(f"sk-down{i:018d}"), "deepseek")
        for expected in ("provider had an error", "not been answering since"):
            await bot.tg.send(ann, "/balance")
            reply = await bot.tg.wait_for_reply(ann, timeout=30)
            if "Checking" in (reply.text or ""):
                reply = await bot.tg.wait_for_reply(ann, timeout=30)
            assert expected in (reply.text or ""), reply.text
