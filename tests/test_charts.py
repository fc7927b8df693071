"""bot/charts.py: real PNGs, CJK glyphs found (no tofu), drawn off the event loop, and
matplotlib never imported by a bot that does not draw."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import warnings
from datetime import UTC, datetime, timedelta

import pytest

from bot.charts import Chart, ChartRenderer, ChartsBusy, Line, drawable, render_png, y_bottom


def sample(label: str = "主力 key", days: int = 90) -> Chart:
    now = datetime.now(UTC)
    points = [(now - timedelta(days=days - d), 500.0 - d * 4) for d in range(days + 1)]
    return Chart(
        title="余额 · CNY · 最近 90 天",
        y_label="剩余, ¥",
        lines=[
            Line(
                label,
                points,
                top_ups=[points[30]],
                forecast=[(now + timedelta(days=20), 0.0)],
                thresholds=[100.0, 50.0],
            ),
            Line("backup", [(t, v / 2) for t, v in points]),
        ],
        tz="Asia/Shanghai",
        forecast_label="预测",
        top_up_label="充值",
        threshold_label="提醒阈值",
        footnote="另有 2 个未画出",
        end=now,
    )


def png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.verify()
        return image.size


def test_chart_is_a_real_png_and_cjk_glyphs_are_found() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = render_png(sample())
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert missing == []
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert png_size(data) == (1000, 560)


def test_a_negative_balance_is_drawn_not_cut_off() -> None:
    now = datetime.now(UTC)
    above = Line("ds", [(now - timedelta(days=1), 3.0), (now, 0.5)])
    below = Line("ds", [(now - timedelta(days=1), 3.0), (now, -2.0)])
    assert y_bottom(Chart("t", "y", [above])) == 0.0
    assert y_bottom(Chart("t", "y", [above, below])) < -2.0
    assert png_size(render_png(Chart("t", "y", [below], end=now))) == (1000, 560)


def test_glyphs_no_font_has_are_dropped_not_boxed() -> None:
    assert drawable("主力 💰 key") == "主力  key"
    assert "💰" not in drawable("💰 wallet") and drawable("💰") == "?"
    assert drawable("한국어 日本語 ¥€$") == "한국어 日本語 ¥€$"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        render_png(sample("💰 钱包"))
    assert not [w for w in caught if "missing from font" in str(w.message)]


async def test_the_event_loop_keeps_running_while_a_chart_is_drawn() -> None:
    renderer = ChartRenderer()
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    try:
        await renderer.render(sample())  # the first chart also imports matplotlib
        data = await renderer.render(sample())
    finally:
        done.set()
        await task
        renderer.close()
    assert data.startswith(b"\x89PNG") and ticks >= 5


async def test_too_many_waiting_charts_is_busy() -> None:
    renderer = ChartRenderer(max_pending=1)
    try:
        first = asyncio.create_task(renderer.render(sample()))
        await asyncio.sleep(0)
        with pytest.raises(ChartsBusy):
            await renderer.render(sample())
        assert (await first).startswith(b"\x89PNG")
    finally:
        renderer.close()


def test_a_bot_that_never_draws_never_imports_matplotlib() -> None:
    """Every bot module imported and the Application built: matplotlib stays out."""
    code = (
        "import pkgutil, importlib, sys, bot\n"
        "for m in pkgutil.walk_packages(bot.__path__, 'bot.'):\n"
        "    if '.migrations' not in m.name and not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "from bot.app import build_application\n"
        "from bot.settings import load_settings\n"
        "build_application(load_settings(env_file=None, telegram_bot_token='1:x'))\n"
        "heavy = ('matplotlib', 'numpy', 'PIL')\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in heavy)\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_bench_chart_phase_and_the_readme_image(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`python -m bench.chart` draws the README's image from a seeded history; the bench
    phase reports CPU and RSS (tests/test_bench_smoke.py skips it to stay quick)."""
    from bench.chart import chart_phase

    target = tmp_path / "chart.png"
    result = subprocess.run(
        [sys.executable, "-m", "bench.chart", str(target)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "<b>main</b>: spent ¥" in result.stdout and "top-ups: 1" in result.stdout
    assert png_size(target.read_bytes()) == (1000, 560)
    drawn = chart_phase(True)
    assert drawn["matplotlib_loaded"] and drawn["cold_cpu_ms"] > 0 and drawn["warm_cpu_ms"] > 0
    assert drawn["readings"] > 90 * 3 and drawn["peak_rss_mb"] > 0
