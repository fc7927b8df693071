"""The alert buttons are manual checks (issue 11, item 3): "Check now" and "I topped up"
go through the same per-user limit as /balance, with a clear message when it is hit.

Both on SQLite (the process's own limiter) and PostgreSQL (the limit kept in the database
and shared by replicas, bot/services/shared_limits.py)."""

from __future__ import annotations

from bot.services.balances import MANUAL_CHECKS_PER_MINUTE
from tests.alerts.test_e2e import LOW, add_key, bot_with_balances, service, sweeper
from tests.fakes.telegram_api import BotMessage, button_data

LIMITED = "Many checks in a short time"


def answer(m: BotMessage) -> bool:
    """A new reply about the key (not the alert itself, edited when "I topped up" goes)."""
    return "main" in (m.text or "") and not m.edited


def requests_for(bot: object, secret: str) -> int:
    return sum(
        1
        for r in bot.providers.requests  # type: ignore[attr-defined]
        if r.path == "/user/balance" and r.authorization == f"Bearer {secret}"
    )


async def test_alert_buttons_share_the_manual_check_limit(make_settings, database_url: str) -> None:
    async with bot_with_balances(
        make_settings, database_url=database_url, alert_interval_seconds=3600
    ) as (bot, bal):
        ann = bot.tg.user(2401, "Ann", started=True)
        secret = "sk-limit0000000000000001"
        key_id = await add_key(bot, ann.id, secret, label="main")
        await service(bot).set_thresholds(ann.id, [key_id], ["50"])
        bal.amounts[secret] = "10"
        await sweeper(bot).run()
        alert = await bot.tg.wait_for_reply(ann)
        assert LOW in (alert.text or "")
        swept = requests_for(bot, secret)

        replies: list[BotMessage] = []
        for i in range(MANUAL_CHECKS_PER_MINUTE + 5):
            label = "topped" if i == 0 else "Check now"  # "I topped up" goes once pressed
            await bot.tg.press(ann, alert.message_id, button_data(alert, label))
            replies.append(await bot.tg.wait_for_reply(ann, predicate=answer))
        assert requests_for(bot, secret) - swept == MANUAL_CHECKS_PER_MINUTE
        limited = [m for m in replies if LIMITED in (m.text or "")]
        assert len(limited) == 5
        assert all("$10.00" in (m.text or "") for m in limited)  # the stored figure, with age


async def test_buttons_after_balance_used_up_the_limit_request_nothing(
    make_settings, database_url: str
) -> None:
    async with bot_with_balances(
        make_settings, database_url=database_url, alert_interval_seconds=3600
    ) as (bot, bal):
        ann = bot.tg.user(2402, "Ann", started=True)
        secret = "sk-limit0000000000000002"
        key_id = await add_key(bot, ann.id, secret, label="main")
        await service(bot).set_thresholds(ann.id, [key_id], ["50"])
        bal.amounts[secret] = "10"
        await sweeper(bot).run()
        alert = await bot.tg.wait_for_reply(ann)
        for _ in range(MANUAL_CHECKS_PER_MINUTE):
            await bot.tg.send(ann, "/balance")
            await bot.tg.wait_for_reply(ann, predicate=lambda m: "Balances" in (m.text or ""))
        before = requests_for(bot, secret)
        for label in ("topped", "Check now", "Check now"):
            await bot.tg.press(ann, alert.message_id, button_data(alert, label))
            reply = await bot.tg.wait_for_reply(ann, predicate=answer)
            assert LIMITED in (reply.text or "")
        assert requests_for(bot, secret) == before
