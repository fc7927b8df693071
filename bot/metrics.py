"""Prometheus metrics, served at GET /metrics in webhook mode.

Module-level metrics on a private registry: services record into them through small
functions, so nothing below the handlers depends on prometheus_client's API.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

CHECKS = Counter(
    "balancebot_checks_total",
    "Balance checks by provider and outcome (ok or an error kind)",
    ["provider", "outcome"],
    registry=REGISTRY,
)
CHECK_SECONDS = Histogram(
    "balancebot_check_seconds",
    "Balance check latency by provider",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
    registry=REGISTRY,
)
ALERTS = Counter(
    "balancebot_alerts_total",
    "Alert messages by state: queued, sent, failed (will retry), dropped (blocked user)",
    ["state"],
    registry=REGISTRY,
)
SWEEP_KEYS = Counter(
    "balancebot_sweep_keys_total",
    "Keys the alert sweep handled, by result: checked (outcome recorded, own error "
    "included), failed (own error recorded, or handed back to the next sweep), lost_lease",
    ["result"],
    registry=REGISTRY,
)
SWEEP_RUNS = Counter(
    "balancebot_sweep_runs_total",
    "Alert sweeps by outcome: ok (ran to the end), error (ended by an error)",
    ["outcome"],
    registry=REGISTRY,
)
LAST_PROGRESS = Gauge(
    "balancebot_sweep_last_progress_timestamp_seconds",
    "Unix time this process last checked a due key (or found none due)",
    registry=REGISTRY,
)
SWEEP_SECONDS = Histogram(
    "balancebot_sweep_seconds",
    "Duration of one alert sweep",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900),
    registry=REGISTRY,
)
USERS = Gauge("balancebot_users", "Users known to the bot", registry=REGISTRY)
KEYS = Gauge("balancebot_keys", "Stored API keys", registry=REGISTRY)
LAST_SWEEP = Gauge(
    "balancebot_last_sweep_timestamp_seconds",
    "Unix time the last sweep finished",
    registry=REGISTRY,
)


def observe_check(provider: str, outcome: str, seconds: float) -> None:
    CHECKS.labels(provider, outcome).inc()
    CHECK_SECONDS.labels(provider).observe(seconds)


def alert(state: str, n: int = 1) -> None:
    ALERTS.labels(state).inc(n)


_last_sweep_at: float | None = None


def sweep_finished(
    seconds: float,
    finished_at: float,
    *,
    checked: int = 0,
    failed: int = 0,
    lost_leases: int = 0,
    progress_at: float | None = None,
) -> None:
    """One sweep ran to its end: its duration, and the keys it actually checked."""
    global _last_sweep_at
    _last_sweep_at = finished_at
    SWEEP_SECONDS.observe(seconds)
    LAST_SWEEP.set(finished_at)
    SWEEP_RUNS.labels("ok").inc()
    for result, n in (("checked", checked), ("failed", failed), ("lost_lease", lost_leases)):
        SWEEP_KEYS.labels(result).inc(n)
    if progress_at is not None:
        LAST_PROGRESS.set(progress_at)


def sweep_failed() -> None:
    """A sweep ended by an error (the next one runs on schedule)."""
    SWEEP_RUNS.labels("error").inc()


def last_sweep_iso() -> str | None:
    if _last_sweep_at is None:
        return None
    return datetime.fromtimestamp(_last_sweep_at, UTC).isoformat(timespec="seconds")


def render(users: int, keys: int) -> tuple[bytes, str]:
    USERS.set(users)
    KEYS.set(keys)
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
