"""Fake upstreams for the benchmark, each in its own process so its CPU is not the bot's.

* `ProviderServer`: a raw asyncio HTTP/1.1 server (no framework: it must stay far cheaper
  than the client it measures). It answers DeepSeek's `/user/balance`, Moonshot's
  `/v1/users/me/balance` and a one-api relay (`/api/usage/token` → 404, then the legacy
  `/v1/dashboard/billing/subscription` + `/usage` pair) after a fixed latency. It listens on
  several ports of 127.0.0.1: each port stands for a distinct host, because the billing
  service limits concurrency per host and real relay keys point at many different sites.
* `TelegramServer`: a lean Bot API fake (aiohttp) with Telegram's flood limits and a
  small control API (`/_ctl/...`) to inject updates and read back what the bot sent.

Both are driven from the parent through a `multiprocessing` pipe and stopped by message,
never by signal, so they always release their ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

HOST = "127.0.0.1"

# -- provider bodies ----------------------------------------------------------------------

_DEEPSEEK = {
    "is_available": True,
    "balance_infos": [
        {
            "currency": "CNY",
            "total_balance": "110.00",
            "granted_balance": "10.00",
            "topped_up_balance": "100.00",
        }
    ],
}
_MOONSHOT = {
    "code": 0,
    "data": {"available_balance": 49.58, "voucher_balance": 46.58, "cash_balance": 3.0},
    "scode": "0x0",
    "status": True,
}
_SUBSCRIPTION = {
    "object": "billing_subscription",
    "has_payment_method": True,
    "hard_limit_usd": 100.0,
    "soft_limit_usd": 100.0,
    "system_hard_limit_usd": 100.0,
    "access_until": 0,
}
_USAGE = {"object": "list", "total_usage": 2534.5}


def _response(status: int, body: bytes, ctype: bytes = b"application/json") -> bytes:
    reason = {200: b"OK", 404: b"Not Found"}[status]
    head = (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
        b"Connection: keep-alive\r\n\r\n" % (status, reason, ctype, len(body))
    )
    return head + body


_NOT_FOUND = _response(404, b"<html><body>404 Not Found</body></html>", b"text/html")
ROUTES: dict[bytes, bytes] = {
    b"/user/balance": _response(200, json.dumps(_DEEPSEEK).encode()),
    b"/v1/users/me/balance": _response(200, json.dumps(_MOONSHOT).encode()),
    b"/v1/dashboard/billing/subscription": _response(200, json.dumps(_SUBSCRIPTION).encode()),
    b"/v1/dashboard/billing/usage": _response(200, json.dumps(_USAGE).encode()),
}
_MAX_HEAD = 64 * 1024


@dataclass
class _ProviderState:
    latency: float
    requests: int = 0
    connections: int = 0


class _HttpProtocol(asyncio.Protocol):
    """Keep-alive HTTP/1.1 for bodiless GETs; answers after `latency`, in request order."""

    def __init__(self, state: _ProviderState, loop: asyncio.AbstractEventLoop) -> None:
        self._state = state
        self._loop = loop
        self._buf = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._state.connections += 1

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > _MAX_HEAD and self._transport is not None:
                    self._transport.close()
                return
            head, self._buf = self._buf[:end], self._buf[end + 4 :]
            line = head.split(b"\r\n", 1)[0].split(b" ")
            path = line[1].split(b"?", 1)[0] if len(line) > 1 else b"/"
            close = b"\r\nconnection: close" in head.lower()
            self._state.requests += 1
            reply = ROUTES.get(path, _NOT_FOUND)
            self._loop.call_later(self._state.latency, self._write, reply, close)

    def _write(self, reply: bytes, close: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(reply)
        if close:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


def _provider_main(conn: Connection, latency: float, n_ports: int) -> None:
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        state = _ProviderState(latency)
        servers = [
            await loop.create_server(
                lambda: _HttpProtocol(state, loop), HOST, 0, backlog=4096, reuse_address=True
            )
            for _ in range(n_ports)
        ]
        ports = [s.sockets[0].getsockname()[1] for s in servers]
        conn.send(ports)
        stop = asyncio.Event()

        def on_message() -> None:
            try:
                msg = conn.recv()
            except EOFError:
                msg = ("stop",)
            match msg:
                case ("latency", value):
                    state.latency = float(value)
                    conn.send(True)
                case ("stats",):
                    conn.send(
                        {
                            "requests": state.requests,
                            "connections": state.connections,
                            "cpu_s": time.process_time(),
                        }
                    )
                case _:
                    stop.set()

        loop.add_reader(conn.fileno(), on_message)
        await stop.wait()
        loop.remove_reader(conn.fileno())
        for s in servers:
            s.close()
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
        super().__init__(_provider_main, latency, 2 + relay_sites)
        ports: list[int] = self.hello
        self.deepseek_url = f"http://{HOST}:{ports[0]}"
        self.moonshot_url = f"http://{HOST}:{ports[1]}"
        self.relay_urls = [f"http://{HOST}:{p}" for p in ports[2:]]

    def set_latency(self, seconds: float) -> None:
        self.ask("latency", seconds)

    def stats(self) -> dict[str, Any]:
        return dict(self.ask("stats"))


# -- the fake Bot API ---------------------------------------------------------------------

BOT_ID = 987654321
BOT_TOKEN = f"{BOT_ID}:BENCH-fake-token_abcdefghijklmnopqrstuv"


@dataclass
class _Bucket:
    rate: float
    capacity: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> float:
        """Seconds to wait (0 = a token was taken)."""
        if self.tokens < 0:
            self.tokens = self.capacity
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass
class _TgState:
    enforce_limits: bool = False
    updates: list[dict[str, Any]] = field(default_factory=list)
    next_update: int = 1
    next_mid: int = 1
    events: list[dict[str, Any]] = field(default_factory=list)  # sends and edits
    sends: int = 0
    count_429: int = 0
    first_send: float | None = None
    last_send: float | None = None
    buckets: dict[int, _Bucket] = field(default_factory=dict)
    global_bucket: _Bucket = field(default_factory=lambda: _Bucket(30.0, 30.0))


def _telegram_main(conn: Connection) -> None:
    from aiohttp import web

    state = _TgState()
    changed = asyncio.Condition()

    async def notify() -> None:
        async with changed:
            changed.notify_all()

    def ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    def message(chat_id: int, mid: int, text: str) -> dict[str, Any]:
        return {
            "message_id": mid,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "U"},
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Balance Bot"},
            "text": text,
        }

    async def params_of(request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.body_exists:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update({k: v for k, v in (await request.post()).items()})
        return params

    async def api(request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != BOT_TOKEN:
            return web.json_response({"ok": False, "error_code": 401}, status=401)
        method = request.match_info["method"].lower()
        p = await params_of(request)
        now = time.monotonic()
        if method == "getme":
            return ok(
                {"id": BOT_ID, "is_bot": True, "first_name": "Balance Bot",
                 "username": "bench_balance_bot", "can_join_groups": False,
                 "can_read_all_group_messages": False, "supports_inline_queries": False}
            )  # fmt: skip
        if method == "getupdates":
            offset = int(p.get("offset") or 0)
            timeout = min(float(p.get("timeout") or 0), 5.0)
            deadline = now + timeout
            async with changed:
                while True:
                    state.updates = [u for u in state.updates if u["update_id"] >= offset]
                    if state.updates or time.monotonic() >= deadline:
                        break
                    try:
                        async with asyncio.timeout(deadline - time.monotonic()):
                            await changed.wait()
                    except TimeoutError:
                        break
            return ok(list(state.updates[:100]))
        if method == "sendmessage":
            chat_id = int(p["chat_id"])
            if state.enforce_limits:
                bucket = state.buckets.setdefault(chat_id, _Bucket(1.0, 3.0))
                wait = max(bucket.take(now), 0.0)
                gwait = state.global_bucket.take(now) if wait == 0 else 0.0
                if wait == 0 and gwait > 0:
                    bucket.tokens += 1  # refund: the chat did not send
                if wait > 0 or gwait > 0:
                    state.count_429 += 1
                    retry = max(1, math.ceil(max(wait, gwait)))
                    return web.json_response(
                        {"ok": False, "error_code": 429,
                         "description": f"Too Many Requests: retry after {retry}",
                         "parameters": {"retry_after": retry}},
                        status=429,
                    )  # fmt: skip
            mid = state.next_mid
            state.next_mid += 1
            state.sends += 1
            state.first_send = state.first_send if state.first_send is not None else now
            state.last_send = now
            text = str(p.get("text", ""))
            state.events.append(
                {"t": now, "kind": "send", "chat_id": chat_id, "message_id": mid, "text": text}
            )
            await notify()
            return ok(message(chat_id, mid, text))
        if method == "editmessagetext":
            chat_id, mid = int(p["chat_id"]), int(p["message_id"])
            text = str(p.get("text", ""))
            state.events.append(
                {"t": now, "kind": "edit", "chat_id": chat_id, "message_id": mid, "text": text}
            )
            await notify()
            return ok(message(chat_id, mid, text))
        if method in ("getmycommands",):
            return ok([])
        return ok(True)  # setMyCommands, deleteWebhook, answerCallbackQuery, chat actions…

    async def ctl(request: web.Request) -> web.StreamResponse:
        action = request.match_info["action"]
        body = await request.json() if request.body_exists else {}
        if action == "message":  # inject a private text message from a user
            uid = int(body["user_id"])
            text = str(body["text"])
            now = time.monotonic()
            uid_mid = state.next_mid
            state.next_mid += 1
            msg = message(uid, uid_mid, text)
            msg["from"] = {"id": uid, "is_bot": False, "first_name": "U", "language_code": "en"}
            if text.startswith("/"):
                cmd = text.split()[0]
                msg["entities"] = [{"type": "bot_command", "offset": 0, "length": len(cmd)}]
            update = {"update_id": state.next_update, "message": msg}
            state.next_update += 1
            state.updates.append(update)
            await notify()
            return web.json_response({"t": now, "update_id": update["update_id"]})
        if action == "events":  # events in a chat after t, waiting up to `wait` s for one
            chat_id = int(body["chat_id"])
            after = float(body.get("after", 0))
            deadline = time.monotonic() + min(float(body.get("wait", 0)), 30.0)

            def found() -> list[dict[str, Any]]:
                return [e for e in state.events if e["chat_id"] == chat_id and e["t"] > after]

            async with changed:
                while not (hits := found()) and time.monotonic() < deadline:
                    try:
                        async with asyncio.timeout(deadline - time.monotonic()):
                            await changed.wait()
                    except TimeoutError:
                        break
            return web.json_response({"events": hits, "now": time.monotonic()})
        if action == "limits":
            state.enforce_limits = bool(body["enforce"])
            state.buckets.clear()
            state.global_bucket = _Bucket(30.0, 30.0)
            return web.json_response(True)
        if action == "reset":
            state.events.clear()
            state.sends = state.count_429 = 0
            state.first_send = state.last_send = None
            return web.json_response(True)
        if action == "stats":
            return web.json_response(
                {"sends": state.sends, "count_429": state.count_429,
                 "first_send": state.first_send, "last_send": state.last_send,
                 "distinct_chats": len({e["chat_id"] for e in state.events if e["kind"] == "send"}),
                 "cpu_s": time.process_time()}
            )  # fmt: skip
        return web.json_response({"error": "unknown"}, status=404)

    async def serve() -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", api)
        app.router.add_post("/_ctl/{action}", ctl)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        conn.send(f"http://{HOST}:{port}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_message() -> None:
            with contextlib.suppress(EOFError):
                conn.recv()
            stop.set()

        loop.add_reader(conn.fileno(), on_message)
        await stop.wait()
        loop.remove_reader(conn.fileno())
        async with changed:
            changed.notify_all()
        await runner.cleanup()
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
