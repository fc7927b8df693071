"""Webhook mode: an ASGI app (starlette + uvicorn) in front of the PTB Application.

Routes: POST <path of WEBHOOK_URL> for Telegram updates (secret header checked, update
processed before answering 200, so a crash makes Telegram retry: at-least-once),
GET /healthz and GET /metrics. Any replica can take any update: per-user state lives in
the database, not in process memory.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import time
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from telegram import Update

from bot import metrics
from bot.app import BotApp, build_application
from bot.errors import ConfigError
from bot.settings import Settings
from bot.storage.repositories import KeyRepo, UserRepo

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
SHUTDOWN_GRACE_SECONDS = 20


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


def build_webapp(app: BotApp, settings: Settings) -> Starlette:
    secret = require_webhook_settings(settings).encode()

    async def telegram_update(request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, secret):
            return Response(status_code=403)
        try:
            data = await request.json()
            update = Update.de_json(data, app.bot)
        except Exception:
            return Response(status_code=400)
        # Through the update processor: one user's updates stay in order in this replica.
        await app.update_processor.process_update(update, app.process_update(update))
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
