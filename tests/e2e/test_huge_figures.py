"""Very large figures never break a user's replies (issue 11, item 4): a provider sending
1E+40 is a "made no sense" answer, and rows stored before figures were bounded (key
status, alert payloads) still render."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.alerts.outbox import enqueue_many, outbox_row
from bot.secret import Secret
from bot.storage.models import ApiKey, BalanceSnapshot, KeyStatus
from tests.e2e.harness import RunningBot, running_bot

SORRY = "Something went wrong"
MADE_NO_SENSE = "made no sense"
HUGE = "1E+40"


def deepseek(total: str) -> dict[str, object]:
    info = {"currency": "USD", "total_balance": total, "granted_balance": "0",
            "topped_up_balance": total}  # fmt: skip
    return {"is_available": True, "balance_infos": [info]}


async def ask(bot: RunningBot, user: object, text: str) -> str:
    await bot.tg.send(user, text)  # type: ignore[arg-type]
    reply = await bot.tg.wait_for_reply(user, timeout=10)  # type: ignore[arg-type]
    if "Checking" in (reply.text or ""):
        reply = await bot.tg.wait_for_reply(user, timeout=10)  # type: ignore[arg-type]
    return reply.text or ""


async def test_add_with_a_1e40_balance_then_balance_and_keys_still_answer(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=deepseek(HUGE))
        ann = bot.tg.user(3101, "Ann")
        added = await ask(bot, ann, "/add sk-huge0000000000000000000001 provider=deepseek")
        assert SORRY not in added
        for command in ("/balance", "/keys"):
            text = await ask(bot, ann, command)
            assert SORRY not in text, command
        bot.providers.reply("/user/balance", json=deepseek("12.5"))
        text = await ask(bot, ann, "/balance")
        assert "$12.50" in text


@pytest.mark.parametrize("stored", ["1E+40", "9E+999999", "1" * 60])
async def test_old_stored_huge_figures_do_not_break_balance_or_keys(
    make_settings, stored: str
) -> None:
    """key_status rows written before figures were bounded: shown as unusable, not a crash."""
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", status=500, json={"error": "down"})
        ann = bot.tg.user(3102, "Ann")
        added = await bot.services.keys.add(
            ann.id, Secret("sk-huge0000000000000000000002"), "deepseek", label="ds"
        )
        async with bot.services.db.session() as s:
            s.add(
                KeyStatus(
                    key_id=added.key.id,
                    owner_id=ann.id,
                    last_ok_at=bot.services.clock(),
                    last_result={
                        "provider": "deepseek",
                        "kind": "balance",
                        "currency": "USD",
                        "remaining": stored,
                        "total": stored,
                    },
                    consecutive_failures=0,
                )
            )
        for command in ("/balance", "/keys"):
            text = await ask(bot, ann, command)
            assert SORRY not in text and "ds" in text, command
        async with bot.services.db.session() as s:
            assert await s.scalar(select(ApiKey.id).where(ApiKey.owner_id == ann.id))


async def test_old_huge_snapshots_do_not_break_balance(make_settings) -> None:
    """Snapshots stored before figures were bounded feed the pace line: they are skipped."""
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=deepseek("12.5"))
        ann = bot.tg.user(3104, "Ann")
        added = await bot.services.keys.add(
            ann.id, Secret("sk-huge0000000000000000000004"), "deepseek", label="ds"
        )
        now = bot.services.clock()
        async with bot.services.db.session() as s:
            for hours, figure in ((60, "9E+999999"), (36, "-9E+999999"), (12, "1E+40")):
                s.add(
                    BalanceSnapshot(
                        key_id=added.key.id,
                        taken_at=now - timedelta(hours=hours),
                        kind="balance",
                        currency="USD",
                        remaining=figure,
                    )
                )
        text = await ask(bot, ann, "/balance")
        assert SORRY not in text and "$12.50" in text


async def test_an_alert_holding_a_huge_figure_is_delivered(make_settings) -> None:
    """Alert payloads are text: one queued before the bound renders, once, not 50 retries."""
    async with running_bot(make_settings, alert_interval_seconds=3600) as bot:
        ann = bot.tg.user(3103, "Ann", started=True)
        added = await bot.services.keys.add(
            ann.id, Secret("sk-huge0000000000000000000003"), "deepseek", label="big"
        )
        now = bot.services.clock()
        payload = {
            "remaining": "9E+999999",
            "total": "9E+999999",
            "currency": "USD",
            "threshold": "50%",
            "threshold_amount": "4.5E+999999",
            "label": "big",
            "hint": "sk-…0003",
            "provider": "deepseek",
            "measured_at": now.isoformat(),
        }
        row = outbox_row(
            idem_key="huge:1", user_id=ann.id, key_id=added.key.id, kind="low",
            payload=payload, now=now,
        )  # fmt: skip
        async with bot.services.db.session() as s:
            await enqueue_many(s, [row])
        sender = bot.app.bot_data.sender
        assert sender is not None
        await sender.run()
        alert = await bot.tg.wait_for_reply(ann, timeout=10)
        assert "9.00E+999999" in (alert.text or "")
