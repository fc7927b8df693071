"""The webhook under hostile or broken clients, as a real process (issue 11, item 10).

Before: a 100 MB body was read whole (RSS 1.05 GB); the same update posted twice was
handled twice; 800 half-sent requests were still open after 30 s; any number of connections
was served at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from bot.webhook import MAX_BODY, MAX_CONNECTIONS, REQUEST_DEADLINE
from tests.e2e.procs import BotProcess, free_port, start_bot
from tests.e2e.test_webhook import SECRET, webhook_env
from tests.fakes.telegram_api import FakeTelegram

HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}


@asynccontextmanager
async def webhook_bot(tmp_path: Path, **env: str) -> AsyncIterator[tuple[BotProcess, FakeTelegram]]:
    async with FakeTelegram() as tg:
        port = free_port()
        db = env.pop("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/data/bot.db")
        bot = await start_bot(
            ["run", "--webhook"], webhook_env(tg, db, port, **env), tmp_path, port=port
        )
        try:
            await bot.wait_healthy()
            yield bot, tg
        finally:
            await bot.kill()


def rss_mb(bot: BotProcess) -> float:
    for line in Path(f"/proc/{bot.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def say_hello(tg: FakeTelegram) -> None:
    """Ann's chat exists at the fake once she wrote (through the webhook, as Telegram would)."""
    ann = tg.user(1001, "Ann")
    await tg.send(ann, "/start")
    await tg.wait_for_reply(ann, timeout=10)


def help_update(update_id: int, user_id: int = 1001) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": int(time.time()),
            "chat": {"id": user_id, "type": "private"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Ann"},
            "text": "/help",
            "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
        },
    }


REFUSED_MID_BODY = -1  # the server cut the connection before the whole body was sent


