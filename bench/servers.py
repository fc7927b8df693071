"""The benchmark's upstreams: the SAME fakes the tests use (tests/fakes/), each in its own
process so its CPU is not the bot's.

* `ProviderServer`: `FakeProviderServer`s answering the canned replies of
  tests/fixtures/providers/ (deepseek, moonshot, and a one-api relay: `/api/usage/token` →
  404, then the legacy subscription + usage pair) after a fixed latency. One server per
  port of 127.0.0.1: each port stands for a distinct host, because the billing service
  limits concurrency per host and real relay keys point at many different sites.
* `TelegramServer`: the `FakeTelegram` Bot API (Telegram's flood limits when asked) plus
  a small control API (`/_ctl/...`) to inject updates and read back what the bot sent,
  with the fake's own monotonic timestamps.

Both are driven from the parent through a `multiprocessing` pipe and stopped by message,
never by signal, so they always release their ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

HOST = "127.0.0.1"
BOT_ID = 987654321
BOT_TOKEN = f"{BOT_ID}:BENCH-fake-token_abcdefghijklmnopqrstuv"


def _serve_until_stopped(conn: Connection, on_message: Callable[[Any], Any]) -> asyncio.Event:
    """Answer pipe messages with `on_message` until ("stop",) or EOF; returns the stop event."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def readable() -> None:
        try:
            msg = conn.recv()
        except EOFError:
            msg = ("stop",)
        if msg[0] == "stop":
            stop.set()
        else:
            conn.send(on_message(msg))

    loop.add_reader(conn.fileno(), readable)
    return stop


# -- providers ------------------------------------------------------------------------------


def _provider_main(conn: Connection, latency: float, n_relays: int) -> None:
    from tests.fakes.canned import canned_routes
    from tests.fakes.provider_server import FakeProviderServer

    async def serve() -> None:
        kinds = ["deepseek", "moonshot"] + ["relay"] * n_relays
        servers = []
        for kind in kinds:
            server = FakeProviderServer(HOST, keep_requests=False)
            server.install(canned_routes(kind))
            server.latency = latency
            servers.append(await server.start())
        conn.send([s.port for s in servers])

        def on_message(msg: Any) -> Any:
            match msg:
                case ("latency", value):
                    for s in servers:
                        s.latency = float(value)
                    return True
                case ("stats",):
                    return {
                        "requests": sum(s.served for s in servers),
                        "cpu_s": time.process_time(),
                    }
            return None

        stop = _serve_until_stopped(conn, on_message)
        await stop.wait()
        asyncio.get_running_loop().remove_reader(conn.fileno())
        for s in servers:
            await s.stop()
        conn.send("stopped")

    asyncio.run(serve())


