"""Webhook mode: an ASGI app (starlette + uvicorn) in front of the PTB Application.

Routes: POST <path of WEBHOOK_URL> for Telegram updates (secret header checked, update
processed before answering 200, so a crash makes Telegram retry: at-least-once),
GET /healthz and GET /metrics. Any replica can take any update: per-user state lives in
the database, not in process memory.

Hostile or broken clients (docs/security.md §6): a body over `MAX_BODY` is refused with
413 without being read (Telegram's updates are a few KiB); a request whose headers and
body have not fully arrived `REQUEST_DEADLINE` seconds after its first byte is cut off
(uvicorn itself never times out a half-sent request); at most `MAX_CONNECTIONS`
connections are served at once. An `update_id` seen before is not handled again, by any
replica (bot/services/webhook_updates.py).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import signal
import time
from typing import Any
from urllib.parse import urlsplit

import h11
import uvicorn
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from telegram import Update
from uvicorn.protocols.http.h11_impl import H11Protocol

from bot import metrics
from bot.app import BotApp, build_application
from bot.errors import ConfigError
from bot.services.webhook_updates import Claim, WebhookUpdates
from bot.settings import Settings
from bot.storage.repositories import KeyRepo, UserRepo

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
SHUTDOWN_GRACE_SECONDS = 20
MAX_BODY = 1024 * 1024  # bytes; Telegram's updates are a few KiB
REQUEST_DEADLINE = 10.0  # seconds from a request's first byte to its last
MAX_CONNECTIONS = 256  # served at once; more get 503 (Telegram opens at most 100)


def webhook_path(settings: Settings) -> str:
    path = urlsplit(settings.webhook_url or "").path.rstrip("/")
    return path or "/telegram"


def require_webhook_settings(settings: Settings) -> str:
    if not settings.webhook_url:
        raise ConfigError("WEBHOOK_URL is not set: the public https URL Telegram should call")
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    if not secret:
        raise ConfigError(
            "WEBHOOK_SECRET is not set: choose 1-256 characters of A-Z a-z 0-9 _ - "
            "(e.g. `openssl rand -hex 32`)"
        )
    if len(secret) > 256 or not all(c.isalnum() or c in "_-" for c in secret):
        raise ConfigError("WEBHOOK_SECRET may only hold 1-256 characters of A-Z a-z 0-9 _ -")
    return secret


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for *receiving* each request.

    uvicorn times out idle keep-alive connections, but not a request whose headers or
    body trickle in (slowloris): 800 such connections were still open after 30 s. Here a
    timer runs from a connection's (or a new request's) first moment until the whole
    request has arrived; if it fires first, the connection is closed. Handling the
    update afterwards may take as long as it needs.
    """

    deadline = REQUEST_DEADLINE
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._disarm()  # the whole request is in (or the connection is ending)
        elif self._timer is None:
            self._arm()  # the next request on a keep-alive connection has begun

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._timer = self.loop.call_later(self.deadline, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.conn.their_state is not h11.DONE and not self.transport.is_closing():
            log.info("closing a connection whose request did not arrive in %.0f s", self.deadline)
            self.transport.close()


async def _read_body(request: Request) -> bytes | None:
    """The body, or None when it is larger than MAX_BODY (then it is not read further)."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def build_webapp(app: BotApp, settings: Settings) -> Starlette:
    secret = require_webhook_settings(settings).encode()
    ledger: WebhookUpdates | None = None

    def updates_seen() -> WebhookUpdates:
        nonlocal ledger
        if ledger is None:
            services = app.bot_data.services
            assert services is not None, "services are built before the server starts"
            ledger = WebhookUpdates(services.db)
        return ledger

    async def telegram_update(request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, secret):
            return Response(status_code=403, headers={"Connection": "close"})
        try:
            body = await _read_body(request)
        except ClientDisconnect:
            return Response(status_code=400)
        if body is None:
            return Response(status_code=413, headers={"Connection": "close"})
        try:
            update = Update.de_json(json.loads(body), app.bot)
        except Exception:
            return Response(status_code=400)
        seen = updates_seen()
        claim = await seen.claim(update.update_id)
        if claim is Claim.DONE:
            return Response(status_code=200)  # a retry of an update already handled
        if claim is Claim.BUSY:  # being handled now: ask Telegram to come back later
            return Response(status_code=503, headers={"Retry-After": "5"})
        try:
            # Through the update processor: one user's updates stay in order in this replica.
            await app.update_processor.process_update(update, app.process_update(update))
        except BaseException:
            seen.release(update.update_id)
            raise
        await seen.done(update.update_id)
        return Response(status_code=200)

    async def healthz(_: Request) -> Response:
        """200 only when the database answers AND alert sweeps make progress: a process
        whose sweeps have had due keys but checked none for 3 intervals (failing,
        hanging, or no longer running) is unhealthy, so an orchestrator restarts it."""
        services = app.bot_data.services
        body: dict[str, Any] = {
            "status": "ok",
            "database": "ok",
            "sweep": "off",
            "last_sweep_at": metrics.last_sweep_iso(),
            "last_progress_at": None,
        }
        try:
            assert services is not None
            async with services.db.session() as s:
                await s.execute(text("SELECT 1"))
        except Exception:
            body.update(status="unavailable", database="unreachable")
            return JSONResponse(body, status_code=503)
        sweep = services.sweep
        if sweep is not None:
            progress = sweep.last_progress_at
            body["last_progress_at"] = None if progress is None else progress.isoformat()
            body["sweep"] = "ok"
            if sweep.stalled():
                body.update(status="unavailable", sweep="stalled")
                return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    async def metrics_endpoint(_: Request) -> Response:
        users = keys = 0
        services = app.bot_data.services
        if services is not None:
            async with services.db.session() as s:
                users, keys = await UserRepo(s).count(), await KeyRepo(s).count()
        payload, content_type = metrics.render(users, keys)
        return Response(payload, media_type=content_type)

    return Starlette(
        routes=[
            Route(webhook_path(settings), telegram_update, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ]
    )


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT (uvicorn handles them), then shut down in order."""
    require_webhook_settings(settings)
    app = build_application(settings, webhook=True)
    web = build_webapp(app, settings)
    await app.initialize()
    try:
        if app.post_init:
            await app.post_init(app)
        await app.start()
        await app.bot.set_webhook(
            url=settings.webhook_url or "",
            secret_token=require_webhook_settings(settings),
            allowed_updates=Update.ALL_TYPES,
            drop_pending_updates=False,
        )
        config = uvicorn.Config(
            web,
            host=settings.webhook_listen,
            port=settings.webhook_port,
            log_config=None,
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
            http=DeadlineH11Protocol,
            limit_concurrency=MAX_CONNECTIONS,
            h11_max_incomplete_event_size=16 * 1024,  # request line + headers
        )
        server = uvicorn.Server(config)
        log.info(
            "webhook server listening on %s:%s", settings.webhook_listen, settings.webhook_port
        )
        # uvicorn handles SIGTERM/SIGINT while serving and re-raises the signal when it
        # returns; these no-op handlers turn that into a normal return, so the orderly
        # shutdown below runs and the process exits 0.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _note_signal)
        await server.serve()
        log.info("stopping: finishing in-flight work")
    finally:
        started = time.monotonic()
        if app.running:
            await app.stop()  # stops the JobQueue, waiting for a running sweep batch
        await app.shutdown()
        if app.post_shutdown:
            await app.post_shutdown(app)
        log.info("stopped in %.1f s", time.monotonic() - started)


def _note_signal(signum: int, _frame: object) -> None:
    log.info("received %s", signal.Signals(signum).name)


def run_webhook(settings: Settings) -> int:
    asyncio.run(serve(settings))
    return 0
