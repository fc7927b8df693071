"""`balance-bot bench` / `python -m bench`: throughput, latency and memory in one run.

Starts a fake provider server and a fake Bot API server (each in its own process, on
127.0.0.1), seeds a fresh database with real encrypted keys, then measures, each phase
in a fresh process: the alert sweep against the one-key-at-a-time baseline, /balance
latency through the real Application, alert delivery under Telegram's flood limits,
RSS across sweeps, and httpx's default transport against the aiohttp one. Prints a
table and writes JSON (`--json`) so runs on different machines can be compared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PHASES = (
    "sweep", "baseline", "balance", "busy", "alerts", "memory", "transport", "chart", "idle",
    "creep", "replicas",
)  # fmt: skip


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="balance-bot bench", description=__doc__.split("\n")[0])
    p.add_argument("--keys", type=int, default=None, help="stored keys (default 100000)")
    p.add_argument("--users", type=int, default=None, help="users owning them (default keys/10)")
    p.add_argument("--latency-ms", type=float, default=100.0, help="provider latency (100)")
    p.add_argument("--database-url", default=None, help="PostgreSQL server URL (default SQLite)")
    p.add_argument("--baseline-keys", type=int, default=None, help="keys for the baseline (50)")
    p.add_argument("--relay-sites", type=int, default=100, help="distinct relay hosts (100)")
    p.add_argument("--sweeps", type=int, default=3, help="sweeps for the memory check (3)")
    p.add_argument(
        "--sweep-batch",
        type=int,
        default=None,
        help="override AlertSweep.batch_size (experiment; default: the app's)",
    )
    p.add_argument(
        "--host-limit",
        type=int,
        default=None,
        help="CHECKS_PER_HOST for this run: concurrent checks per provider host "
        "(default: the setting's 50)",
    )
    p.add_argument(
        "--send-rate",
        type=float,
        default=None,
        help="override OutboxService.send_rate (experiment; default: the app's)",
    )
    p.add_argument("--no-core", action="store_true",
                   help="skip the fetch_many-only pass before the real sweep")  # fmt: skip
    p.add_argument("--alerts", type=int, default=None, help="alerts to deliver (1000)")
    p.add_argument("--balance-runs", type=int, default=None, help="/balance runs (40)")
    p.add_argument("--transport-requests", type=int, default=None, help="per transport (2000)")
    p.add_argument("--transport-concurrency", type=int, default=300)
    p.add_argument("--replicas", type=int, default=3,
                   help="PostgreSQL only: sweeps by 1..N replica processes (3)")  # fmt: skip
    p.add_argument("--replica-host-limit", type=int, default=1000,
                   help="CHECKS_PER_HOST in the replicas phase, so politeness is not "
                   "what is measured (1000)")  # fmt: skip
    p.add_argument("--creep-sweeps", type=int, default=10,
                   help="consecutive sweeps over a seeded month of history (10)")  # fmt: skip
    p.add_argument("--idle-starts", type=int, default=3,
                   help="starts of `balance-bot run` for the idle footprint (3)")  # fmt: skip
    p.add_argument("--idle-settle", type=float, default=8.0,
                   help="idle seconds before RSS is read (8; the sweep runs at 5 s)")  # fmt: skip
    p.add_argument("--idle-python", default=None, metavar="PATH",
                   help="interpreter of the bot in the idle phase, e.g. a venv with only "
                   "`pip install -c constraints.txt .` (default: this one)")  # fmt: skip
    p.add_argument("--skip", nargs="*", default=[], choices=PHASES, metavar="PHASE",
                   help=f"phases to leave out: {', '.join(PHASES)}")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="600 keys, 2 sweeps (about 1 min)")
    p.add_argument("--profile", default=None, metavar="PATH",
                   help="pyinstrument text profile of the first sweep to PATH")  # fmt: skip
    p.add_argument("--json", default="bench-results.json", metavar="PATH")
    rest = list(argv)
    if rest[:1] == ["--"]:  # `balance-bot bench -- --keys N`: argparse keeps the separator
        rest = rest[1:]
    args = p.parse_args(rest)
    quick = args.quick
    defaults = {
        "keys": 600 if quick else 100_000,
        "baseline_keys": 10 if quick else 50,
        "alerts": 150 if quick else 1_000,
        "balance_runs": 15 if quick else 40,
        "transport_requests": 1_000 if quick else 2_000,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if quick and args.sweeps == 3:
        args.sweeps = 2
    if args.users is None:
        args.users = max(1, args.keys // 10)
    if args.keys < 10 or args.relay_sites < 1 or args.sweeps < 1:
        p.error("--keys must be >= 10, --relay-sites and --sweeps >= 1")
    return args


# -- machine ----------------------------------------------------------------------------------


def machine(database: str) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in (
            Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines()
        ):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines()
            if line.startswith("MemTotal")
        )
        mem_gb: float | None = round(mem_kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        mem_gb = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "database": database,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


#: The distributions whose version moves the figures (the HTTP stack, the database drivers and
#: ORM, the Telegram library, the crypto and settings layers). Pinned in constraints.txt.
DEPENDENCIES = (
    "python-telegram-bot", "httpx", "httpx-aiohttp", "aiohttp", "SQLAlchemy", "aiosqlite",
    "asyncpg", "greenlet", "alembic", "cryptography", "pydantic", "pydantic-core",
    "pydantic-settings", "uvicorn", "starlette",
)  # fmt: skip


def versions() -> dict[str, str | None]:
    """Resolved versions of Python and of DEPENDENCIES (None: not installed), so two runs can
    be told apart by what was installed, not only by the machine."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in DEPENDENCIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


