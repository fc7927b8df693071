"""/add cannot be used as an oracle for testing stolen keys (docs/security.md §T13)."""

from __future__ import annotations

from bot.services.adding import ADD_CHECKS_PER_HOUR
from tests.e2e.harness import running_bot
from tests.e2e.test_add import canary, reply, stored_keys


async def test_first_checks_are_capped_per_user_and_hour(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", status=401, json={"error": {"message": "bad key"}})
        eve, ann = bot.tg.user(6001, "Eve"), bot.tg.user(1001, "Ann")
        for _ in range(ADD_CHECKS_PER_HOUR):
            await bot.tg.send(eve, f"/add {canary()} provider=deepseek")
            assert "rejected" in (await reply(bot, eve)).text
        assert bot.providers.count("/user/balance") == ADD_CHECKS_PER_HOUR
        await bot.tg.send(eve, f"/add {canary()} provider=deepseek")
        assert "try again later" in (await reply(bot, eve)).text
        assert bot.providers.count("/user/balance") == ADD_CHECKS_PER_HOUR  # no request made
        assert await stored_keys(bot, eve.id) == []
        # Another user is not affected.
        await bot.tg.send(ann, f"/add {canary()} provider=deepseek")
        assert "rejected" in (await reply(bot, ann)).text
        assert bot.tg.errors == []
