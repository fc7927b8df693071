"""One error handler: the user gets a short apology, the log gets no secret."""

from __future__ import annotations

import logging

import pytest

from bot.secret import Secret
from tests.e2e.harness import running_bot

CANARY = "sk-CANARY-errorhandler-0123456789abcdef"


async def test_handler_crash_is_logged_redacted_and_apologised(
    make_settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann")
        await bot.services.keys.add(ann.id, Secret("sk-realkey0123456789abcdef"), "deepseek")

        async def explode(self, owner_id, *args, **kwargs):
            secret = Secret(CANARY)  # a decrypted key in the frame's locals
            raise RuntimeError(f"boom while checking {secret.reveal()} for {owner_id}")

        monkeypatch.setattr(type(bot.services.balances), "begin", explode)
        await bot.tg.send(ann, "/balance")
        reply = await bot.tg.wait_for_reply(ann, predicate=lambda m: "went wrong" in m.text)
        assert "boom" not in reply.text and "RuntimeError" not in reply.text
        assert CANARY not in bot.tg.transcript()
        await bot.tg.send(ann, "/start")  # the bot is still alive
        assert (
            "encrypted"
            in (await bot.tg.wait_for_reply(ann, predicate=lambda m: "encrypted" in m.text)).text
        )
    errors = [r for r in caplog.records if r.name == "bot.errors"]
    assert errors, "the error handler logged nothing"
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert CANARY not in text
        assert bot.tg.token not in text


@pytest.mark.parametrize("command", ["/balance", "/alerts", "/remove", "/keys", "/help"])
async def test_a_key_pasted_as_an_argument_is_deleted_not_echoed(make_settings, command) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann")
        await bot.services.keys.add(ann.id, Secret("sk-realkey0123456789abcdef"), "deepseek")
        mid = await bot.tg.send(ann, f"{command} {CANARY}")
        reply = await bot.tg.wait_for_reply(ann)
        assert "deleted your message" in reply.text
        assert (ann.id, mid) in bot.tg.deleted
        assert CANARY not in bot.tg.transcript()
        assert bot.providers.count() == 0
