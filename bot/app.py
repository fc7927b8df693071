"""Build the PTB Application: one place that wires settings, services and handlers."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import ssl
from typing import Any

import httpx
from telegram import BotCommand, BotCommandScopeAllPrivateChats, LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ContextTypes,
    Defaults,
)
from telegram.request import HTTPXRequest

from bot import handlers, jobs, metrics
from bot.clock import Clock, system_clock
from bot.context import BotContext, BotData, Services
from bot.crypto.masterkey import open_vault
from bot.handlers import overflow
from bot.handlers.alert_messages import render as render_alert
from bot.i18n import LANGUAGES, N_, translator
from bot.logs import install_redaction
from bot.ratelimit import BotRateLimiter
from bot.secret import register_static
from bot.services.keys import KeyService
from bot.services.shared_limits import Instances, SharedPacer, SharedQuota
from bot.services.users import UserService
from bot.settings import Settings
from bot.storage.db import Database
from bot.updates import PerUserUpdateProcessor

log = logging.getLogger(__name__)

BotApp = Application[Any, BotContext, Any, Any, BotData, Any]

SETTLE_GC_AFTER = 1.0  # seconds after post_init: polling has started by then
_gc_settled = False

COMMANDS = (
    ("start", N_("What this bot does")),
    ("add", N_("Add an API key")),
    ("balance", N_("Remaining credit on your keys")),
    ("keys", N_("Your keys: check, rename, delete")),
    ("alerts", N_("Low-balance and expiry alerts")),
    ("history", N_("Chart of your balances over time")),
    ("currency", N_("One converted total in /balance")),
    ("export", N_("Your balance history as a CSV or JSON file")),
    ("remove", N_("Delete a key")),
    ("lang", N_("Language: en or zh")),
    ("tz", N_("Time zone for dates")),
    ("forget", N_("Delete everything stored about you")),
    ("cancel", N_("Leave the current step")),
    ("help", N_("All commands")),
)


async def build_services(settings: Settings, clock: Clock = system_clock) -> Services:
    """Every long-lived service, built once, all reading time from the one `clock`."""
    from bot.alerts.digest import DailyDigest
    from bot.alerts.outbox import OutboxService
    from bot.alerts.preferences import AlertPreferences
    from bot.alerts.sweep import AlertSweep
    from bot.billing.registry import registry_for
    from bot.billing.service import BillingService
    from bot.charts import ChartRenderer
    from bot.services.account import AccountService
    from bot.services.adding import ADD_CHECKS_PER_HOUR, AddService
    from bot.services.balances import (
        MANUAL_CHECKS_PER_MINUTE,
        BalanceService,
        ManualCheckLimiter,
    )
    from bot.services.flows import FlowStore
    from bot.services.fx import FxService
    from bot.services.history import HistoryService

    registry = registry_for(settings)  # a broken PROVIDERS_FILE stops start-up here (exit 78)
    db = Database(settings.database_url, clock=clock)
    try:
        vault = await open_vault(settings, db)
    except BaseException:
        await db.dispose()
        raise
    billing = BillingService(
        settings,
        registry=registry,
        clock=clock,
        on_check=metrics.observe_check,
        trusted_host_limit=settings.checks_per_host,
    )
    keys = KeyService(db, vault)
    # Per-user limits: in this process on SQLite (single-instance), in the database on
    # PostgreSQL, where replicas share them (bot/services/shared_limits.py). One manual-
    # check limit: /balance, "Check now", "I topped up".
    instances = first = None
    manual_checks = ManualCheckLimiter()
    if not db.is_sqlite:
        instances = Instances(db)
        manual_checks = SharedQuota(db, "manual-check", MANUAL_CHECKS_PER_MINUTE, 60.0)
        first = SharedQuota(db, "first-check", ADD_CHECKS_PER_HOUR, 3600.0)
    balances = BalanceService(db, keys, billing, limiter=manual_checks)
    flows = FlowStore(db, vault)
    # On PostgreSQL the outbox leases carry this replica's instance id, so a replica can
    # tell a dead process's leases from a live one's (hand_back_dead_sends).
    outbox = OutboxService(db, owner=instances.id if instances is not None else None)
    sweep = AlertSweep(
        db, keys, billing, outbox, interval=settings.alert_interval_seconds, record=True,
        manual_limiter=manual_checks,
    )  # fmt: skip
    return Services(
        settings=settings,
        db=db,
        keys=keys,
        users=UserService(db),
        billing=billing,
        balances=balances,
        flows=flows,
        adding=AddService(keys, billing, flows, balances, limiter=first),
        account=AccountService(db),
        alerts=AlertPreferences(db, outbox),
        sweep=sweep,
        digest=DailyDigest(db),
        outbox=outbox,
        history=HistoryService(db),
        instances=instances,
        charts=ChartRenderer(),
        fx=FxService(db, billing.trusted_http, settings.fx_rates_url),
    )


async def close_services(services: Services) -> None:
    if services.instances is not None:
        try:
            await services.instances.leave()  # the others' shares grow at their next beat
        except Exception as exc:
            log.info("could not remove this instance's heartbeat: %s", exc)
    services.charts.close()
    await services.balances.flush()  # answers already shown reach key_status
    await services.billing.aclose()
    await services.db.dispose()


async def check_token(settings: Settings) -> None:
    """getMe with the configured token; PTB's InvalidToken if Telegram refuses it."""
    from telegram import Bot

    register_static(settings.bot_token)
    root = settings.telegram_api_url
    async with Bot(settings.bot_token, base_url=f"{root}/bot", base_file_url=f"{root}/file/bot"):
        pass  # entering calls getMe


