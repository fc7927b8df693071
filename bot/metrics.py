"""Prometheus metrics, served at GET /metrics in webhook mode.

Services record into plain counters here through small functions, so nothing below the
handlers depends on prometheus_client's API — and the bot imports prometheus_client only
when /metrics is rendered (webhook mode). A polling bot, which has no /metrics, never
loads it (idle footprint, issue 17 item 4; `python -m bench` measures it).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CHECK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
SWEEP_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900)


@dataclass
class _Histogram:
    """Observations per bucket (upper bounds, +Inf last), their sum and count."""

    bounds: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip([*self.bounds, math.inf], self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == math.inf else _float_text(bound), running))
        return out


def _float_text(value: float) -> str:
    return repr(float(value))


_checks: Counter[tuple[str, str]] = Counter()  # (provider, outcome) → count
_check_seconds: dict[str, _Histogram] = {}  # provider → latency histogram
_alerts: Counter[str] = Counter()  # state → count
_sweep_seconds = _Histogram(SWEEP_BUCKETS)
_sweep_keys: Counter[str] = Counter()  # checked | failed | lost_lease → keys
_sweep_runs: Counter[str] = Counter()  # ok | error → sweeps
_last_sweep_at: float | None = None
_last_progress_at: float | None = None


def observe_check(provider: str, outcome: str, seconds: float) -> None:
    _checks[(provider, outcome)] += 1
    hist = _check_seconds.get(provider)
    if hist is None:
        hist = _check_seconds[provider] = _Histogram(CHECK_BUCKETS)
    hist.observe(seconds)


def alert(state: str, n: int = 1) -> None:
    _alerts[state] += n


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
    global _last_sweep_at, _last_progress_at
    _last_sweep_at = finished_at
    _sweep_seconds.observe(seconds)
    _sweep_runs["ok"] += 1
    for result, n in (("checked", checked), ("failed", failed), ("lost_lease", lost_leases)):
        _sweep_keys[result] += n
    if progress_at is not None:
        _last_progress_at = progress_at


def sweep_failed() -> None:
    """A sweep ended by an error (the next one runs on schedule)."""
    _sweep_runs["error"] += 1


def last_sweep_iso() -> str | None:
    if _last_sweep_at is None:
        return None
    return datetime.fromtimestamp(_last_sweep_at, UTC).isoformat(timespec="seconds")


def _families(users: int, keys: int) -> Iterator[Any]:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    checks = CounterMetricFamily(
        "balancebot_checks",
        "Balance checks by provider and outcome (ok or an error kind)",
        labels=["provider", "outcome"],
    )
    for (provider, outcome), count in sorted(_checks.items()):
        checks.add_metric([provider, outcome], count)
    yield checks
    seconds = HistogramMetricFamily(
        "balancebot_check_seconds", "Balance check latency by provider", labels=["provider"]
    )
    for provider, hist in sorted(_check_seconds.items()):
        seconds.add_metric([provider], hist.cumulative(), sum_value=hist.total)
    yield seconds
    alerts = CounterMetricFamily(
        "balancebot_alerts",
        "Alert messages by state: queued, sent, failed (will retry), dropped (blocked user)",
        labels=["state"],
    )
    for state, count in sorted(_alerts.items()):
        alerts.add_metric([state], count)
    yield alerts
    swept = CounterMetricFamily(
        "balancebot_sweep_keys",
        "Keys the alert sweep handled, by result: checked (outcome recorded, own error "
        "included), failed (own error recorded, or handed back to the next sweep), lost_lease",
        labels=["result"],
    )
    for result, count in sorted(_sweep_keys.items()):
        swept.add_metric([result], count)
    yield swept
    runs = CounterMetricFamily(
        "balancebot_sweep_runs",
        "Alert sweeps by outcome: ok (ran to the end), error (ended by an error)",
        labels=["outcome"],
    )
    for outcome, count in sorted(_sweep_runs.items()):
        runs.add_metric([outcome], count)
    yield runs
    yield GaugeMetricFamily(
        "balancebot_sweep_last_progress_timestamp_seconds",
        "Unix time this process last checked a due key (or found none due)",
        value=_last_progress_at or 0.0,
    )
    sweep = HistogramMetricFamily("balancebot_sweep_seconds", "Duration of one alert sweep")
    sweep.add_metric([], _sweep_seconds.cumulative(), sum_value=_sweep_seconds.total)
    yield sweep
    yield GaugeMetricFamily("balancebot_users", "Users known to the bot", value=users)
    yield GaugeMetricFamily("balancebot_keys", "Stored API keys", value=keys)
    yield GaugeMetricFamily(
        "balancebot_last_sweep_timestamp_seconds",
        "Unix time the last sweep finished",
        value=_last_sweep_at or 0.0,
    )


def _registry(users: int, keys: int) -> Any:
    from prometheus_client import CollectorRegistry

    class _Snapshot:
        def collect(self) -> Iterator[Any]:
            return _families(users, keys)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot())  # type: ignore[arg-type]
    return registry


def render(users: int, keys: int) -> tuple[bytes, str]:
    """The Prometheus text exposition of everything recorded so far (imports the client)."""
    from prometheus_client import generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    return generate_latest(_registry(users, keys)), CONTENT_TYPE_LATEST


def __getattr__(name: str) -> Any:
    """`metrics.REGISTRY`: a prometheus_client registry over what is recorded right now
    (`get_sample_value` in tests, or custom exposition); built on access."""
    if name == "REGISTRY":
        return _registry(0, 0)
    raise AttributeError(name)