# -- databases --------------------------------------------------------------------------------


async def _pg(url: str, sql: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host, port=u.port or 5432, user=u.username, password=u.password,
        database=u.database or "postgres",
    )  # fmt: skip
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def fresh_database(url: str | None, tmp: Path) -> tuple[str, str, str | None]:
    """(SQLAlchemy URL, description, PostgreSQL database to drop afterwards)."""
    if url is None:
        return f"sqlite+aiosqlite:///{tmp / 'bench.db'}", "SQLite (aiosqlite, WAL)", None
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if not u.drivername.startswith("postgresql"):
        raise SystemExit("--database-url: only postgresql+asyncpg URLs are supported")
    name = f"bench_{secrets.token_hex(4)}"
    asyncio.run(_pg(url, f'CREATE DATABASE "{name}"'))
    fresh = u.set(drivername="postgresql+asyncpg", database=name)
    return fresh.render_as_string(hide_password=False), "PostgreSQL (asyncpg)", name


def drop_database(url: str, name: str) -> None:
    asyncio.run(_pg(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- report -----------------------------------------------------------------------------------


def targets(res: dict[str, Any], latency_ms: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, op: str, target: float, unit: str) -> None:
        if value is None:
            return
        met = value >= target if op == ">=" else value <= target
        out.append({"metric": name, "value": value, "target": f"{op} {target:g}{unit}", "met": met})

    sweep = res.get("sweep")
    if sweep:
        first = sweep["runs"][0]
        add("sweep key checks/s", first["checks_per_s"], ">=", 1000, "")
        add("sweep CPU ms per check", first["cpu_ms_per_check"], "<=", 1.0, " ms")
        add("sweep RSS after first sweep, MB", first["rss_mb"], "<=", 150, " MB")
        if len(sweep["runs"]) > 1:
            growth = sweep["runs"][-1]["rss_mb"] - first["rss_mb"]
            add("RSS growth first→last sweep, MB", round(growth, 1), "<=", 10, " MB")
    if res.get("sweep_vs_baseline"):
        add("sweep ÷ sequential baseline", res["sweep_vs_baseline"], ">=", 100, "×")
    bal = res.get("balance")
    if bal and bal.get("runs"):
        add("/balance p95 (10 keys), ms", bal["p95_ms"], "<=", latency_ms + 100, " ms")
    reps = res.get("replicas")
    if reps and len(reps["runs"]) > 1:
        add("two replicas ÷ one, checks/s", reps["runs"][1]["speedup"], ">=", 1.7, "×")
        twice = sum(r["checked_twice"] for r in reps["runs"])
        add("keys checked twice in one interval", twice, "<=", 0, "")
    creep = res.get("creep")
    if creep:
        spread = creep["cpu_ms_per_check_spread_after_first_pct"]
        add("CPU per check spread over sweeps 2..n, %", spread, "<=", 10, " %")
        add("RSS spread over the sweeps, %", creep["rss_spread_pct"], "<=", 10, " %")
    busy = res.get("busy")
    if busy and busy.get("runs"):
        add("/balance p95 during a full sweep, ms", busy["p95_ms"], "<=", latency_ms + 150, " ms")
    alerts = res.get("alerts")
    if alerts:
        add("alert delivery, msg/s", alerts["msgs_per_s"], ">=", 27, "")
        add("alert delivery, 429s", alerts["count_429"], "<=", 0, "")
    idle = res.get("idle")
    if idle:
        add("idle RSS of balance-bot run, MB", idle["rss_idle_mb"], "<=", 80, " MB")
        add("balance-bot run: start → polling, s", idle["seconds_to_polling"], "<=", 1.5, " s")
    return out


def render(res: dict[str, Any]) -> str:
    lines: list[str] = []
    m = res["machine"]
    lines.append(
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['database']}; "
        f"provider latency {res['config']['latency_ms']:g} ms"
    )
    vers = res.get("versions") or {}
    lines.append(
        "versions: " + ", ".join(f"{k} {v}" for k, v in vers.items() if v and k != "python")
    )
    rows: list[tuple[str, str]] = []
    sweep = res.get("sweep")
    if sweep:
        rows.append(("sweep method", sweep["method"]))
        core = sweep.get("core")
        if core:
            rows.append(
                (
                    f"sweep core only (fetch_many, no DB writes): {core['checks']} checks",
                    f"{core['wall_s']:.2f} s, {core['checks_per_s']:.0f} checks/s, "
                    f"{core['cpu_ms_per_check']:.3f} ms CPU/check",
                )
            )
        for i, run in enumerate(sweep["runs"], 1):
            rows.append(
                (
                    f"sweep {i}: {run['checks']} checks ({run['ok']} ok)",
                    f"{run['wall_s']:.2f} s, {run['checks_per_s']:.0f} checks/s, "
                    f"{run['cpu_ms_per_check']:.3f} ms CPU/check, RSS {run['rss_mb']:.0f} MB, "
                    f"{run.get('db_statements_per_check', 0):.1f} SQL statements/check",
                )
            )
        rows.append(("sweep peak RSS", f"{sweep['peak_rss_mb']:.0f} MB"))
    base = res.get("baseline")
    if base:
        rows.append(
            (
                f"baseline: {base['checks']} keys one at a time",
                f"{base['wall_s']:.2f} s, {base['checks_per_s']:.2f} checks/s, "
                f"{base['cpu_ms_per_check']:.2f} ms CPU/check",
            )
        )
    if res.get("sweep_vs_baseline"):
        rows.append(("sweep ÷ baseline", f"{res['sweep_vs_baseline']:.0f}×"))
    if res.get("core_vs_baseline"):
        rows.append(("sweep core ÷ baseline", f"{res['core_vs_baseline']:.0f}×"))
    bal = res.get("balance")
    if bal and bal.get("runs"):
        rows.append(
            (
                f"/balance, 10 keys, {bal['runs']} runs",
                f"p50 {bal['p50_ms']:.0f} ms, p95 {bal['p95_ms']:.0f} ms "
                f"(provider latency + {bal['p50_overhead_ms']:.0f} / "
                f"{bal['p95_overhead_ms']:.0f} ms)",
            )
        )
    reps = res.get("replicas")
    if reps:
        for r in reps["runs"]:
            rows.append(
                (
                    f"{r['replicas']} replica(s) sharing a sweep of {r['keys']} keys",
                    f"{r['checks_per_s']:.0f} checks/s ({r['speedup']}×), "
                    f"{r['cpu_ms_per_check']:.2f} ms CPU/check, "
                    f"{r['checked_twice']} checked twice, split {r['per_replica']}, "
                    f"machine CPU busy {r.get('machine_busy_pct')} %",
                )
            )
        if reps.get("speedup_ceiling_of_this_machine"):
            rows.append(
                (
                    "replicas: most this machine allows",
                    f"{reps['speedup_ceiling_of_this_machine']}× "
                    "(all cores busy at one replica's cost per check)",
                )
            )
    creep = res.get("creep")
    if creep:
        cpu = " / ".join(f"{r['cpu_ms_per_check']:.2f}" for r in creep["runs"])
        rss = " / ".join(f"{r['rss_mb']:.0f}" for r in creep["runs"])
        rows.append(
            (
                f"{len(creep['runs'])} sweeps over {creep['history_rows_seeded']} seeded readings",
                f"CPU ms/check {cpu}; RSS MB {rss}; spread after sweep 1 "
                f"{creep['cpu_ms_per_check_spread_after_first_pct']:.1f} % CPU, "
                f"{creep['rss_spread_pct']:.1f} % RSS",
            )
        )
    busy = res.get("busy")
    if busy and busy.get("runs"):
        rows.append(
            (
                f"/balance during a sweep of {busy['sweep_checks']} keys, {busy['runs']} runs",
                f"p50 {busy['p50_ms']:.0f} ms, p95 {busy['p95_ms']:.0f} ms (provider latency + "
                f"{busy['p50_overhead_ms']:.0f} / {busy['p95_overhead_ms']:.0f} ms); sweep "
                f"{busy['sweep_checks_per_s']:.0f} checks/s meanwhile",
            )
        )
    alerts = res.get("alerts")
    if alerts:
        rows.append(("alert delivery method", alerts["method"]))
        rows.append(
            (
                f"alert delivery: {alerts['delivered']}/{alerts['alerts']} to distinct chats",
                f"{alerts['msgs_per_s']:.1f} msg/s, {alerts['count_429']} × 429, "
                f"{alerts['errors']} errors",
            )
        )
    chart = res.get("chart")
    if chart:
        drawn, idle = chart["drawn"], chart["idle"]
        rows.append(
            (
                f"/history chart, 90 days ({drawn['readings']} readings, 3 keys)",
                f"{drawn['cold_cpu_ms']:.0f} ms CPU first (imports matplotlib), "
                f"{drawn['warm_cpu_ms']:.0f} ms CPU warm; PNG {drawn['png_bytes'] // 1024} KiB",
            )
        )
        rows.append(
            (
                "peak RSS without / with a chart drawn",
                f"{idle['peak_rss_mb']:.0f} MB / {drawn['peak_rss_mb']:.0f} MB "
                f"(matplotlib loaded: {idle['matplotlib_loaded']} / {drawn['matplotlib_loaded']})",
            )
        )
    trans = res.get("transports")
    if trans:
        for name, t in trans.items():
            rows.append(
                (
                    f"transport {name}: {t['requests']} GETs at {t['concurrency']} concurrent",
                    f"{t['requests_per_s']:.0f} req/s, {t['cpu_ms_per_request']:.3f} ms CPU/req",
                )
            )
    idle = res.get("idle")
    if idle:
        for run in idle["runs"]:
            rows.append(
                (
                    f"balance-bot run, {run['start']}",
                    f"polling after {run['seconds_to_polling']:.2f} s, RSS idle "
                    f"{run['rss_idle_mb']:.0f} MB, after a /start "
                    f"{run['rss_after_start_command_mb']:.0f} MB, "
                    f"CPU {run['cpu_s_whole_run']:.2f} s",
                )
            )
    width = max(len(r[0]) for r in rows) if rows else 10
    lines += [f"  {a.ljust(width)}  {b}" for a, b in rows]
    tg = res.get("targets") or []
    if tg:
        lines.append("targets:")
        w2 = max(len(t["metric"]) for t in tg)
        for t in tg:
            mark = "ok  " if t["met"] else "MISS"
            lines.append(f"  [{mark}] {t['metric'].ljust(w2)}  {t['value']!s:>10}  {t['target']}")
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from bench.phases import (
        alerts_phase,
        balance_phase,
        baseline_phase,
        busy_phase,
        creep_phase,
        idle_phase,
        now_iso,
        replicas_phase,
        run_isolated,
        seed_phase,
        sweep_phase,
        transport_phase,
    )
    from bench.seed import BenchConfig, new_encryption_key
    from bench.servers import ProviderServer, TelegramServer

    skip = set(args.skip)
    latency = args.latency_ms / 1000
    started = time.perf_counter()
    res: dict[str, Any] = {"started_at": now_iso()}
    with tempfile.TemporaryDirectory(prefix="balance-bench-") as tmpdir:
        tmp = Path(tmpdir)
        db_url, db_desc, pg_name = fresh_database(args.database_url, tmp)
        res["machine"] = machine(db_desc)
        res["versions"] = versions()
        res["config"] = {
            "keys": args.keys, "users": args.users, "latency_ms": args.latency_ms,
            "relay_sites": args.relay_sites, "baseline_keys": args.baseline_keys,
            "sweeps": args.sweeps, "alerts": args.alerts, "balance_runs": args.balance_runs,
            "quick": args.quick, "skip": sorted(skip), "sweep_batch": args.sweep_batch,
            "host_limit": args.host_limit, "idle_starts": args.idle_starts,
            "creep_sweeps": args.creep_sweeps, "replicas": args.replicas,
            "replica_host_limit": args.replica_host_limit,
            "send_rate": args.send_rate,
            "key_mix": "40% deepseek, 20% moonshot (1 request), 40% relay (3 requests)",
        }  # fmt: skip
        providers = ProviderServer(latency, args.relay_sites)
        tg = TelegramServer()
        try:
            cfg = BenchConfig(
                database_url=db_url,
                data_dir=str(tmp / "data"),
                encryption_key=new_encryption_key(),
                deepseek_url=providers.deepseek_url,
                moonshot_url=providers.moonshot_url,
                relay_urls=tuple(providers.relay_urls),
                telegram_api_url=tg.api_root,
                bot_token=tg.token,
                latency=latency,
            )
            warm = 2
            balance_users = 0 if {"balance", "busy"} <= skip else args.balance_runs + warm
            print(f"seeding {args.keys} keys for {args.users} users…", file=sys.stderr)
            res["seed"] = run_isolated(seed_phase, cfg, args.keys, args.users, balance_users)
            if not {"sweep", "memory"} <= skip:
                sweeps = 1 if "memory" in skip else args.sweeps
                print(f"sweep × {sweeps}…", file=sys.stderr)
                res["sweep"] = run_isolated(
                    sweep_phase,
                    cfg,
                    sweeps,
                    args.profile,
                    args.sweep_batch,
                    not args.no_core,
                    args.host_limit,
                )
                if "memory" not in skip:
                    runs = res["sweep"]["runs"]
                    res["memory"] = {
                        "keys": res["seed"]["keys"],
                        "rss_mb_after_each_sweep": [r["rss_mb"] for r in runs],
                        "growth_mb": round(runs[-1]["rss_mb"] - runs[0]["rss_mb"], 1),
                        "peak_rss_mb": res["sweep"]["peak_rss_mb"],
                    }
            if "baseline" not in skip:
                print(f"baseline × {args.baseline_keys} keys…", file=sys.stderr)
                res["baseline"] = run_isolated(baseline_phase, cfg, args.baseline_keys)
                if res.get("sweep") and res["baseline"]["checks_per_s"]:
                    rate = res["sweep"]["runs"][0]["checks_per_s"]
                    res["sweep_vs_baseline"] = round(rate / res["baseline"]["checks_per_s"], 1)
                    core = res["sweep"].get("core")
                    if core:
                        ratio = core["checks_per_s"] / res["baseline"]["checks_per_s"]
                        res["core_vs_baseline"] = round(ratio, 1)
            if "balance" not in skip:
                print("/balance latency…", file=sys.stderr)
                users = res["seed"]["balance_users"]
                res["balance"] = run_isolated(balance_phase, cfg, users, warm)
            if "replicas" not in skip and args.database_url:
                counts = list(range(1, args.replicas + 1))
                print(f"replicas {counts} sharing one sweep…", file=sys.stderr)
                res["replicas"] = run_isolated(replicas_phase, cfg, counts, args.replica_host_limit)
            if "creep" not in skip:
                print(f"{args.creep_sweeps} sweeps over a month of history…", file=sys.stderr)
                res["creep"] = run_isolated(creep_phase, cfg, args.creep_sweeps)
            if "busy" not in skip:
                print("/balance while a full sweep runs…", file=sys.stderr)
                users = res["seed"]["balance_users"]
                res["busy"] = run_isolated(busy_phase, cfg, users, warm, args.host_limit)
            if "alerts" not in skip:
                print(f"alert delivery × {args.alerts}…", file=sys.stderr)
                res["alerts"] = run_isolated(alerts_phase, cfg, args.alerts, args.send_rate)
            if "transport" not in skip:
                print("httpx transports…", file=sys.stderr)
                res["transports"] = {
                    name: run_isolated(
                        transport_phase,
                        name,
                        providers.deepseek_url,
                        args.transport_requests,
                        args.transport_concurrency,
                    )
                    for name in ("httpx-default", "aiohttp")
                }
            if "chart" not in skip:
                from bench.chart import chart_phase

                print("/history chart…", file=sys.stderr)
                res["chart"] = {
                    "idle": run_isolated(chart_phase, False),
                    "drawn": run_isolated(chart_phase, True),
                }
            if "idle" not in skip:
                print("idle footprint of `balance-bot run`…", file=sys.stderr)
                res["idle"] = run_isolated(
                    idle_phase, cfg, args.idle_python or sys.executable, str(tmp / "idle"),
                    args.idle_starts, args.idle_settle,
                )  # fmt: skip
            res["provider_server"] = providers.stats()
        finally:
            providers.stop()
            tg.stop()
            if pg_name is not None and args.database_url:
                drop_database(args.database_url, pg_name)
    res["targets"] = targets(res, args.latency_ms)
    res["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")
    print(render(res))
    print(f"({res['seconds']} s; JSON in {args.json})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
