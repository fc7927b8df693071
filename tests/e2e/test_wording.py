"""Words a first-week user reads: relative dates, plurals, echoed input, provider names.

Issue 12 items 6 and 12, through the real Application and the fake Telegram.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, time, timedelta

from tests.e2e.harness import running_bot
from tests.e2e.test_balance import MOONSHOT, RELAY_STATUS, add, relay_usage
from tests.fakes.telegram_api import button_data


def two_days_but_under_48_hours() -> datetime:
    """Just after midnight (UTC) the day after tomorrow: 2 calendar days, < 48 hours."""
    day = datetime.now(UTC).date() + timedelta(days=2)
    return datetime.combine(day, time(0, 0, 30), tzinfo=UTC)


async def test_the_expiry_alert_counts_days_as_balance_does(make_settings) -> None:
    """The alert said "in 1 days" where /balance said "in 2 days"."""
    async with running_bot(make_settings, alert_interval_seconds=1) as bot:
        expires = two_days_but_under_48_hours()
        bot.providers.reply("/api/usage/token", json=relay_usage(expires))
        bot.providers.reply("/api/status", json=RELAY_STATUS)
        ann = bot.tg.user(2301, "Ann", started=True)
        await add(
            bot, ann.id, "sk-relay0123456789abcdef", "relay", "relay", base_url=bot.providers.url
        )
        alert = await bot.tg.wait_for_reply(ann, timeout=10, predicate=lambda m: "⏰" in m.text)
        date = expires.strftime("%Y-%m-%d")
        assert f"expires on {date} 00:00 UTC (in 2 days)." in alert.text
        await bot.tg.send(ann, "/balance")
        answer = await bot.tg.wait_for_reply(ann, predicate=lambda m: "Balances" in m.text)
        assert f"expires {date} · in 2 days" in answer.text


async def test_forget_counts_in_words_and_long_input_is_cut_with_an_ellipsis(
    make_settings,
) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(2302, "Ann")
        await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "ds")
        long = "x" * 80
        await bot.tg.send(ann, f"/balance {long}")
        unknown = await bot.tg.wait_for_reply(ann)
        assert unknown.text.startswith(f"No key named {'x' * 63}…. Your keys: ds")
        await bot.tg.send(ann, f"/remove {long}")
        assert f"{'x' * 63}…" in (await bot.tg.wait_for_reply(ann)).text
        await bot.tg.send(ann, f"/alerts {long} 5")
        assert f"{'x' * 63}…" in (await bot.tg.wait_for_reply(ann)).text
        await bot.tg.send(ann, "/forget")
        ask = await bot.tg.wait_for_reply(ann)
        assert "about you: your 1 key, their balance history" in ask.text
        await bot.tg.press(ann, ask.message_id, button_data(ask, "Delete everything"))
        done = await bot.tg.wait_for_reply(ann)
        assert done.text.startswith("Done. Deleted 1 key and ")
        assert "(s)" not in done.text
        assert re.search(r"Deleted 1 key and (1 other record|\d+ other records), and", done.text)


async def test_chinese_names_moonshot_one_way(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/v1/users/me/balance", json=MOONSHOT)
        li = bot.tg.user(2303, "Li", language_code="zh-hans")
        await bot.tg.send(li, "/add sk-moonshot0123456789abcdefgh kimi provider=moonshot")
        saved = await bot.tg.wait_for_reply(li)
        await bot.tg.send(li, "/balance")
        answer = await bot.tg.wait_for_reply(li, predicate=lambda m: "余额" in m.text)
        await bot.tg.send(li, "/remove kimi")
        confirm = await bot.tg.wait_for_reply(li)
        await asyncio.sleep(0)
        for text in (saved.text, answer.text, confirm.text):
            assert "Moonshot（Kimi）" in text and "Moonshot (Kimi)" not in text, text
