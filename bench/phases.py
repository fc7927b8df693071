"""The measured phases. Each runs in a fresh spawned process (`run_isolated`), so its CPU
time and RSS are its own, not the seeding's or another phase's.
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from multiprocessing import get_context
from typing import Any

from bench.seed import BenchConfig, seed

# -- process-level measurements -------------------------------------------------------------


def rss_mb() -> float:
    """Current resident set size (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_isolated(func: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run `func(*args)` in a new spawned process and return its result."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(func, *args).result()


@dataclass
class _Meter:
    """Wall and process CPU time (all threads: aiosqlite and resolver threads count too)."""

    wall0: float = 0.0
    cpu0: float = 0.0
    wall: float = 0.0
    cpu: float = 0.0

    def __enter__(self) -> _Meter:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


# -- seeding ----------------------------------------------------------------------------------


def seed_phase(cfg: BenchConfig, n_keys: int, n_users: int, balance_users: int) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        from bot.crypto.masterkey import open_vault
        from bot.storage.db import Database

        db = Database(cfg.database_url)
        try:
            vault = await open_vault(cfg.settings(), db)  # migrates, stores the key check
            with _Meter() as m:
                total, extra = await seed(
                    db, vault, cfg, n_keys=n_keys, n_users=n_users, balance_users=balance_users
                )
        finally:
            await db.dispose()
        return {"keys": total, "balance_users": extra, "seconds": round(m.wall, 2)}

    return asyncio.run(go())


# -- 1 + 4: sweep throughput and memory -------------------------------------------------------


async def fetch_many_sweep(
    services: Any, batch_size: int = 1000, inflight: int = 3
) -> tuple[int, int]:
    """Stand-in for the alert sweep: keyset-paged rows, decrypted, `fetch_many` per batch.

    Up to `inflight` batches overlap so one slow key does not idle the rest. Returns
    (checks, ok). No results are written: it is the sweep's network + decrypt core.
    """
    from bot.storage.repositories import KeyRepo

    checked = ok = 0
    pending: set[asyncio.Task[tuple[int, int]]] = set()

    async def check(reqs: list[Any]) -> tuple[int, int]:
        outcomes = await services.billing.fetch_many(reqs, use_cache=False)
        return len(outcomes), sum(o.ok for o in outcomes)

    def collect(done: set[asyncio.Task[tuple[int, int]]]) -> None:
        nonlocal checked, ok
        for task in done:
            c, o = task.result()
            checked += c
            ok += o

    after = ""
    while True:
        async with services.db.session() as s:
            rows = await KeyRepo(s).all_batches(after, batch_size)
        if not rows:
            break
        after = rows[-1].id
        reqs = [r for r in map(services.keys.request_for, rows) if r is not None]
        del rows
        while len(pending) >= inflight:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            collect(done)
        pending.add(asyncio.create_task(check(reqs)))
    if pending:
        done, _ = await asyncio.wait(pending)
        collect(done)
    return checked, ok


def sweep_entry(services: Any) -> tuple[str, Callable[[int], Awaitable[tuple[int, int]]]]:
    """The real alert sweep (`AlertSweep.run`) when it exists, else the stand-in.

    Sweep n runs as if n+1 intervals had passed, so every key is due again.
    """
    alerts = getattr(services, "sweep", None)
    if alerts is None:
        label = "BillingService.fetch_many core (stand-in: no alerts sweep yet)"
        return label, lambda n: fetch_many_sweep(services)

    async def real(n: int) -> tuple[int, int]:
        at = datetime.now(UTC) + (n + 1) * alerts.interval + timedelta(seconds=1)
        stats = await alerts.run(at)
        return stats.checked, stats.checked - stats.lost_leases

    label = (
        f"AlertSweep.run (real: lease, check, state machine, outbox, key_status; "
        f"batch_size={alerts.batch_size})"
    )
    return label, real


def sweep_phase(
    cfg: BenchConfig,
    sweeps: int,
    profile: str | None,
    batch_size: int | None,
    core: bool,
    host_limit: int | None = None,
) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        from sqlalchemy import event

        from bot.app import build_services, close_services

        services = await build_services(cfg.settings())
        if host_limit:
            services.billing.trusted_host_limit = host_limit
        label, run = sweep_entry(services)
        statements = [0]

        def count(*_: Any) -> None:
            statements[0] += 1

        event.listen(services.db.engine.sync_engine, "before_cursor_execute", count)
        runs: list[dict[str, Any]] = []
        core_run: dict[str, Any] | None = None
        try:
            if getattr(services, "sweep", None) is not None:
                await services.sweep.ensure_rows()  # one-off insert, not part of a sweep
                if batch_size:
                    services.sweep.batch_size = batch_size
                    label = label.replace("batch_size=50", f"batch_size={batch_size}")
                if core:  # the network + decrypt part alone, to locate the cost
                    with _Meter() as m:
                        checks, ok = await fetch_many_sweep(services)
                    core_run = _run_figures(checks, ok, m)
                    services.billing.clear_cache()
            statements[0] = 0
            gc.collect()
            rss_start = rss_mb()
            for n in range(sweeps):
                services.billing.clear_cache()
                profiler = _profiler(profile) if n == 0 else None
                with _Meter() as m:
                    checks, ok = await run(n)
                if profiler is not None:
                    profiler.stop()
                    _save_profile(profiler, profile)
                gc.collect()
                runs.append(_run_figures(checks, ok, m))
                runs[-1]["db_statements_per_check"] = round(statements[0] / max(checks, 1), 2)
                statements[0] = 0
        finally:
            await close_services(services)
        return {
            "method": label,
            "core": core_run,
            "rss_mb_before": round(rss_start, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "runs": runs,
        }

    return asyncio.run(go())


def _run_figures(checks: int, ok: int, m: _Meter) -> dict[str, Any]:
    return {
        "checks": checks,
        "ok": ok,
        "wall_s": round(m.wall, 3),
        "cpu_s": round(m.cpu, 3),
        "checks_per_s": round(checks / m.wall, 1) if m.wall else 0.0,
        "cpu_ms_per_check": round(1000 * m.cpu / checks, 4) if checks else 0.0,
        "rss_mb": round(rss_mb(), 1),
    }


def _profiler(path: str | None) -> Any:
    if not path:
        return None
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    return profiler


def _save_profile(profiler: Any, path: str | None) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(profiler.output_text(unicode=False, show_all=False))


# -- baseline: one key at a time, two blocking requests ---------------------------------------


def baseline_phase(cfg: BenchConfig, n_keys: int) -> dict[str, Any]:
    """The original method: for each relay key, subscription then usage, blocking, in turn."""
    import httpx

    async def load() -> list[tuple[str, Any]]:
        from sqlalchemy import select

        from bot.app import build_services, close_services
        from bot.storage.models import ApiKey

        services = await build_services(cfg.settings())
        try:
            async with services.db.session() as s:
                stmt = select(ApiKey).where(ApiKey.provider == "relay").limit(n_keys)
                rows = (await s.scalars(stmt)).all()
            reqs = [services.keys.request_for(r) for r in rows]
            return [(r.base_url, r.secret) for r in reqs if r is not None]
        finally:
            await close_services(services)

    keys = asyncio.run(load())
    today = date.today()
    window = {"start_date": (today - timedelta(days=99)).isoformat(), "end_date": today.isoformat()}
    ok = 0
    with httpx.Client(timeout=10.0, trust_env=False) as client, _Meter() as m:
        for base_url, secret in keys:
            headers = {"Authorization": f"Bearer {secret.reveal()}"}
            sub = client.get(f"{base_url}/v1/dashboard/billing/subscription", headers=headers)
            usage = client.get(
                f"{base_url}/v1/dashboard/billing/usage", headers=headers, params=window
            )
            if sub.status_code == 200 and usage.status_code == 200:
                total = Decimal(str(sub.json()["hard_limit_usd"]))
                used = Decimal(str(usage.json()["total_usage"])) / 100
                ok += total >= used or total < used  # parsed, like the original
    n = len(keys)
    return {
        "method": "sequential, blocking httpx.Client, subscription + usage per key",
        "checks": n,
        "ok": ok,
        "wall_s": round(m.wall, 3),
        "checks_per_s": round(n / m.wall, 2) if m.wall else 0.0,
        "cpu_ms_per_check": round(1000 * m.cpu / n, 3) if n else 0.0,
    }


# -- the fake Bot API control client -----------------------------------------------------------


class TgControl:
    def __init__(self, api_root: str) -> None:
        import aiohttp

        self._root = api_root
        self._session = aiohttp.ClientSession()

    async def call(self, action: str, **body: Any) -> Any:
        async with self._session.post(f"{self._root}/_ctl/{action}", json=body) as resp:
            return await resp.json()

    async def close(self) -> None:
        await self._session.close()


# -- 2: /balance latency through the real Application -----------------------------------------


async def _start_app(settings: Any, services: Any) -> Any:
    from telegram import Update

    from bot.app import build_application, settle_gc

    app = build_application(settings, services)
    await app.initialize()
    if app.post_init:
        await app.post_init(app)
    settle_gc()  # now, not 1 s later under the measurement (post_init defers it)
    assert app.updater is not None
    if app.job_queue is not None:
        for job in app.job_queue.jobs():  # the alert sweep would run under the measurement
            job.schedule_removal()
    await app.updater.start_polling(timeout=5, poll_interval=0, allowed_updates=Update.ALL_TYPES)
    await app.start()
    return app


async def _stop_app(app: Any) -> None:
    if app.updater is not None and app.updater.running:
        await app.updater.stop()
    if app.running:
        await app.stop()
    await app.shutdown()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1]


async def _one_balance(tg: TgControl, uid: int) -> float | None:
    """Seconds from /balance to its complete answer (None: no complete answer in 30 s)."""
    sent = await tg.call("message", user_id=uid, text="/balance")
    deadline = time.monotonic() + 30
    after = sent["t"]
    while time.monotonic() < deadline:
        got = await tg.call("events", chat_id=uid, after=after, wait=10)
        for event in got["events"]:
            after = max(after, event["t"])
            if not event["text"].startswith("⏳"):  # progress and "too soon" start with ⏳
                ok = "Balances" in event["text"]
                return float(event["t"] - sent["t"]) if ok else None
    return None


def _latency_figures(latencies: list[float], failures: int, latency: float) -> dict[str, Any]:
    if not latencies:
        return {"runs": 0, "failures": failures}
    ms = [1000 * x for x in latencies]
    lat_ms = 1000 * latency
    p50, p95 = _pct(ms, 50), _pct(ms, 95)
    return {
        "keys_per_user": 10,
        "runs": len(ms),
        "failures": failures,
        "p50_ms": round(p50, 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(max(ms), 1),
        "provider_latency_ms": lat_ms,
        "p50_overhead_ms": round(p50 - lat_ms, 1),
        "p95_overhead_ms": round(p95 - lat_ms, 1),
    }


def balance_phase(cfg: BenchConfig, users: list[int], warmup: int) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        from bot.app import build_services, close_services

        settings = cfg.settings()
        services = await build_services(settings)
        tg = TgControl(cfg.telegram_api_url)
        app = await _start_app(settings, services)
        latencies: list[float] = []
        failures = 0
        try:
            for i, uid in enumerate(users):
                services.billing.clear_cache()
                took = await _one_balance(tg, uid)
                if took is None:
                    failures += 1
                elif i >= warmup:
                    latencies.append(took)
        finally:
            await _stop_app(app)
            await tg.close()
            await close_services(services)
        return {
            "method": "real Application, /balance injected via getUpdates, 10 keys in parallel",
            **_latency_figures(latencies, failures, cfg.latency),
        }

    return asyncio.run(go())


async def _all_due_at(services: Any) -> datetime:
    """A moment at which every key is due, whatever earlier phases scheduled."""
    from sqlalchemy import func, select

    from bot.storage.models import AlertState

    async with services.db.session() as s:
        latest = await s.scalar(select(func.max(AlertState.next_check_at)))
    now = datetime.now(UTC)
    return max(now, latest or now) + timedelta(minutes=1)


def busy_phase(
    cfg: BenchConfig, users: list[int], warmup: int, host_limit: int | None = None
) -> dict[str, Any]:
    """Issue 17 item 1: /balance for 10-key users while the full sweep runs in the same
    process, on the same database and against the same provider hosts. The sweep starts
    first; /balance runs one after another (0.3 s apart) while it lasts."""

    async def go() -> dict[str, Any]:
        from bot.app import build_services, close_services

        settings = cfg.settings()
        services = await build_services(settings)
        if host_limit:
            services.billing.trusted_host_limit = host_limit
        tg = TgControl(cfg.telegram_api_url)
        app = await _start_app(settings, services)
        sweep = services.sweep
        await sweep.ensure_rows()
        at = await _all_due_at(services)
        # Where a /balance's time goes: its checks (billing.fetch outside the sweep's lane)
        # and the writes of their results (balances.record), each timed.
        parts: dict[str, list[float]] = {"fetch": [], "record": [], "loop_lag": [], "gc_full": []}
        fetch, record = services.billing.fetch, services.balances.record

        async def timed_fetch(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return await fetch(*a, **kw)
            finally:
                if not kw.get("background"):
                    parts["fetch"].append(time.perf_counter() - t)

        async def timed_record(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return await record(*a, **kw)
            finally:
                parts["record"].append(time.perf_counter() - t)

        services.billing.fetch = timed_fetch
        services.balances.record = timed_record
        lags: list[float] = []

        async def probe() -> None:  # event-loop lag: how late a 20 ms sleep wakes up
            while True:
                t = time.perf_counter()
                await asyncio.sleep(0.02)
                lags.append(time.perf_counter() - t - 0.02)

        prober = asyncio.ensure_future(probe())
        gc_started: list[float] = []

        def on_gc(phase: str, info: dict[str, Any]) -> None:  # full collections' pauses
            if info.get("generation") != 2:
                return
            if phase == "start":
                gc_started.append(time.perf_counter())
            elif gc_started:
                parts["gc_full"].append(time.perf_counter() - gc_started.pop())

        gc.callbacks.append(on_gc)
        latencies: list[float] = []
        failures = 0
        started = time.perf_counter()
        task = asyncio.ensure_future(sweep.run(at))
        try:
            await asyncio.sleep(2.0)  # the sweep is in full swing
            for i, uid in enumerate(users):
                if task.done():
                    break
                took = await _one_balance(tg, uid)
                if task.done():
                    break  # finished while this one ran: it did not run beside the sweep
                if took is None:
                    failures += 1
                elif i >= warmup:
                    latencies.append(took)
                await asyncio.sleep(0.3)
            stats = await task
            wall = time.perf_counter() - started
            parts["loop_lag"] = lags
        finally:
            prober.cancel()
            gc.callbacks.remove(on_gc)
            if not task.done():
                sweep.request_stop()
                await asyncio.gather(task, return_exceptions=True)
            await _stop_app(app)
            await tg.close()
            await close_services(services)
        return {
            "method": "real Application; /balance (10 keys) injected while AlertSweep.run checks "
            "every stored key in the same process",
            "sweep_checks": stats.checked,
            "sweep_wall_s": round(wall, 2),
            "sweep_checks_per_s": round(stats.checked / wall, 1) if wall else 0.0,
            "gc_full_collections": len(parts["gc_full"]),
            **{
                f"{name}_ms_p{q}": round(1000 * _pct(values, q), 1)
                for name, values in parts.items()
                if values
                for q in (50, 95)
            },
            **_latency_figures(latencies, failures, cfg.latency),
        }

    return asyncio.run(go())


# -- 3: alert delivery under Telegram's flood limits ------------------------------------------


ALERT_USERS = 5_000_000_000  # the first of the alert phase's user ids


async def _outbox_delivery(app: Any, services: Any, n_alerts: int) -> tuple[str, int, int]:
    """Enqueue `n_alerts` low-balance alerts for distinct users; drain with the real Sender."""
    from sqlalchemy import insert

    from bot.alerts import rules
    from bot.alerts.outbox import enqueue
    from bot.delivery import Sender
    from bot.handlers.alert_messages import render
    from bot.storage.models import User

    base = ALERT_USERS
    now = datetime.now(UTC)
    async with services.db.session() as s:
        await s.execute(
            insert(User), [{"id": base + i, "timezone": "UTC"} for i in range(n_alerts)]
        )
        for i in range(n_alerts):
            payload = {"label": f"key-{i}", "hint": "sk-…abcd", "provider": "deepseek",
                       "threshold": "5", "remaining": "1.00", "currency": "USD"}  # fmt: skip
            await enqueue(s, idem_key=f"bench:{i}", user_id=base + i, key_id=None,
                          kind=rules.LOW, payload=payload, now=now)  # fmt: skip
    providers = services.providers
    sender = Sender(services.outbox, app.bot, lambda item, now: render(item, now, providers))
    deadline = time.monotonic() + 60 + n_alerts / 10
    while time.monotonic() < deadline:
        await sender.run()
        counts = await services.outbox.counts()
        if not counts.get("pending"):
            break
        await asyncio.sleep(0.2)
    counts = await services.outbox.counts()
    label = (
        f"real outbox + Sender (send_rate={services.outbox.send_rate:g}/s, "
        f"concurrency={sender.concurrency}) through PTB"
    )
    return label, sender.delivered, int(counts.get("failed", 0)) + int(counts.get("pending", 0))


async def _direct_delivery(app: Any, n_alerts: int) -> tuple[str, int, int]:
    base = ALERT_USERS
    results = await asyncio.gather(
        *(
            app.bot.send_message(base + i, f"⚠️ Low balance: key {i} has 1.00 USD left")
            for i in range(n_alerts)
        ),
        return_exceptions=True,
    )
    errors = sum(isinstance(r, BaseException) for r in results)
    label = "PTB bot + AIORateLimiter, one message per chat (stand-in: no outbox yet)"
    return label, n_alerts - errors, errors


def alerts_phase(cfg: BenchConfig, n_alerts: int, send_rate: float | None = None) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        from bot.app import build_application, build_services, close_services

        settings = cfg.settings()
        services = await build_services(settings)
        tg = TgControl(cfg.telegram_api_url)
        app = build_application(settings, services)
        await app.initialize()  # no post_init: no scheduled jobs, the sender is driven here
        if send_rate and getattr(services, "outbox", None) is not None:
            services.outbox.send_rate = send_rate
        try:
            await tg.call("limits", enforce=True)
            await tg.call("reset")
            await tg.call("users", first=ALERT_USERS, count=n_alerts)  # chats that exist
            with _Meter() as m:
                if getattr(services, "outbox", None) is not None:
                    label, delivered, errors = await _outbox_delivery(app, services, n_alerts)
                else:
                    label, delivered, errors = await _direct_delivery(app, n_alerts)
            stats = await tg.call("stats")
        finally:
            await tg.call("limits", enforce=False)
            await app.shutdown()
            await tg.close()
            await close_services(services)
        sends = int(stats["sends"])
        span = (stats["last_send"] or 0) - (stats["first_send"] or 0)
        return {
            "method": label,
            "alerts": n_alerts,
            "delivered": sends,
            "sender_counted": delivered,
            "errors": errors,
            "distinct_chats": stats["distinct_chats"],
            "wall_s": round(m.wall, 2),
            "msgs_per_s": round(sends / m.wall, 2) if m.wall else 0.0,
            "msgs_per_s_first_to_last": round((sends - 1) / span, 2) if span > 0 else 0.0,
            "count_429": int(stats["count_429"]),
            "cpu_ms_per_msg": round(1000 * m.cpu / max(sends, 1), 3),
        }

    return asyncio.run(go())


# -- httpx transports -------------------------------------------------------------------------


def transport_phase(kind: str, url: str, requests: int, concurrency: int) -> dict[str, Any]:
    """`requests` GETs through `ProviderHttpClient` over the default httpx or aiohttp transport."""

    async def go() -> dict[str, Any]:
        import httpx

        from bot.billing.http import USER_AGENT, HttpClients, HttpOptions, ProviderHttpClient

        options = HttpOptions(connection_limit=max(concurrency, 100))
        clients: HttpClients | None = None
        raw: httpx.AsyncClient | None = None
        if kind == "aiohttp":
            clients = HttpClients(options)
            client = clients.trusted
        else:
            limits = httpx.Limits(max_connections=options.connection_limit)
            raw = httpx.AsyncClient(
                limits=limits, trust_env=False, timeout=30.0, headers={"User-Agent": USER_AGENT}
            )
            client = ProviderHttpClient(raw, options)
        sem = asyncio.Semaphore(concurrency)
        headers = {"Authorization": "Bearer sk-bench-transport"}
        statuses: dict[int, int] = {}

        async def one() -> None:
            async with sem:
                reply = await client.get(f"{url}/user/balance", headers=headers)
                json.loads(reply.body)
                statuses[reply.status] = statuses.get(reply.status, 0) + 1

        try:
            await asyncio.gather(*(one() for _ in range(concurrency)))  # warm the pool
            statuses.clear()
            with _Meter() as m:
                await asyncio.gather(*(one() for _ in range(requests)))
        finally:
            if clients is not None:
                await clients.aclose()
            if raw is not None:
                await raw.aclose()
        return {
            "requests": requests,
            "concurrency": concurrency,
            "ok": statuses.get(200, 0),
            "wall_s": round(m.wall, 3),
            "requests_per_s": round(requests / m.wall, 1),
            "cpu_ms_per_request": round(1000 * m.cpu / requests, 3),
        }

    return asyncio.run(go())


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- item 4 of issue 17: the idle footprint of `balance-bot run` --------------------------------


def _proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a live process, in MB (Linux /proc)."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    out[name] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


IDLE_USER = 7_000_000_001
IDLE_KEYS = 5  # the idle user's keys: 2 DeepSeek, 1 Moonshot, 2 relay (bench.seed.MIX order)


def idle_phase(cfg: BenchConfig, python: str, workdir: str, starts: int = 3,
               settle: float = 8.0) -> dict[str, Any]:  # fmt: skip
    """`python -m bot run` as a single user runs it: SQLite under ./data, polling, one user
    with IDLE_KEYS keys. Seconds from exec to the first getUpdates the fake Bot API sees,
    then RSS after `settle` idle seconds (the first sweep, 5 s after start, has checked the
    user's keys by then), then RSS after the user's /start was answered.

    Start 1 is a first start in an empty directory (creates the database and the key
    ring; no keys); the others restart on a database that holds the user and the keys."""
    import dataclasses
    import os
    import signal
    import subprocess
    from pathlib import Path

    from bot.crypto.masterkey import open_vault
    from bot.storage.db import Database

    fresh_dir = Path(workdir) / "fresh"
    used_dir = Path(workdir) / "used"
    for d in (fresh_dir / "data", used_dir / "data"):
        d.mkdir(parents=True, exist_ok=True)

    def url(d: Path) -> str:
        return f"sqlite+aiosqlite:///{d / 'data' / 'bot.db'}"

    async def prepare() -> None:
        seeded = dataclasses.replace(
            cfg, database_url=url(used_dir), data_dir=str(used_dir / "data")
        )
        db = Database(seeded.database_url)
        try:
            vault = await open_vault(seeded.settings(), db)
            await seed(db, vault, seeded, n_keys=IDLE_KEYS, n_users=1, balance_users=0)
        finally:
            await db.dispose()

    def env_for(d: Path) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.upper().startswith(("TELEGRAM_", "DATABASE_", "ENCRYPTION_", "PROVIDER"))
        }
        env.update(
            TELEGRAM_BOT_TOKEN=cfg.bot_token, TELEGRAM_API_URL=cfg.telegram_api_url,
            DATABASE_URL=url(d), DATA_DIR=str(d / "data"), ENCRYPTION_KEY=cfg.encryption_key,
            ALLOW_PRIVATE_BASE_URLS="true", PROVIDER_DEEPSEEK_BASE_URL=cfg.deepseek_url,
            PROVIDER_MOONSHOT_BASE_URL=cfg.moonshot_url, LOG_LEVEL="WARNING",
            PYTHONDONTWRITEBYTECODE="1",
        )  # fmt: skip
        return env

    def byte_compile() -> bool:
        # `pip install` byte-compiles the package it installs; an editable checkout only has
        # .pyc files if something imported it without PYTHONDONTWRITEBYTECODE. Compile the
        # bot's modules first, so every start (the first too) reads bytecode as an installed
        # bot does, whatever the tree's history (issue 17 item 4: 60-120 ms of a start).
        code = (
            "import bot, compileall, os; "
            "compileall.compile_dir(os.path.dirname(bot.__file__), quiet=2)"
        )
        done = subprocess.run(  # noqa: S603 - our own interpreter and code
            [python, "-c", code], cwd=workdir, capture_output=True, check=False
        )
        return done.returncode == 0

    async def go() -> dict[str, Any]:
        await prepare()
        compiled = byte_compile()
        tg = TgControl(cfg.telegram_api_url)
        runs: list[dict[str, Any]] = []
        try:
            for n in range(starts):
                d = fresh_dir if n == 0 else used_dir
                await tg.call("reset")
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.monotonic()
                proc = await asyncio.create_subprocess_exec(
                    python, "-m", "bot", "run", cwd=d, env=env_for(d),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                try:
                    first = None
                    while first is None and time.monotonic() - t0 < 120:
                        if proc.returncode is not None:
                            raise RuntimeError(f"the bot exited with {proc.returncode}")
                        first = await tg.call("first_call", method="getUpdates")
                        if first is None:
                            await asyncio.sleep(0.02)
                    if first is None:
                        raise RuntimeError("the bot never polled")
                    await asyncio.sleep(settle)
                    idle = _proc_status(proc.pid)
                    calls = await tg.call("first_call")
                    sent = await tg.call("message", user_id=IDLE_USER, text="/start")
                    got = await tg.call("events", chat_id=IDLE_USER, after=sent["t"], wait=20)
                    answered = bool(got["events"])
                    await asyncio.sleep(0.5)
                    after_start = _proc_status(proc.pid)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(proc.wait(), 30)
                    except TimeoutError:
                        proc.kill()
                        await proc.wait()
                used = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (used.ru_utime - before.ru_utime) + (used.ru_stime - before.ru_stime)
                runs.append({
                    "start": "first start, empty data dir" if n == 0
                    else f"restart, 1 user with {IDLE_KEYS} keys",
                    "seconds_to_polling": round(first - t0, 3),
                    "rss_idle_mb": round(idle.get("VmRSS", 0.0), 1),
                    "rss_after_start_command_mb": round(after_start.get("VmRSS", 0.0), 1),
                    "peak_rss_mb": round(after_start.get("VmHWM", 0.0), 1),
                    "start_answered": answered,
                    "cpu_s_whole_run": round(cpu, 3),
                    "first_call_s": {m: round(t - t0, 3) for m, t in calls.items()},
                })  # fmt: skip
        finally:
            await tg.close()
        restarts = runs[1:] or runs
        return {
            "method": "python -m bot run (SQLite, polling, fake Bot API, the bot's modules "
            "byte-compiled first as pip does); t = exec → first getUpdates; RSS after "
            f"{settle:g} s idle (first sweep done), then after a /start",
            "byte_compiled": compiled,
            "runs": runs,
            "seconds_to_polling": statistics.median(r["seconds_to_polling"] for r in restarts),
            "rss_idle_mb": statistics.median(r["rss_idle_mb"] for r in restarts),
            "first_start_seconds_to_polling": runs[0]["seconds_to_polling"],
        }

    return asyncio.run(go())


# -- issue 17 item 3: consecutive sweeps over a month of history ---------------------------------


async def _seed_history(services: Any, first_sweep_at: datetime, days: int) -> int:
    """Every key gets the readings a month of hourly sweeps leaves behind under the retention
    policy (bot/services/history.py): one per hour for the last two days, one per day
    before that, back to `days` days. Inserted in bulk; returns the row count."""
    from sqlalchemy import insert, select

    from bot.storage.models import ApiKey, BalanceSnapshot

    async with services.db.session() as s:
        key_ids = list((await s.scalars(select(ApiKey.id).order_by(ApiKey.id))).all())
    times = [first_sweep_at - timedelta(hours=h) for h in range(1, 49)]
    times += [first_sweep_at - timedelta(days=d, hours=1) for d in range(3, days + 1)]
    total = 0
    chunk: list[dict[str, Any]] = []
    for key_id in key_ids:
        for i, at in enumerate(times):
            chunk.append({"key_id": key_id, "taken_at": at, "kind": "balance",
                          "currency": "CNY", "remaining": f"{100 + i * 0.25:.2f}"})  # fmt: skip
        if len(chunk) >= 20_000:
            async with services.db.session() as s:
                await s.execute(insert(BalanceSnapshot), chunk)
            total += len(chunk)
            chunk = []
    if chunk:
        async with services.db.session() as s:
            await s.execute(insert(BalanceSnapshot), chunk)
        total += len(chunk)
    return total


async def _snapshot_rows(services: Any) -> int:
    from sqlalchemy import func, select

    from bot.storage.models import BalanceSnapshot

    async with services.db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(BalanceSnapshot)) or 0)


def creep_phase(cfg: BenchConfig, sweeps: int, history_days: int = 30) -> dict[str, Any]:
    """Sweeps one after another, each an hour after the previous one (simulated), over a
    database seeded with a month of readings per key: CPU per check and RSS per sweep
    should stay flat (pruning and history queries by index, not by scanning history)."""

    async def go() -> dict[str, Any]:
        from sqlalchemy import event

        from bot.app import build_services, close_services

        services = await build_services(cfg.settings())
        statements = [0]

        def count(*_: Any) -> None:
            statements[0] += 1

        runs: list[dict[str, Any]] = []
        try:
            sweep = services.sweep
            await sweep.ensure_rows()
            base = await _all_due_at(services)  # every key is due at each sweep
            with _Meter() as seeding:
                seeded = await _seed_history(services, base + sweep.interval, history_days)
            event.listen(services.db.engine.sync_engine, "before_cursor_execute", count)
            gc.collect()
            for n in range(sweeps):
                services.billing.clear_cache()
                statements[0] = 0
                with _Meter() as m:
                    stats = await sweep.run(base + (n + 1) * sweep.interval)
                gc.collect()
                figures = _run_figures(stats.checked, stats.checked - stats.lost_leases, m)
                figures["db_statements_per_check"] = round(statements[0] / max(stats.checked, 1), 3)
                figures["snapshot_rows_after"] = await _snapshot_rows(services)
                runs.append(figures)
        finally:
            await close_services(services)
        cpu = [r["cpu_ms_per_check"] or 1e-9 for r in runs]
        rss = [r["rss_mb"] or 1e-9 for r in runs]
        later = cpu[1:] or cpu  # sweep 1 also runs the daily whole-table prune
        return {
            "method": f"AlertSweep.run × {sweeps}, one simulated hour apart, after seeding "
            f"{history_days} days of retained readings per key (48 hourly + daily)",
            "history_rows_seeded": seeded,
            "seed_seconds": round(seeding.wall, 1),
            "runs": runs,
            "cpu_ms_per_check_spread_pct": round(100 * (max(cpu) / min(cpu) - 1), 1),
            "cpu_ms_per_check_spread_after_first_pct": round(
                100 * (max(later) / min(later) - 1), 1
            ),
            "cpu_ms_per_check_last_vs_second_pct": round(100 * (later[-1] / later[0] - 1), 1),
            "rss_spread_pct": round(100 * (max(rss) / min(rss) - 1), 1),
        }

    return asyncio.run(go())


# -- issue 17 item 2: replicas sharing one sweep (PostgreSQL) ------------------------------------


def _replica(
    cfg: BenchConfig, at_iso: str, start_at: float, host_limit: int | None
) -> dict[str, Any]:
    """One replica process: build the services, wait for the common start, run the sweep."""

    async def go() -> dict[str, Any]:
        from bot.app import build_services, close_services

        services = await build_services(cfg.settings())
        if host_limit:
            services.billing.trusted_host_limit = host_limit
        try:
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            t0, cpu0 = time.monotonic(), time.process_time()
            stats = await services.sweep.run(datetime.fromisoformat(at_iso))
            t1, cpu1 = time.monotonic(), time.process_time()
        finally:
            await close_services(services)
        return {"checked": stats.checked, "lost_leases": stats.lost_leases,
                "batches": stats.batches, "start": t0, "end": t1, "cpu_s": cpu1 - cpu0}  # fmt: skip

    return asyncio.run(go())


def _machine_cpu() -> tuple[float, float] | None:
    """(busy, total) CPU jiffies of the whole machine from /proc/stat; None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _busy_pct(
    before: tuple[float, float] | None, after: tuple[float, float] | None
) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(100 * (after[0] - before[0]) / (after[1] - before[1]), 1)


def replicas_phase(
    cfg: BenchConfig, counts: list[int], host_limit: int | None = None
) -> dict[str, Any]:
    """1, 2, 3… replica processes share one sweep of every key through the database's
    leases (PostgreSQL). Total checks/s from the first start to the last finish, CPU per
    check over all replicas, and whether any key was checked twice in the interval."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    async def prepare() -> tuple[int, datetime]:
        from sqlalchemy import func, select

        from bot.app import build_services, close_services
        from bot.storage.models import ApiKey

        services = await build_services(cfg.settings())
        try:
            await services.sweep.ensure_rows()
            async with services.db.session() as s:
                n = int(await s.scalar(select(func.count()).select_from(ApiKey)) or 0)
            return n, await _all_due_at(services)
        finally:
            await close_services(services)

    out: list[dict[str, Any]] = []
    for n in counts:
        keys, at = asyncio.run(prepare())  # every key due again
        start_at = time.monotonic() + 15.0  # after every replica has started up
        with ProcessPoolExecutor(max_workers=n, mp_context=get_context("spawn")) as pool:
            futures = [
                pool.submit(_replica, cfg, at.isoformat(), start_at, host_limit) for _ in range(n)
            ]
            # The whole machine's CPU while they sweep (replicas, PostgreSQL, fake providers,
            # and whatever else runs: measure on a quiet machine):
            # when one replica already keeps the cores busy, more cannot go faster here.
            time.sleep(max(0.0, start_at - time.monotonic()))
            machine0 = _machine_cpu()
            parts = [f.result() for f in futures]
            machine1 = _machine_cpu()
        checked = sum(p["checked"] for p in parts)
        wall = max(p["end"] for p in parts) - min(p["start"] for p in parts)
        cpu = sum(p["cpu_s"] for p in parts)
        out.append({
            "replicas": n,
            "keys": keys,
            "checked": checked,
            "checked_twice": max(0, checked - keys),
            "per_replica": [p["checked"] for p in parts],
            "wall_s": round(wall, 2),
            "checks_per_s": round(checked / wall, 1) if wall else 0.0,
            "cpu_ms_per_check": round(1000 * cpu / checked, 3) if checked else 0.0,
            "machine_busy_pct": _busy_pct(machine0, machine1),
        })  # fmt: skip
    base = out[0]["checks_per_s"] if out and out[0]["checks_per_s"] else None
    for row in out:
        row["speedup"] = round(row["checks_per_s"] / base, 2) if base else None
    busy1 = out[0]["machine_busy_pct"] if out else None
    # What this machine allows at most: all cores busy, at one replica's cost per check.
    ceiling = round(100 / busy1, 2) if busy1 else None
    return {
        "method": "N processes each running AlertSweep.run on one PostgreSQL database "
        "(leases split the keys); per-host limit " + (f"{host_limit}" if host_limit else "default"),
        "runs": out,
        "speedup_ceiling_of_this_machine": ceiling,
    }