async def set_commands(app: BotApp) -> None:
    """The command menu in every language, the languages' calls at once (one round trip)."""

    async def set_for(lang: str) -> None:
        t = translator(lang)
        commands = [BotCommand(name, t(desc)) for name, desc in COMMANDS]
        await app.bot.set_my_commands(
            commands,
            scope=BotCommandScopeAllPrivateChats(),
            language_code=None if lang == "en" else lang,
        )

    await asyncio.gather(*(set_for(lang) for lang in LANGUAGES))


async def post_init(app: BotApp) -> None:
    settings = app.bot_data.settings
    assert settings is not None
    if app.bot_data.services is None:
        app.bot_data.services = await build_services(settings)
    commands = asyncio.ensure_future(set_commands(app))  # meanwhile, the rest below
    try:
        services = app.bot_data.services
        if services.instances is not None:  # PostgreSQL: replicas share the limits
            services.billing.share_with(await services.instances.beat())
            if isinstance(app.bot.rate_limiter, BotRateLimiter):
                app.bot.rate_limiter.overall = SharedPacer(services.db)
        await jobs.hand_back_dead_sends(services)  # before the sender claims anything
        providers = services.providers
        jobs.schedule(app, lambda item, now: render_alert(item, now, providers))
    except BaseException:
        commands.cancel()
        raise
    await commands
    asyncio.get_running_loop().call_later(SETTLE_GC_AFTER, settle_gc)
    log.info("bot @%s ready", app.bot.username)


def settle_gc() -> None:
    """Everything built at start-up (modules, services, the Application) lives as long as
    the process: keep it out of the cyclic collector's full passes. Without this a full
    collection during a sweep walked every start-up object and stalled the event loop for
    ~250 ms at a time, which a /balance meanwhile waited out (issue 17 item 1). Young
    collections every 10,000 allocations instead of 700: a sweep's in-flight objects (a few
    hundred per check) then mostly die young instead of being promoted into the
    generation a full collection has to walk.

    Run by post_init SETTLE_GC_AFTER seconds after start-up, once polling has begun: the
    collection before the freeze walks the whole start-up heap (~70 ms on the reference
    machine) and nothing before polling needs it (issue 17 item 4). Once per process: a
    second Application in the same process (tests, the benchmark) finds it done."""
    global _gc_settled
    if _gc_settled:
        return
    _gc_settled = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


async def post_shutdown(app: BotApp) -> None:
    services = app.bot_data.services
    if services is not None:
        app.bot_data.services = None
        await close_services(services)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for the Bot API clients, as httpx builds it by default (certifi, or
    SSL_CERT_FILE / SSL_CERT_DIR). PTB's defaults build one per client (two per bot, and
    again on every re-initialise): each loads the whole CA bundle, ~0.7 MB and ~20 ms."""
    return httpx.create_ssl_context()


def build_application(
    settings: Settings, services: Services | None = None, *, webhook: bool = False
) -> BotApp:
    """The Application, not started. `services` may be injected (tests, benchmarks).

    In webhook mode there is no Updater: bot.webhook feeds updates in.
    """
    settings.require_token()
    install_redaction()  # also when embedded (tests, benchmarks), not only via the CLI
    register_static(settings.bot_token)
    root = settings.telegram_api_url
    builder = ApplicationBuilder()
    if webhook:
        builder = builder.updater(None)
    app: BotApp = (
        builder.token(settings.bot_token)
        .base_url(f"{root}/bot")
        .base_file_url(f"{root}/file/bot")
        .context_types(ContextTypes(context=BotContext, bot_data=BotData))
        .defaults(
            Defaults(
                parse_mode=ParseMode.HTML, link_preview_options=LinkPreviewOptions(is_disabled=True)
            )
        )
        .request(HTTPXRequest(connection_pool_size=256, httpx_kwargs={"verify": _tls()}))
        .get_updates_request(HTTPXRequest(connection_pool_size=1, httpx_kwargs={"verify": _tls()}))
        .rate_limiter(BotRateLimiter())
        .concurrent_updates(PerUserUpdateProcessor())
        .job_queue(jobs.BotJobQueue())
        .post_init(post_init)
        .post_shutdown(post_shutdown)
        .build()
    )
    app.bot_data.settings = settings
    app.bot_data.services = services
    if isinstance(app.update_processor, PerUserUpdateProcessor):
        app.update_processor.on_overflow = overflow.teller(app)
    handlers.register(app)
    return app
