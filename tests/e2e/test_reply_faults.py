"""Telegram failing on our replies (issue 11, item 9): retried within limits, told truthfully.

Before: 6 × 429 on sendMessage made /add say "Something went wrong" although the key
was saved; one 502 or one dropped connection on a reply meant no reply at all.
"""

from __future__ import annotations

import logging

import pytest

from tests.e2e.harness import running_bot
from tests.e2e.test_add import DEEPSEEK_OK, canary, stored_keys

WENT_WRONG = "went wrong"


async def test_six_429s_on_the_reply_still_deliver_it(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(4001, "Ann")
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        bot.tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", 1, count=6)
        key = canary()
        await bot.tg.send(ann, f"/add {key} provider=deepseek")
        saved = await bot.tg.wait_for_reply(ann, timeout=30)
        assert "Saved" in saved.text, saved.text
        assert len(await stored_keys(bot, ann.id)) == 1
        await bot.tg.assert_no_reply(ann, within=0.5)
        assert not any(WENT_WRONG in (m.text or "") for m in bot.tg.messages(ann.id))
        assert key not in bot.tg.transcript()


@pytest.mark.parametrize("fault", ["502", "500", "dropped"])
async def test_a_failed_reply_is_sent_again(make_settings, fault: str) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(4002, "Ann")
        if fault == "dropped":
            bot.tg.drop_connection_next("sendMessage")
        else:
            bot.tg.fail_next("sendMessage", int(fault), "Bad Gateway")
        await bot.tg.send(ann, "/help")
        reply = await bot.tg.wait_for_reply(ann, timeout=10)
        assert "/balance" in reply.text
        assert len(bot.tg.calls_to("sendMessage")) == 2  # the failed one, then the retry
        await bot.tg.assert_no_reply(ann, within=0.5)  # once, not twice


async def test_an_undeliverable_reply_is_logged_as_such_not_apologised(
    make_settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Telegram refuses for longer than the retry budget: no false "went wrong", a true log."""
    caplog.set_level(logging.INFO)
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(4003, "Ann")
        bot.providers.reply("/user/balance", json=DEEPSEEK_OK)
        bot.tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", 1, count=40)
        await bot.tg.send(ann, f"/add {canary()} provider=deepseek")
        await bot.tg.wait_until(
            lambda: True if len(bot.tg.calls_to("sendMessage")) >= 9 else None,
            timeout=30,
            describe=lambda: "9 attempts of the reply",
        )
        await bot.tg.assert_no_reply(ann, within=1.5)
        assert len(await stored_keys(bot, ann.id)) == 1  # the action itself was done
        assert len(bot.tg.calls_to("sendMessage")) == 9  # 1 + 8 retries, no apology attempt
    undelivered = [r for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(undelivered) == 1 and undelivered[0].levelno == logging.WARNING
    assert "RetryAfter" in undelivered[0].getMessage()
    assert not any(r.name == "bot.errors" and r.levelno >= logging.ERROR for r in caplog.records)
