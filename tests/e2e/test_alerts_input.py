"""/alerts input a first-week user types: labels with spaces, thresholds out of range.

Issue 12 items 5 and 11, through the real Application and the fake Telegram.
"""

from __future__ import annotations

from tests.e2e.harness import running_bot
from tests.e2e.test_balance import DEEPSEEK


async def test_a_label_with_spaces_works_in_every_command(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK)
        ann = bot.tg.user(2201, "Ann")
        await bot.tg.send(ann, "/add sk-deepseek0123456789abcdef my work key provider=deepseek")
        saved = await bot.tg.wait_for_reply(ann)
        assert "Saved my-work-key" in saved.text
        await bot.tg.send(ann, "/balance my work key")
        answer = await bot.tg.wait_for_reply(ann, predicate=lambda m: "Balances" in m.text)
        assert "my-work-key · DeepSeek" in answer.text
        await bot.tg.send(ann, "/alerts my work key 2")
        done = await bot.tg.wait_for_reply(ann)
        assert done.text == "🔔 Low-balance alerts for my-work-key: below ¥2."
        await bot.tg.send(ann, "/alerts My Work Key")
        view = await bot.tg.wait_for_reply(ann)
        assert view.text.startswith("my-work-key") and "below ¥2" in view.text
        await bot.tg.send(ann, "/alerts my work kex 5")
        unknown = await bot.tg.wait_for_reply(ann)
        assert unknown.text.startswith("No key named my work kex.")
        await bot.tg.send(ann, "/remove my work key")
        confirm = await bot.tg.wait_for_reply(ann)
        assert "Delete the key my-work-key" in confirm.text
        assert bot.tg.errors == []


async def test_a_threshold_out_of_range_is_named_and_5_percent_may_have_a_space(
    make_settings,
) -> None:
    async with running_bot(make_settings) as bot:
        bot.providers.reply("/user/balance", json=DEEPSEEK)
        ann = bot.tg.user(2202, "Ann")
        await bot.tg.send(ann, "/add sk-deepseek0123456789abcdef ds provider=deepseek")
        await bot.tg.wait_for_reply(ann)
        replies = {}
        for typed in ("150%", "5 %", "0", "abc", "1 2 3 4 5 6"):
            await bot.tg.send(ann, f"/alerts ds {typed}")
            replies[typed] = (await bot.tg.wait_for_reply(ann)).text
        assert replies["150%"] == (
            "150% is out of range: a share must be more than 0 % and less than 100 % "
            "of the total. Nothing was changed."
        )
        assert replies["5 %"].startswith("🔔 Low-balance alerts for ds: below 5%")
        assert replies["0"].startswith("0 is out of range: an amount must be more than 0")
        assert replies["abc"].startswith("I could not read abc as a threshold")
        assert replies["1 2 3 4 5 6"].startswith("At most 5 steps")
        view = await bot.services.alerts.get(ann.id, (await bot.services.keys.list(ann.id))[0].id)  # type: ignore[union-attr]
        assert view is not None and view.thresholds == ("5%",)
