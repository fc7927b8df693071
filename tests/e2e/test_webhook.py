"""Webhook mode as a real process: secret header, health and metrics, graceful SIGTERM."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.e2e.procs import clean_env, free_port, start_bot
from tests.fakes.provider_server import FakeProviderServer
from tests.fakes.telegram_api import FakeTelegram

SECRET = "s3cret-Webhook_token"


def webhook_env(tg: FakeTelegram, db_url: str, port: int, **more: str) -> dict[str, str]:
    return clean_env(
        TELEGRAM_BOT_TOKEN=tg.token,
        TELEGRAM_API_URL=tg.api_root,
        DATABASE_URL=db_url,
        WEBHOOK_URL=f"http://127.0.0.1:{port}/telegram",
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_LISTEN="127.0.0.1",
        WEBHOOK_PORT=str(port),
        LOG_LEVEL="DEBUG",
        **more,
    )


async def test_webhook_mode_end_to_end(tmp_path: Path) -> None:
    providers = await FakeProviderServer().start()
    providers.reply(
        "/user/balance",
        json={
            "is_available": True,
            "balance_infos": [
                {
                    "currency": "CNY",
                    "total_balance": "42.00",
                    "granted_balance": "0",
                    "topped_up_balance": "42.00",
                }
            ],
        },
    )
    async with FakeTelegram() as tg:
        port = free_port()
        env = webhook_env(
            tg,
            f"sqlite+aiosqlite:///{tmp_path}/data/bot.db",
            port,
            PROVIDER_DEEPSEEK_BASE_URL=providers.url,
        )
        bot = await start_bot(["run", "--webhook"], env, tmp_path, port=port)
        try:
            await bot.wait_healthy()
            hook = tg.webhook
            assert hook["url"] == f"http://127.0.0.1:{port}/telegram"
            assert hook["secret_token"] == SECRET
            assert "callback_query" in (hook["allowed_updates"] or [])

            ann = tg.user(1001, "Ann")
            await tg.send(ann, "/start")
            assert "encrypted" in (await tg.wait_for_reply(ann, timeout=10)).text

            forged = {
                "update_id": 999,
                "message": {
                    "message_id": 50,
                    "date": int(time.time()),
                    "chat": {"id": 1001, "type": "private"},
                    "from": {"id": 1001, "is_bot": False, "first_name": "Ann"},
                    "text": "/help",
                    "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
                },
            }
            async with httpx.AsyncClient() as client:
                no_header = await client.post(f"{bot.base}/telegram", json=forged)
                wrong = await client.post(
                    f"{bot.base}/telegram",
                    json=forged,
                    headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"},
                )
                assert no_header.status_code == 403 and wrong.status_code == 403
                await tg.assert_no_reply(ann, within=0.5)  # nothing was processed

                health = (await client.get(f"{bot.base}/healthz")).json()
                assert health["status"] == "ok" and health["database"] == "ok"
                assert "last_sweep_at" in health
                text = (await client.get(f"{bot.base}/metrics")).text
                assert "balancebot_users 1.0" in text
                assert "balancebot_keys 0.0" in text
                assert 'provider="deepseek"' not in text

                await tg.send(ann, "/add sk-webhook0123456789abcdef provider=deepseek")
                await tg.wait_for_reply(ann, timeout=10, predicate=lambda m: "42" in m.text)
                await tg.send(ann, "/balance")
                await tg.wait_for_reply(ann, timeout=10, predicate=lambda m: "42" in m.text)
                text = (await client.get(f"{bot.base}/metrics")).text
                assert "balancebot_keys 1.0" in text
                assert 'balancebot_checks_total{outcome="ok",provider="deepseek"}' in text
                assert 'balancebot_check_seconds_count{provider="deepseek"}' in text
                assert "balancebot_alerts_total" in text or "balancebot_sweep_seconds" in text

            started = time.monotonic()
            assert await bot.terminate(timeout=30) == 0
            assert time.monotonic() - started < 25
        finally:
            await bot.kill()
            await providers.stop()
        log = bot.log()
        assert tg.token not in log and tg.token.split(":")[1] not in log
        assert SECRET not in log


async def test_webhook_requires_secret(tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        port = free_port()
        env = webhook_env(tg, f"sqlite+aiosqlite:///{tmp_path}/bot.db", port)
        env.pop("WEBHOOK_SECRET")
        bot = await start_bot(["run", "--webhook"], env, tmp_path, port=port)
        rc = await bot.proc.wait()
        assert rc != 0
        assert "WEBHOOK_SECRET" in bot.log() and "Traceback" not in bot.log()
