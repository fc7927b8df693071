"""A provider declared in PROVIDERS_FILE, end to end through the real bot: /add with
provider=acme, then /balance, against the fake Telegram and the fake provider server."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.e2e.harness import running_bot
from tests.e2e.test_add import assert_nowhere, reply
from tests.fakes.provider_server import FakeProviderServer

DECLARATION = """\
providers:
  - id: acme
    title: Acme AI
    base_url: {url}
    method: GET
    path: /v1/wallet
    auth:
      type: header
      name: X-Acme-Key
    currency: USD
    response:
      remaining: data.wallet.left
      total: data.wallet.total
      used: data.wallet.spent
      error: error.message
"""


async def test_declared_provider_add_then_balance(make_settings, tmp_path: Path) -> None:
    providers = await FakeProviderServer().start()
    path = tmp_path / "providers.yaml"
    path.write_text(DECLARATION.format(url=providers.url), encoding="utf-8")
    wallet = {"data": {"wallet": {"left": "12.50", "total": 20, "spent": 7.5}}}
    providers.reply("/v1/wallet", json=wallet)
    key = f"acme-CANARY{uuid.uuid4().hex}"
    try:
        async with running_bot(make_settings, providers=providers, providers_file=path) as bot:
            ann = bot.tg.user(3101, "Ann", language_code="en")
            await bot.tg.send(ann, f"/add {key} provider=acme")
            saved = await reply(bot, ann)
            assert "Saved acme · Acme AI" in saved.text, saved.text
            assert "$12.50 left" in saved.text

            bot.services.billing.clear_cache()
            providers.reply("/v1/wallet", json={"data": {"wallet": {"left": "11", "total": 20,
                                                                    "spent": 9}}})  # fmt: skip
            await bot.tg.send(ann, "/balance")
            answer = await bot.tg.wait_for_reply(ann, timeout=10)
            assert "acme · Acme AI\n$11.00 left\nused $9.00 of $20.00" in answer.text

            seen = [r for r in providers.requests if r.path == "/v1/wallet"]
            assert len(seen) == 2
            for request in seen:
                headers = {k.lower(): v for k, v in request.headers.items()}
                assert headers["x-acme-key"] == key and "authorization" not in headers
            await assert_nowhere(bot, key)

            zh = bot.tg.user(3102, "Li", language_code="zh-hans")
            await bot.tg.send(zh, f"/add {key}x provider=acme")
            assert "Acme AI" in (await reply(bot, zh)).text
    finally:
        await providers.stop()