class _Child:
    """A spawned helper process talked to over a pipe (request → one reply)."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=target, args=(child_conn, *args), daemon=True)
        self._proc.start()
        child_conn.close()
        if not self._conn.poll(60):
            self._proc.kill()
            raise RuntimeError(f"{target.__name__} did not start")
        self.hello: Any = self._conn.recv()

    def ask(self, *msg: Any, timeout: float = 10.0) -> Any:
        self._conn.send(msg)
        if not self._conn.poll(timeout):
            raise RuntimeError(f"no answer to {msg[0]!r}")
        return self._conn.recv()

    def stop(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(RuntimeError, OSError, EOFError):
                self.ask("stop", timeout=5.0)
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
        self._conn.close()


class ProviderServer(_Child):
    """Ports: `deepseek`, `moonshot`, then `relay` (one port per simulated relay site)."""

    def __init__(self, latency: float, relay_sites: int) -> None:
        super().__init__(_provider_main, latency, relay_sites)
        ports: list[int] = self.hello
        self.deepseek_url = f"http://{HOST}:{ports[0]}"
        self.moonshot_url = f"http://{HOST}:{ports[1]}"
        self.relay_urls = [f"http://{HOST}:{p}" for p in ports[2:]]

    def set_latency(self, seconds: float) -> None:
        self.ask("latency", seconds)

    def stats(self) -> dict[str, Any]:
        return dict(self.ask("stats"))


# -- the fake Bot API -----------------------------------------------------------------------


def _telegram_main(conn: Connection) -> None:
    from aiohttp import web

    from tests.fakes.telegram_api import FakeTelegram, _Bucket

    class BenchTelegram(FakeTelegram):
        """FakeTelegram with a timeline of what the bot sent and a control API."""

        def __init__(self) -> None:
            super().__init__(BOT_TOKEN, bot_username="bench_balance_bot")
            self.timeline: list[dict[str, Any]] = []  # sends and edits, with monotonic t
            self.first_call: dict[str, float] = {}  # method → monotonic t of its first call

        async def _handle(self, request: web.Request) -> web.StreamResponse:
            self.first_call.setdefault(request.match_info["method"].lower(), time.monotonic())
            return await super()._handle(request)

        def make_app(self) -> web.Application:
            app = super().make_app()
            app.router.add_post("/_ctl/{action}", self.ctl)
            return app

        async def _record(self, msg: Any) -> None:
            kind = "edit" if msg.edited else "send"
            text = msg.raw_text or ""
            self.timeline.append(
                {"t": time.monotonic(), "kind": kind, "chat_id": msg.chat_id, "text": text}
            )
            await super()._record(msg)

        async def ctl(self, request: web.Request) -> web.StreamResponse:
            action = request.match_info["action"]
            body = await request.json() if request.body_exists else {}
            if action == "message":  # a private text message from a user
                user = self.user(int(body["user_id"]), "U", started=True)
                now = time.monotonic()
                await self.send(user, str(body["text"]))
                return web.json_response({"t": now})
            if action == "users":  # chats that exist (users who started the bot)
                first, count = int(body["first"]), int(body["count"])
                for uid in range(first, first + count):
                    self.user(uid, "U", started=True)
                return web.json_response(True)
            if action == "events":  # events in a chat after t, waiting up to `wait` s
                chat_id, after = int(body["chat_id"]), float(body.get("after", 0))

                def found() -> list[dict[str, Any]] | None:
                    hits = [e for e in self.timeline if e["chat_id"] == chat_id and e["t"] > after]
                    return hits or None

                try:
                    hits = await self.wait_until(
                        found, min(float(body.get("wait", 0)), 30.0), lambda: "an event"
                    )
                except AssertionError:
                    hits = []
                return web.json_response({"events": hits, "now": time.monotonic()})
            if action == "first_call":  # when the bot first called a method (or null)
                if "method" not in body:
                    return web.json_response(self.first_call)
                return web.json_response(self.first_call.get(str(body["method"]).lower()))
            if action == "limits":
                self.enforce_limits = bool(body["enforce"])
                self._buckets.clear()
                self._global_bucket = _Bucket(rate=30, capacity=30)
                return web.json_response(True)
            if action == "reset":
                self.first_call.clear()
                self.timeline.clear()
                self.send_log.clear()
                self.count_429 = 0
                return web.json_response(True)
            if action == "stats":
                sends = self.send_log
                return web.json_response(
                    {"sends": len(sends), "count_429": self.count_429,
                     "first_send": sends[0][0] if sends else None,
                     "last_send": sends[-1][0] if sends else None,
                     "distinct_chats": len({chat for _, chat in sends}),
                     "cpu_s": time.process_time()}
                )  # fmt: skip
            return web.json_response({"error": "unknown"}, status=404)

    async def serve() -> None:
        fake = await BenchTelegram().start()
        conn.send(fake.api_root)
        stop = _serve_until_stopped(conn, lambda msg: None)
        await stop.wait()
        asyncio.get_running_loop().remove_reader(conn.fileno())
        await fake.stop()
        conn.send("stopped")

    asyncio.run(serve())


class TelegramServer(_Child):
    """`api_root` goes into TELEGRAM_API_URL; `token` is the bot token it accepts."""

    token = BOT_TOKEN

    def __init__(self) -> None:
        super().__init__(_telegram_main)
        self.api_root: str = self.hello


def cpu_count() -> int:
    return os.cpu_count() or 1
