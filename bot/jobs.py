"""Scheduled jobs (PTB JobQueue): the alert sweep, the sender, the digest, the SQLite
checkpoint — scheduled once services exist, and told first when shutdown begins.

Every job is idempotent and lease-guarded below (bot/alerts/), so a late or skipped
tick loses nothing: "due" lives in the database, not in the schedule.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from telegram.ext import Application, JobQueue

from bot import metrics
from bot.context import BotContext, Services
from bot.delivery import Render, Sender
from bot.handlers import add
from bot.services.shared_limits import HEARTBEAT_SECONDS

log = logging.getLogger(__name__)

JOB_KWARGS = {"misfire_grace_time": None, "coalesce": True, "max_instances": 1}
#: The sweep looks for due keys at least this often. Keys fall due every
#: ALERT_INTERVAL_SECONDS, plan keys sooner near a window's reset or rung
#: (bot/alerts/windows.py): a "refilled" notice must not wait for an hourly tick.
SWEEP_TICK = 60.0


async def sweep_job(context: BotContext) -> None:
    """Check due keys; a late or long sweep is never run on top of itself (lock + lease)."""
    services = context.bot_data.services
    if services is None or services.sweep is None:
        return
    sweep = services.sweep
    started = time.monotonic()
    try:
        stats = await sweep.run()
    except Exception:
        # One sweep's failure (the database went away mid-claim) is logged and counted;
        # the next tick sweeps afresh, and /healthz turns unhealthy if none progresses.
        log.exception("alerts sweep failed; the next one runs on schedule")
        metrics.sweep_failed()
        return
    progress = sweep.last_progress_at
    metrics.sweep_finished(
        time.monotonic() - started,
        services.clock().timestamp(),
        checked=stats.checked,
        failed=stats.failed,
        lost_leases=stats.lost_leases,
        progress_at=None if progress is None else progress.timestamp(),
    )
    if stats.events:
        metrics.alert("queued", stats.events)
        log.info("alerts sweep: %d keys checked, %d events", stats.checked, stats.events)
        context.deliver_alerts()


async def send_job(context: BotContext) -> None:
    sender = context.bot_data.sender
    if sender is not None:
        await sender.run()


async def digest_job(context: BotContext) -> None:
    services = context.bot_data.services
    if services is None or services.digest is None:
        return
    if await services.digest.enqueue_due():
        context.deliver_alerts()


async def heartbeat_job(context: BotContext) -> None:
    """PostgreSQL: say this replica is alive; take its share of the per-host caps."""
    services = context.bot_data.services
    if services is None or services.instances is None:
        return
    services.billing.share_with(await services.instances.beat())
    await hand_back_dead_sends(services)  # a replica that stopped beating died


async def hand_back_dead_sends(services: Services) -> None:
    """Alerts a crashed process had leased go out now, not after their 60 s lease.

    At start and, on PostgreSQL, at every heartbeat. SQLite is single-instance: any other
    lease owner is a dead predecessor. On PostgreSQL only the leases of owners without a
    fresh heartbeat are released, never a live replica's.
    """
    if services.outbox is None:
        return
    alive = None if services.instances is None else await services.instances.alive()
    released = await services.outbox.hand_back_dead(alive)
    if released:
        log.info("%d alert sends leased by a process that is gone were handed back", released)


async def checkpoint_job(context: BotContext) -> None:
    services = context.bot_data.services
    if services is not None:
        await services.db.checkpoint()


def schedule(app: Application[Any, Any, Any, Any, Any, Any], render: Render) -> None:
    """Called from post_init once services exist: sweep, sender, digest, checkpoint, and
    the look-out for keys whose saving was interrupted (bot/handlers/add.py)."""
    services = app.bot_data.services
    jq = app.job_queue
    if services is None or jq is None:
        return
    if services.instances is not None:
        jq.run_repeating(
            heartbeat_job, interval=HEARTBEAT_SECONDS, first=HEARTBEAT_SECONDS,
            name="heartbeat", job_kwargs=JOB_KWARGS,
        )  # fmt: skip
    if services.db.is_sqlite:
        # The WAL keeps old pages (including rewritten ciphertexts) until a checkpoint.
        jq.run_repeating(
            checkpoint_job, interval=3600, first=600, name="db-checkpoint", job_kwargs=JOB_KWARGS
        )
    # Keys whose saving a crash cut short: their owners are told soon after a restart.
    jq.run_repeating(
        add.resume_interrupted, interval=add.RESUME_EVERY, first=1.0, name="add-resume",
        job_kwargs=JOB_KWARGS,
    )  # fmt: skip
    if services.outbox is None:
        return
    interval = services.settings.alert_interval_seconds
    app.bot_data.sender = Sender(services.outbox, app.bot, render)
    jq.run_repeating(
        sweep_job, interval=min(interval, SWEEP_TICK), first=min(interval, 5.0),
        name="alerts-sweep", job_kwargs=JOB_KWARGS,
    )  # fmt: skip
    jq.run_repeating(
        send_job, interval=min(1.0, interval), first=0.5, name="alerts-send",
        job_kwargs=JOB_KWARGS,
    )  # fmt: skip
    jq.run_repeating(
        digest_job, interval=min(300.0, max(interval, 60.0)), first=30.0, name="alerts-digest",
        job_kwargs=JOB_KWARGS,
    )  # fmt: skip


def stop(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Shutdown begins: the sweep and the sender finish what is under way, then stop;
    answers still waiting for a late provider show what they have and end."""
    services = app.bot_data.services
    if services is not None and services.sweep is not None:
        services.sweep.request_stop()
    if services is not None:
        services.balances.abandon_all()  # /balance answers stop waiting for late providers
    sender = app.bot_data.sender
    if sender is not None:
        sender.stopping = True


class BotJobQueue(JobQueue):  # type: ignore[type-arg]
    """Tells long jobs that shutdown has begun before waiting for them to end.

    PTB's JobQueue.stop(wait=True) waits for running jobs; a sweep stuck on slow
    providers would hold shutdown up. Told first, it finishes or hands back its leases
    within a bounded grace period.
    """

    async def stop(self, wait: bool = True) -> None:
        stop(self.application)
        await super().stop(wait=wait)
