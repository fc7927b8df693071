"""The /history chart phase: CPU time of one 90-day chart, and peak RSS with and without one.

Each measurement runs in a fresh process (bench.phases.run_isolated): `chart_phase(False)`
loads the bot's modules and reads a seeded history but draws nothing (matplotlib is never
imported: bot/charts.py imports it on the first chart), `chart_phase(True)` does the same
and then draws the chart, first cold (import matplotlib, register the CJK font) and then
warm. The seeded data — three keys, 90 days of readings (every 15 minutes for the last two
days, daily before), a top-up, an alert threshold — also makes the README's example image:

    python -m bench.chart docs/history-chart.png
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

WARM_RUNS = 5


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def seeded_chart(db_dir: str, lang: str = "en") -> tuple[Any, str, int]:
    """(Chart, caption, readings): the real HistoryService and /history chart builder over a
    seeded SQLite database."""
    from sqlalchemy import insert

    from bot.alerts.rules import threshold_amount
    from bot.handlers import format as fmt
    from bot.handlers.history import balance_chart
    from bot.services.history import HistoryService, KeyInfo
    from bot.storage import migrate
    from bot.storage.db import Database
    from bot.storage.models import ApiKey, BalanceSnapshot, User

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    db = Database(f"sqlite+aiosqlite:///{db_dir}/chart.db", clock=lambda: now)
    try:
        await migrate.upgrade(db)
        keys = [KeyInfo("k1", "main", "deepseek"), KeyInfo("k2", "备用", "siliconflow"),
                KeyInfo("k3", "batch-jobs", "moonshot")]  # fmt: skip
        rows: list[dict[str, Any]] = []
        plans = ((Decimal(420), Decimal("3.1")), (Decimal(330), Decimal("2.5")),
                 (Decimal(240), Decimal("1.2")))  # fmt: skip
        for n, (key, (start, burn)) in enumerate(zip(keys, plans, strict=True)):
            times = [now - timedelta(days=d, hours=2) for d in range(90, 2, -1)]
            t = now - timedelta(days=2)
            while t <= now:
                times.append(t)
                t += timedelta(minutes=15)
            for at in times:
                days = Decimal((at - times[0]).total_seconds()) / 86400
                level = start - burn * days
                if n == 0 and at >= now - timedelta(days=35):
                    level += 300  # a top-up five weeks ago
                remaining = str(round(max(level, 0), 2))
                rows.append({"key_id": key.id, "taken_at": at, "kind": "balance",
                             "currency": "CNY", "remaining": remaining})  # fmt: skip
        async with db.session() as s:
            await s.execute(insert(User), [{"id": 1, "timezone": "Asia/Shanghai"}])
            await s.execute(
                insert(ApiKey),
                [{"id": k.id, "owner_id": 1, "label": k.label, "provider": k.provider,
                  "ciphertext": b"-", "kid": "-", "hint": "-", "fingerprint": k.id}
                 for k in keys],
            )  # fmt: skip
            await s.execute(insert(BalanceSnapshot), rows)
        history = await HistoryService(db).history(
            1,
            keys,
            90,
            interval=timedelta(minutes=15),
            thresholds={"k1": ["100"]},
            threshold_amount=threshold_amount,
            now=now,
        )
    finally:
        await db.dispose()
    view = fmt.View.make(lang, "Asia/Shanghai", now, {})  # balance charts name no provider
    [group] = history.groups().values()
    chart, caption = balance_chart(group, view, 90, "Asia/Shanghai")
    return chart, caption, len(rows)


def chart_phase(draw: bool) -> dict[str, Any]:
    """Run in a fresh process: load, read the history, and (if `draw`) render the chart."""
    import bot.app  # noqa: F401 - the modules a running bot has loaded

    with tempfile.TemporaryDirectory(prefix="balance-chart-") as tmp:
        chart, _, readings = asyncio.run(seeded_chart(tmp))
    out: dict[str, Any] = {"draw": draw, "readings": readings}
    out["rss_before_mb"] = round(_peak_rss_mb(), 1)
    if draw:
        from bot.charts import render_png

        cpu = time.process_time()
        png = render_png(chart)
        out["cold_cpu_ms"] = round((time.process_time() - cpu) * 1000, 1)
        runs = []
        for _ in range(WARM_RUNS):
            cpu = time.process_time()
            png = render_png(chart)
            runs.append((time.process_time() - cpu) * 1000)
        out["warm_cpu_ms"] = round(sorted(runs)[len(runs) // 2], 1)
        out["png_bytes"] = len(png)
    out["matplotlib_loaded"] = "matplotlib" in sys.modules
    out["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return out


def write_example(path: str, lang: str = "en") -> str:
    from bot.charts import render_png

    with tempfile.TemporaryDirectory(prefix="balance-chart-") as tmp:
        chart, caption, _ = asyncio.run(seeded_chart(tmp, lang))
    Path(path).write_bytes(render_png(chart))
    return caption


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "docs/history-chart.png"
    print(write_example(target))
    print(f"wrote {target}")