async def raw_post(port: int, head: dict[str, str], body_chunks: int, chunk: bytes) -> int | None:
    """POST by hand: the headers, then body chunks until the server answers or cuts us off.

    The status line, or REFUSED_MID_BODY: a server that answers 413 and closes while the
    client still sends makes the kernel reset the connection, which can swallow the 413.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = ["POST /telegram HTTP/1.1", "Host: 127.0.0.1", *[f"{k}: {v}" for k, v in head.items()]]
    chunked = head.get("Transfer-Encoding") == "chunked"
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        for _ in range(body_chunks + 1):
            try:  # an answer already (e.g. 413 for the declared length)?
                status_line = await asyncio.wait_for(reader.readline(), 0.2)
                return int(status_line.split()[1]) if status_line else REFUSED_MID_BODY
            except TimeoutError:
                pass
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
        async with asyncio.timeout(60):
            status_line = await reader.readline()
        return int(status_line.split()[1]) if status_line else None
    except ConnectionError:
        return REFUSED_MID_BODY
    finally:
        writer.close()


async def test_a_large_body_is_refused_unread(tmp_path: Path) -> None:
    async with webhook_bot(tmp_path) as (bot, tg):
        assert bot.port is not None
        await say_hello(tg)
        before = rss_mb(bot)
        chunk = b"[" * (1024 * 1024)  # 1 MiB of nonsense per chunk
        declared = {**HEADERS, "Content-Length": str(100 * 1024 * 1024)}
        assert await raw_post(bot.port, declared, 100, chunk) == 413  # before any body byte
        streamed = {**HEADERS, "Transfer-Encoding": "chunked"}  # no length: cut at the cap
        assert await raw_post(bot.port, streamed, 100, chunk) in (413, REFUSED_MID_BODY)
        grown = rss_mb(bot) - before
        print(f"webhook RSS {before:.0f} MB, +{grown:.1f} MB after two 100 MB bodies")
        assert grown < 20
        async with httpx.AsyncClient() as client:  # a real update still goes through
            small = await client.post(
                f"{bot.base}/telegram", json=help_update(1007), headers=HEADERS
            )
            assert small.status_code == 200
            assert len(json.dumps(help_update(1007))) < MAX_BODY
        assert "/balance" in (await tg.wait_for_reply(1001, timeout=10)).text


async def test_the_same_update_twice_is_handled_once(tmp_path: Path) -> None:
    async with webhook_bot(tmp_path) as (bot, tg):
        await say_hello(tg)
        async with httpx.AsyncClient(timeout=30) as client:
            url = f"{bot.base}/telegram"
            first = await client.post(url, json=help_update(1041), headers=HEADERS)
            again = await client.post(url, json=help_update(1041), headers=HEADERS)
            assert (first.status_code, again.status_code) == (200, 200)
            both = await asyncio.gather(
                client.post(url, json=help_update(1042), headers=HEADERS),
                client.post(url, json=help_update(1042), headers=HEADERS),
            )
            assert sorted(r.status_code for r in both) in ([200, 200], [200, 503])
        await tg.wait_for_reply(1001, timeout=10)
        await tg.wait_for_reply(1001, timeout=10)
        await tg.assert_no_reply(1001, within=1.0)
        assert len(tg.messages(1001)) == 3  # /start, then one per update id: not five


async def test_half_sent_requests_are_closed(tmp_path: Path) -> None:
    async with webhook_bot(tmp_path) as (bot, _tg):
        assert bot.port is not None
        conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for i in range(180):
            reader, writer = await asyncio.open_connection("127.0.0.1", bot.port)
            if i % 3 == 0:  # headers that never end
                writer.write(b"POST /telegram HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            elif i % 3 == 1:  # a body that never completes
                head = "POST /telegram HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                head += f"X-Telegram-Bot-Api-Secret-Token: {SECRET}\r\n\r\n" + '{"upd'
                writer.write(head.encode())
            # else: connected, silent
            conns.append((reader, writer))
        started = time.monotonic()
        async with httpx.AsyncClient() as client:  # meanwhile, a real update is served
            ok = await client.post(f"{bot.base}/telegram", json=help_update(1009), headers=HEADERS)
            assert ok.status_code == 200

        async def closed(reader: asyncio.StreamReader) -> bool:
            try:
                async with asyncio.timeout(REQUEST_DEADLINE + 10 - (time.monotonic() - started)):
                    while await reader.read(4096):
                        pass
                return True
            except (TimeoutError, ConnectionError):
                return False

        results = await asyncio.gather(*(closed(r) for r, _ in conns))
        print(f"{sum(results)} of {len(conns)} half-sent connections closed by the server "
              f"within {time.monotonic() - started:.1f} s")  # fmt: skip
        assert all(results)
        for _, writer in conns:
            writer.close()


async def test_connections_past_the_cap_are_refused_until_the_idle_ones_are_cut(
    tmp_path: Path,
) -> None:
    """At most MAX_CONNECTIONS at once (503 beyond, uvicorn's own answer); connections that
    send nothing hold their place for REQUEST_DEADLINE at most, then updates are served."""
    async with webhook_bot(tmp_path) as (bot, tg):
        assert bot.port is not None
        await say_hello(tg)
        idle = [
            await asyncio.open_connection("127.0.0.1", bot.port) for _ in range(MAX_CONNECTIONS)
        ]
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=30) as client:
            refused = None
            for _ in range(50):  # until the server has taken in every idle connection
                reply = await client.get(f"{bot.base}/healthz")
                if reply.status_code == 503 and reply.text == "Service Unavailable":
                    refused = reply
                    break
                await asyncio.sleep(0.1)
            assert refused is not None, "a connection past the cap was served"
            for reader, _ in idle:  # cut off by the server: nothing arrived in time
                async with asyncio.timeout(REQUEST_DEADLINE + 20):
                    assert await reader.read() == b""
            print(f"{MAX_CONNECTIONS} idle connections closed after "
                  f"{time.monotonic() - started:.1f} s")  # fmt: skip
            served = await client.post(
                f"{bot.base}/telegram", json=help_update(1061), headers=HEADERS
            )
            assert served.status_code == 200
        assert "/balance" in (await tg.wait_for_reply(1001, timeout=10)).text
        for _, writer in idle:
            writer.close()
