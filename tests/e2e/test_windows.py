"""Plan windows end to end: /balance and the /keys card show each window on one line.

Real Application, fake Telegram, a fake Kimi Code (`/v1/usages`) over HTTP. Reset times
are relative to the real clock (the suite also runs 400 days ahead).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.e2e.harness import RunningBot, running_bot
from tests.e2e.test_balance import add
from tests.e2e.test_keys import open_keys, press
from tests.fakes.telegram_api import button_data

KIMI_SECRET = "sk-kimi-window0123456789abcdef"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def kimi_usages(five_used: int, five_resets: datetime, week_used: int, week_resets: datetime,
                ) -> dict[str, Any]:  # fmt: skip
    """Kimi Code's answer: a 5-hour limit of 200 requests and a weekly one of 2048."""
    return {
        "usage": {"limit": "2048", "used": str(week_used),
                  "remaining": str(2048 - week_used), "resetTime": iso(week_resets)},
        "limits": [{"window": {"duration": 300, "timeUnit": "TIME_UNIT_MINUTE"},
                    "detail": {"limit": "200", "used": str(five_used),
                               "remaining": str(200 - five_used),
                               "resetTime": iso(five_resets)}}],
    }  # fmt: skip


def local_hhmm(when: datetime) -> str:
    return when.astimezone(SHANGHAI).strftime("%H:%M")


async def set_zone(bot: RunningBot, user: Any, zone: str) -> None:
    await bot.tg.send(user, f"/tz {zone}")
    assert zone in (await bot.tg.wait_for_reply(user)).text


async def test_balance_and_keys_card_show_one_line_per_window(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(4101, "Ann")
        await set_zone(bot, ann, "Asia/Shanghai")
        await add(bot, ann.id, KIMI_SECRET, "kimi-code", "kimi")
        now = datetime.now(UTC).replace(microsecond=0)
        # 2 h 10 min before the 5-hour reset: 58 % of the window's time is gone and 70 %
        # of its requests are used, so the line carries the pace mark.
        five_resets = now + timedelta(hours=2, minutes=10)
        week_resets = now + timedelta(days=3, hours=1)
        bot.providers.reply("/v1/usages", json=kimi_usages(140, five_resets, 214, week_resets))
        await bot.tg.send(ann, "/balance")
        reply = await bot.tg.wait_for_reply(ann, timeout=10)
        lines = reply.text.splitlines()
        assert "✅ kimi · Kimi Code" in lines
        five = next(line for line in lines if line.startswith("5-hour"))
        assert five.startswith("5-hour ▓▓▓▓▓░░░ 70 % · 60 requests left · ")
        assert f"resets {local_hhmm(five_resets)}, in 2 h 10 min" in five
        assert five.endswith("⚡ ahead of pace: 56 % of the time gone")
        week = next(line for line in lines if line.startswith("weekly"))
        assert week.startswith("weekly ▓░░░░░░░ 10 % · 1,834 requests left · resets ")
        assert week.endswith(f"{local_hhmm(week_resets)}, in 3 d 1 h")
        assert KIMI_SECRET not in bot.tg.transcript()

        # The /keys card shows the same lines (from the stored reading).
        listing = await open_keys(bot, ann)
        await press(bot, ann, listing.message_id, button_data(listing, "kimi"))
        card = await bot.tg.wait_for_reply(ann)
        assert "5-hour ▓▓▓▓▓░░░ 70 % · 60 requests left · resets " in card.text
        assert "weekly ▓░░░░░░░ 10 % · 1,834 requests left" in card.text

        # In Chinese, the same line in Chinese words.
        await bot.tg.send(ann, "/lang zh")
        await bot.tg.wait_for_reply(ann)
        bot.services.billing.clear_cache()
        await bot.tg.send(ann, "/balance")
        zh = await bot.tg.wait_for_reply(ann, timeout=10)
        assert "5 小时 ▓▓▓▓▓░░░ 已用 70 % · 剩余 60 次请求 · " in zh.text
        assert f"{local_hhmm(five_resets)} 重置，还有 2 小时" in zh.text
        assert bot.tg.errors == []
