"""/currency end to end: /balance ends with the per-currency totals and one converted total
from a fake ECB rates server (FX_RATES_URL), or says that rates are unavailable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.e2e.harness import running_bot
from tests.e2e.test_balance import DEEPSEEK, OPENROUTER, add
from tests.fakes.rates_server import FakeRatesServer


@pytest.fixture
async def rates() -> AsyncIterator[FakeRatesServer]:
    server = await FakeRatesServer(day=datetime.now(UTC).date()).start()
    try:
        yield server
    finally:
        await server.stop()


async def test_currency_converts_the_balance_total(make_settings, rates: FakeRatesServer) -> None:
    async with running_bot(make_settings, fx_rates_url=rates.url) as bot:
        ann = bot.tg.user(4301, "Ann")
        await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "ds")
        await add(bot, ann.id, "sk-or-v1-0123456789abcdef0123456789", "openrouter", "or")
        await add(bot, ann.id, "a" * 43, "poe", "poe")
        bot.providers.reply("/user/balance", json=DEEPSEEK)  # ¥110.00
        bot.providers.reply("/v1/key", json=OPENROUTER)  # $74.50
        bot.providers.reply("/usage/current_balance", json={"current_point_balance": 5000})

        await bot.tg.send(ann, "/currency usd")
        reply = await bot.tg.wait_for_reply(ann)
        assert "also shows the total in USD" in (reply.text or "")
        await bot.tg.send(ann, "/balance")
        final = await bot.tg.wait_for_reply(ann, predicate=lambda m: "Total left" in (m.text or ""))
        text = final.text or ""
        # 110 CNY = 110 / 7.80 × 1.05 USD = 14.81; + 74.50 = 89.31. Points are never money.
        expected = Decimal(110) / Decimal("7.8") * Decimal("1.05") + Decimal("74.50")
        assert round(expected, 2) == Decimal("89.31")
        day = rates.day.isoformat()
        assert (
            f"Total left: ¥110.00 · $74.50\n≈ $89.31 in total (ECB reference rates of {day})\n"
        ) in text, text
        assert "5,000 points" in text and rates.hits == 1

        # Chinese, and a second /balance does not fetch again.
        await bot.services.users.set_language(ann.id, "zh")
        bot.services.billing.clear_cache()
        await bot.tg.send(ann, "/balance")
        final = await bot.tg.wait_for_reply(ann, predicate=lambda m: "合计剩余" in (m.text or ""))
        assert f"≈ 合计 $89.31（欧洲央行 {day} 参考汇率）" in (final.text or "")
        assert rates.hits == 1

        await bot.tg.send(ann, "/currency off")
        await bot.tg.wait_for_reply(ann)
        bot.services.billing.clear_cache()
        await bot.tg.send(ann, "/balance")
        final = await bot.tg.wait_for_reply(ann, predicate=lambda m: "合计剩余" in (m.text or ""))
        assert "≈" not in (final.text or "").split("合计")[-1]


async def test_rates_unavailable_keep_totals_per_currency(
    make_settings, rates: FakeRatesServer
) -> None:
    rates.status = 500
    async with running_bot(make_settings, fx_rates_url=rates.url) as bot:
        ann = bot.tg.user(4302, "Ann")
        await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "ds")
        await add(bot, ann.id, "sk-or-v1-0123456789abcdef0123456789", "openrouter", "or")
        bot.providers.reply("/user/balance", json=DEEPSEEK)
        bot.providers.reply("/v1/key", json=OPENROUTER)
        await bot.tg.send(ann, "/currency EUR")
        await bot.tg.wait_for_reply(ann)
        await bot.tg.send(ann, "/balance")
        final = await bot.tg.wait_for_reply(ann, predicate=lambda m: "Total left" in (m.text or ""))
        assert (
            "Total left: ¥110.00 · $74.50\n≈ total in EUR: exchange rates are unavailable "
            "right now, so totals stay per currency.\n"
        ) in (final.text or ""), final.text


async def test_currency_refuses_unknown_codes(make_settings, rates: FakeRatesServer) -> None:
    async with running_bot(make_settings, fx_rates_url=rates.url) as bot:
        ann = bot.tg.user(4303, "Ann")
        await bot.tg.send(ann, "/currency XYZ")
        reply = await bot.tg.wait_for_reply(ann)
        assert "can't convert to <code>XYZ</code>" in (reply.raw_text or "")
        assert "CNY" in (reply.text or "") and "USD" in (reply.text or "")
        await bot.tg.send(ann, "/currency")
        reply = await bot.tg.wait_for_reply(ann)
        assert "No converted total is set" in (reply.text or "")
        profile = await bot.services.users.touch(ann.id)
        assert profile.currency is None
