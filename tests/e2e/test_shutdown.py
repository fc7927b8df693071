"""SIGTERM in the middle of a sweep: a bounded, clean exit, and no alert lost or doubled."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.settings import Settings
from tests.alerts.test_processes import each_alert_once_after_restart, hanging_sweep, low_alerts

EXIT_BOUND = 25.0  # seconds: the sweep's 10 s grace plus PTB's own shutdown


@pytest.mark.slow
async def test_sigterm_mid_sweep_exits_in_time_and_hands_back_leases(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    users = list(range(5001, 5009))
    # The provider hangs for longer than the shutdown grace period.
    async with hanging_sweep(make_settings, tmp_path, users, latency=12.0) as scene:
        first = scene.procs[0]
        started = time.monotonic()
        first.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(first.wait, EXIT_BOUND + 5)
        took = time.monotonic() - started
        log = (tmp_path / "first.log").read_text()
        assert rc == 0, log
        assert took < EXIT_BOUND, f"took {took:.1f}s"
        assert "leases handed back" in log
        assert low_alerts(scene.tg) == Counter()  # nothing decided from abandoned checks
        # Leases were handed back, so the restart checks at once (no lease wait).
        await each_alert_once_after_restart(scene, tmp_path)
