"""The benchmark still runs end to end in its tiniest mode and writes the JSON it promises.

No timing assertions: this only guards the command against bit rot (numbers exist and are
positive). It runs `python -m bench` as a subprocess, as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TINY = [
    "--keys", "200", "--users", "20", "--latency-ms", "20", "--baseline-keys", "5",
    "--relay-sites", "5", "--sweeps", "1", "--alerts", "30", "--balance-runs", "3",
    "--transport-requests", "100", "--transport-concurrency", "50", "--skip", "memory", "chart",
    "--idle-starts", "2", "--idle-settle", "0.5", "--creep-sweeps", "2",
]  # fmt: skip


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and value > 0


def test_bench_tiny_run_writes_expected_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    # The benchmark is not installed with the package: it runs from the source tree.
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": path}
    for name in list(env):
        if name.startswith(("TELEGRAM_", "DATABASE_URL", "ENCRYPTION_KEY", "PROVIDER_")):
            env.pop(name)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *TINY, "--json", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "targets:" in proc.stdout

    res = json.loads(out.read_text())
    assert {"machine", "config", "seed", "sweep", "baseline", "balance", "alerts"} <= res.keys()
    assert {"transports", "targets", "sweep_vs_baseline"} <= res.keys()
    assert "memory" not in res  # skipped
    assert res["machine"]["cores"] >= 1 and res["machine"]["python"]
    vers = res["versions"]  # what was installed, so runs can be compared (issue 17 item 0)
    for name in ("python", "python-telegram-bot", "httpx", "aiohttp", "SQLAlchemy", "aiosqlite"):
        assert vers[name], name
    assert {"asyncpg", "cryptography", "pydantic", "httpx-aiohttp"} <= vers.keys()

    run = res["sweep"]["runs"][0]
    assert run["checks"] >= 200 and run["ok"] > 0
    for name in ("wall_s", "cpu_s", "checks_per_s", "cpu_ms_per_check", "rss_mb"):
        assert _positive(run[name]), name
    assert _positive(res["sweep"]["peak_rss_mb"])

    base = res["baseline"]
    assert base["checks"] == 5 and base["ok"] == 5
    assert _positive(base["checks_per_s"]) and _positive(base["cpu_ms_per_check"])
    assert _positive(res["sweep_vs_baseline"])

    bal = res["balance"]
    assert bal["runs"] == 3 and bal["failures"] == 0
    assert _positive(bal["p50_ms"]) and bal["p95_ms"] >= bal["p50_ms"]

    alerts = res["alerts"]
    assert alerts["delivered"] == 30 and alerts["distinct_chats"] == 30
    assert _positive(alerts["msgs_per_s"]) and alerts["count_429"] >= 0

    for name in ("httpx-default", "aiohttp"):
        t = res["transports"][name]
        assert t["ok"] == 100
        assert _positive(t["requests_per_s"]) and _positive(t["cpu_ms_per_request"])

    busy = res["busy"]  # /balance beside a full sweep (issue 17 item 1): the sweep ran
    assert busy["sweep_checks"] >= 200 and busy["failures"] == 0

    creep = res["creep"]  # consecutive sweeps over seeded history (issue 17 item 3)
    assert len(creep["runs"]) == 2 and creep["history_rows_seeded"] > 0
    for run in creep["runs"]:
        assert run["checks"] >= 200 and _positive(run["cpu_ms_per_check"])
        assert run["snapshot_rows_after"] > 0
    assert "cpu_ms_per_check_spread_after_first_pct" in creep

    idle = res["idle"]  # `balance-bot run`: first start, then a restart (issue 17 item 4)
    assert len(idle["runs"]) == 2
    for run in idle["runs"]:
        assert _positive(run["seconds_to_polling"]) and _positive(run["rss_idle_mb"])
        assert run["start_answered"]
    assert _positive(idle["seconds_to_polling"]) and _positive(idle["rss_idle_mb"])

    assert all({"metric", "value", "target", "met"} <= t.keys() for t in res["targets"])
    text = out.read_text() + proc.stdout + proc.stderr
    assert "sk-bench" not in text  # never a key in the output
