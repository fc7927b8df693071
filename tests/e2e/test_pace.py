"""Pace in /balance and on the /keys card: shown where the history supports it (the
forecast's rules), absent — not guessed — where it doesn't."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.handlers.pace import day_month
from bot.i18n import translator
from bot.storage.models import BalanceSnapshot
from tests.e2e.harness import RunningBot, running_bot
from tests.e2e.test_balance import DEEPSEEK, OPENROUTER, add
from tests.e2e.test_keys import open_keys, press
from tests.fakes.telegram_api import button_data


async def seed(bot: RunningBot, key_id: str, *points: tuple[timedelta, str], currency: str) -> None:
    """Snapshots `ago` before now (the bot runs on the real clock, shifted in CI)."""
    now = datetime.now(UTC)
    async with bot.services.db.session() as s:
        for ago, remaining in points:
            s.add(
                BalanceSnapshot(
                    key_id=key_id,
                    taken_at=now - ago,
                    kind="balance",
                    currency=currency,
                    remaining=remaining,
                )
            )


def until_dates(days: int, lang: str = "en") -> set[str]:
    """The run-out date as the bot writes it (either side of a midnight during the test)."""
    t, utc = translator(lang), ZoneInfo("UTC")
    now = datetime.now(UTC)
    return {day_month(now + timedelta(days=days, minutes=m), utc, t) for m in (-5, 0, 5)}


async def test_balance_shows_pace_only_where_history_supports_it(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(4101, "Ann")
        ds = await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "ds")
        router = await add(bot, ann.id, "sk-or-v1-0123456789abcdef0123456789", "openrouter", "or")
        # DeepSeek answers ¥110 now: 130 → 120 → 110 over two days is ¥10 a day, 11 days left.
        await seed(bot, ds, (timedelta(days=2), "130"), (timedelta(days=1), "120"), currency="CNY")
        # OpenRouter: one earlier reading + the new one = two readings: no pace, ever.
        await seed(bot, router, (timedelta(hours=20), "90"), currency="USD")
        bot.providers.reply("/user/balance", json=DEEPSEEK)
        bot.providers.reply("/v1/key", json=OPENROUTER)
        await bot.tg.send(ann, "/balance")
        reply = await bot.tg.wait_for_reply(ann, predicate=lambda m: "Balances" in (m.text or ""))
        text = reply.text or ""
        ds_block, or_block = text.split("\n\n")[1:3]
        assert "ds · DeepSeek\n¥110.00 left" in ds_block
        assert any(
            f"≈ ¥10.00/day · lasts ~11 days (until {d})" in ds_block for d in until_dates(11)
        )
        assert "/day" not in or_block and "lasts" not in or_block

        # Chinese, and the /keys card shows the same pace.
        await bot.services.users.set_language(ann.id, "zh")
        listing = await open_keys(bot, ann)
        await press(bot, ann, listing.message_id, button_data(listing, "ds"))
        card = await bot.tg.wait_for_reply(ann)
        dates = until_dates(11, "zh")
        assert any(f"≈ 每天 ¥10.00 · 约可用 11 天（到 {d}）" in (card.text or "") for d in dates)
        await press(bot, ann, listing.message_id, "k:list")
        listing = await bot.tg.wait_for_reply(ann)
        await press(bot, ann, listing.message_id, button_data(listing, "or"))
        card = await bot.tg.wait_for_reply(ann)
        assert "每天" not in (card.text or "")


async def test_points_pace_is_in_points_not_money(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(4102, "Ann")
        poe = await add(bot, ann.id, "a" * 43, "poe", "poe")
        now = datetime.now(UTC)
        async with bot.services.db.session() as s:
            for ago, value in ((timedelta(days=2), "3000"), (timedelta(days=1), "2000")):
                s.add(
                    BalanceSnapshot(
                        key_id=poe,
                        taken_at=now - ago,
                        kind="balance",
                        unit="points",
                        remaining=value,
                    )
                )
        bot.providers.reply("/usage/current_balance", json={"current_point_balance": 1000})
        await bot.tg.send(ann, "/balance")
        reply = await bot.tg.wait_for_reply(ann, predicate=lambda m: "Balances" in (m.text or ""))
        assert "≈ 1,000 points/day · lasts ~1 day" in (reply.text or ""), reply.text
        assert "$" not in (reply.text or "")  # points are never money
