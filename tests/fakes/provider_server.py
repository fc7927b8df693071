"""A scriptable fake LLM provider on 127.0.0.1 that the real billing code calls over HTTP.

    server = FakeProviderServer()
    await server.start()
    server.reply("/user/balance", json={...})            # every GET to that path
    server.reply("/v1/models", status=401, json={...})
    server.reply("/slow", json={}, delay=0.1)
    server.script("/flaky", [Reply(500), Reply(200, json={...})])  # one per request, last repeats
    server.hold("/hang"); ...; server.release()    # requests to /hang wait until released
    ... server.url ... server.requests ...
    await server.stop()

Paths are matched exactly (query strings ignored; they are recorded). A path with no
reply gives 404 with an HTML body, like most web servers.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    body: bytes | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encode(self) -> tuple[bytes, str]:
        if self.body is not None:
            raw = self.body.encode() if isinstance(self.body, str) else self.body
            return raw, self.headers.get("Content-Type", "text/plain")
        if self.json is not None:
            return jsonlib.dumps(self.json).encode(), "application/json"
        return b"", "text/plain"


@dataclass
class SeenRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")

    def json(self) -> Any:
        """The request body as JSON (None when empty or not JSON)."""
        try:
            return jsonlib.loads(self.body) if self.body else None
        except ValueError:
            return None


class FakeProviderServer:
    def __init__(self, host: str = "127.0.0.1", *, keep_requests: bool = True) -> None:
        self.host = host
        self.port = 0
        self._scripts: dict[str, list[Reply]] = {}
        self._dynamic: dict[str, Callable[[web.Request], Reply]] = {}
        self.requests: list[SeenRequest] = []
        self.keep_requests = keep_requests  # False: count only (the benchmark's 100k checks)
        self.served = 0
        self.in_flight = 0
        self.peak_in_flight = 0  # most requests being answered at once
        self.latency = 0.0  # added to every reply
        self._held: dict[str, asyncio.Event] = {}
        self._open = 0  # requests received and not yet answered (held, delayed or not)
        self.max_in_flight = 0  # most of those at once
        self._runner: web.AppRunner | None = None

    # -- scripting -------------------------------------------------------------------

    def reply(
        self,
        path: str,
        status: int = 200,
        *,
        json: Any = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        self._scripts[path] = [Reply(status, json, body, dict(headers or {}), delay)]

    def script(self, path: str, replies: list[Reply]) -> None:
        """Answer successive requests with these replies; the last one repeats."""
        self._scripts[path] = list(replies)

    def install(self, routes: Mapping[str, Reply]) -> None:
        """Answer every request to each path with its reply (see `tests/fakes/canned.py`)."""
        for path, reply in routes.items():
            self._scripts[path] = [reply]

    def handle(self, path: str, func: Callable[[web.Request], Reply]) -> None:
        """Compute the reply from the request (e.g. check the Authorization header)."""
        self._dynamic[path] = func

    def hold(self, path: str) -> None:
        """Requests to `path` hang (connection open, no answer) until `release()`."""
        self._held.setdefault(path, asyncio.Event())

    def release(self) -> None:
        for event in self._held.values():
            event.set()
        self._held.clear()

    def clear(self) -> None:
        self._scripts.clear()
        self._dynamic.clear()
        self.requests.clear()

    def count(self, path: str | None = None) -> int:
        return sum(1 for r in self.requests if path is None or r.path == path)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- server ------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self._open += 1
        self.max_in_flight = max(self.max_in_flight, self._open)
        try:
            return await self._answer(request)
        finally:
            self._open -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.served += 1
        body = await request.read() if request.can_read_body else b""
        if self.keep_requests:
            self.requests.append(
                SeenRequest(
                    request.method, request.path, dict(request.query), dict(request.headers), body
                )
            )
        held = self._held.get(request.path)
        if held is not None:
            await held.wait()
        if request.path in self._dynamic:
            reply = self._dynamic[request.path](request)
        elif request.path in self._scripts:
            queue = self._scripts[request.path]
            reply = queue.pop(0) if len(queue) > 1 else queue[0]
        else:
            reply = Reply(
                404,
                body="<html><body><h1>404 Not Found</h1></body></html>",
                headers={"Content-Type": "text/html"},
            )
        delay = reply.delay + self.latency
        if delay:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                await asyncio.sleep(delay)
            finally:
                self.in_flight -= 1
        raw, ctype = reply.encode()
        headers = {k: v for k, v in reply.headers.items() if k.lower() != "content-type"}
        return web.Response(
            status=reply.status, body=raw, content_type=ctype.split(";")[0], headers=headers
        )

    async def start(self) -> FakeProviderServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # A client that gives up (a check cancelled at shutdown) ends its request here too,
        # so stopping the server never waits for a scripted delay nobody listens to.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
