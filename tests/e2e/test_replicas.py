"""Two webhook replicas on one PostgreSQL behind a round-robin load balancer.

Every update goes to the other replica than the one before, so each step of the guided
/add lands on a different process: the flow must live in the database to work.
"""

from __future__ import annotations

import base64
import itertools
import os
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.procs import clean_env, free_port, start_bot
from tests.e2e.test_webhook import SECRET
from tests.fakes.provider_server import FakeProviderServer
from tests.fakes.telegram_api import FakeTelegram, button_data

pytestmark = pytest.mark.postgres


class RoundRobin:
    """A tiny load balancer: forwards each POST to the next backend, records who got it."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self._next = itertools.cycle(range(len(backends)))
        self.served: list[int] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        index = next(self._next)
        self.served.append(index)
        body = await request.read()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("content-type", "x-telegram-bot-api-secret-token")
        }
        async with self._session.post(
            self.backends[index] + request.path, data=body, headers=headers
        ) as resp:
            return web.Response(status=resp.status, body=await resp.read())

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


async def test_guided_add_across_two_replicas_then_balance(
    tmp_path: Path, postgres_url: str
) -> None:
    key_b64 = base64.b64encode(os.urandom(32)).decode()
    providers = await FakeProviderServer().start()
    providers.reply(
        "/v1/dashboard/billing/subscription",
        json={"object": "billing_subscription", "hard_limit_usd": 5, "access_until": 0},
    )
    providers.reply("/v1/dashboard/billing/usage", json={"object": "list", "total_usage": 80})
    ports = [free_port(), free_port()]
    lb = RoundRobin([f"http://127.0.0.1:{p}" for p in ports])
    await lb.start()
    procs = []
    try:
        async with FakeTelegram() as tg:
            for i, port in enumerate(ports):
                env = clean_env(
                    TELEGRAM_BOT_TOKEN=tg.token,
                    TELEGRAM_API_URL=tg.api_root,
                    DATABASE_URL=postgres_url,
                    ENCRYPTION_KEY=key_b64,
                    WEBHOOK_URL=f"http://127.0.0.1:{lb.port}/telegram",
                    WEBHOOK_SECRET=SECRET,
                    WEBHOOK_LISTEN="127.0.0.1",
                    WEBHOOK_PORT=str(port),
                    ALLOW_PRIVATE_BASE_URLS="true",
                )
                workdir = tmp_path / f"replica{i}"
                workdir.mkdir()
                proc = await start_bot(["run", "--webhook"], env, workdir, f"replica{i}", port)
                procs.append(proc)
                await proc.wait_healthy()  # one at a time: the first one migrates

            ann = tg.user(1001, "Ann")

            async def reply():  # the next new message (not a keyboard-removing edit)
                return await tg.wait_for_reply(ann, timeout=15, predicate=lambda m: not m.edited)

            async def press(msg, text):
                qid = await tg.press(ann, msg.message_id, button_data(msg, text))
                await tg.wait_for_answer(qid, timeout=15)

            await tg.send(ann, "/start")
            await reply()
            await tg.send(ann, "/add")
            menu = await reply()
            await press(menu, "Self-hosted")  # the picker turns its page in place
            relays = await tg.wait_for_reply(ann, timeout=15, predicate=lambda m: m.edited)
            await press(relays, "OpenAI-compatible relay")
            assert "base URL" in (await reply()).text
            await tg.send(ann, providers.url)
            await press(await reply(), "Skip")
            await reply()
            key = "sk-REPLICA" + os.urandom(16).hex()
            await tg.send(ann, key)
            done = await reply()
            assert "Saved relay" in done.text and "4.20" in done.text

            await tg.send(ann, "/balance")
            result = await tg.wait_for_reply(
                ann, timeout=15, predicate=lambda m: "4.20" in m.text and "relay" in m.text
            )
            assert "$" in result.text

            assert set(lb.served) == {0, 1}  # both replicas took part
            assert key not in tg.transcript()
            assert tg.errors == []
            for proc in procs:
                assert await proc.terminate() == 0
                assert key not in proc.log() and tg.token not in proc.log()
    finally:
        for proc in procs:
            await proc.kill()
        await lb.stop()
        await providers.stop()
