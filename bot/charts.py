"""PNG charts of balances and plan windows over time: pure drawing, nothing else.

No Telegram, no database, no translations: the caller passes finished texts (already in
the user's language) and points in time; `render_png` returns PNG bytes. matplotlib is
imported on the first chart only (`_mpl`), so a bot that never draws never pays for it
(about 40 MB of RSS), and only its object API is used (no pyplot, no global figure state).

`ChartRenderer` draws off the event loop, in one worker thread: matplotlib releases the
GIL rarely, but the loop still gets its turns, so the bot keeps answering while a chart
is drawn; one thread means charts never race on matplotlib's caches. At most
`max_pending` charts wait; past that, `ChartsBusy` (the handler asks to try again).

Glyphs: DejaVu Sans (matplotlib's own) for Latin and symbols, Noto Sans CJK (a dependency,
docs/telegram.md) for Chinese, Japanese and Korean, glyph by glyph. Characters neither
font has (emoji) are dropped from labels rather than drawn as empty boxes.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WIDTH, HEIGHT, DPI = 1000, 560, 100
MAX_LINES = 8
COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
)
#: Where a CJK font may be when the Python package is not installed (Debian's fonts-noto-cjk).
SYSTEM_CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
)


@dataclass(frozen=True, slots=True)
class Line:
    """One key (or one key's window): its points, and what is drawn around them."""

    label: str
    points: Sequence[tuple[datetime, float]]
    top_ups: Sequence[tuple[datetime, float]] = ()
    forecast: Sequence[tuple[datetime, float]] = ()  # dashed, from the last point on
    thresholds: Sequence[float] = ()  # horizontal lines: the user's alert levels


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    y_label: str
    lines: Sequence[Line]
    tz: str = "UTC"
    percent: bool = False  # y axis 0-100 (plan windows)
    forecast_label: str = "forecast"
    top_up_label: str = "top-up"
    threshold_label: str = "alert threshold"
    footnote: str = ""
    end: datetime | None = None  # the x axis reaches at least here ("now")
    size: tuple[int, int] = field(default=(WIDTH, HEIGHT))


class ChartsBusy(Exception):
    """Too many charts are waiting to be drawn; try again in a moment."""


# -- matplotlib, once ------------------------------------------------------------------------


def cjk_font_path() -> Path | None:
    """The Noto Sans CJK file: from the Python package, else a system copy, else None."""
    try:
        from importlib.resources import files

        path = Path(str(files("cvttf_NotoSansCJK_Regular") / "NotoSansCJKtc-Regular.otf"))
        if path.is_file():
            return path
    except (ImportError, ModuleNotFoundError, TypeError):
        pass
    for candidate in SYSTEM_CJK_FONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


_setup_lock = threading.Lock()


@cache
def _mpl() -> dict[str, Any]:
    """Import matplotlib (Agg only) and register the CJK font; once per process."""
    with _setup_lock:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib import dates, font_manager
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        families = ["DejaVu Sans"]
        fonts = [font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"))]
        path = cjk_font_path()
        if path is not None:
            font_manager.fontManager.addfont(str(path))
            families.append(font_manager.FontProperties(fname=str(path)).get_name())
            fonts.append(str(path))
        else:
            log.warning("no CJK font found: Chinese labels in charts will lack glyphs")
        matplotlib.rcParams.update(
            {
                "font.family": families,  # a list: glyph-by-glyph fallback
                "axes.unicode_minus": False,
                "svg.fonttype": "none",
            }
        )
        return {
            "Figure": Figure,
            "Canvas": FigureCanvasAgg,
            "dates": dates,
            "fonts": fonts,
        }


@cache
def _faces() -> tuple[Any, ...]:
    from matplotlib.ft2font import FT2Font

    return tuple(FT2Font(path) for path in _mpl()["fonts"])


@lru_cache(maxsize=8192)
def _has_glyph(code_point: int) -> bool:
    """Some chart font can draw this character (asked per character: a full charmap of
    the CJK font would hold ~50,000 entries in memory for good)."""
    return any(face.get_char_index(code_point) for face in _faces())


def drawable(text: str) -> str:
    """`text` without the characters no chart font has (emoji and the like)."""
    kept = "".join(ch for ch in text if ch.isspace() or _has_glyph(ord(ch)))
    return kept.strip() or "?"


# -- drawing ---------------------------------------------------------------------------------


def y_bottom(chart: Chart) -> float:
    """Where a balance axis starts: at zero, or lower when a balance went below zero (some
    providers let it), so a negative reading is drawn, never cut off."""
    values = [v for line in chart.lines[:MAX_LINES] for _, v in line.points]
    low = min([0.0, *values])
    return low * 1.05 if low < 0 else 0.0


def render_png(chart: Chart) -> bytes:
    """The chart as PNG bytes (blocking: call it through `ChartRenderer`)."""
    from zoneinfo import ZoneInfo

    mpl = _mpl()
    tz = ZoneInfo(chart.tz)
    width, height = chart.size
    fig = mpl["Figure"](figsize=(width / DPI, height / DPI), dpi=DPI)
    mpl["Canvas"](fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(drawable(chart.title), fontsize=13, loc="left")
    ax.set_ylabel(drawable(chart.y_label))
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    handles: list[Any] = []
    extras: dict[str, Any] = {}
    xs_all: list[datetime] = []
    for i, line in enumerate(chart.lines[:MAX_LINES]):
        color = COLORS[i % len(COLORS)]
        times = [t for t, _ in line.points]
        values = [v for _, v in line.points]
        xs_all += times
        (h,) = ax.plot(times, values, color=color, linewidth=2, label=drawable(line.label))
        if len(line.points) <= 40:
            ax.plot(times, values, "o", color=color, markersize=3)
        handles.append(h)
        if line.forecast:
            f_times = [line.points[-1][0], *(t for t, _ in line.forecast)]
            f_values = [line.points[-1][1], *(v for _, v in line.forecast)]
            xs_all += f_times
            (fh,) = ax.plot(f_times, f_values, color=color, linestyle="--", linewidth=1.6)
            extras.setdefault("forecast", fh)
        if line.top_ups:
            (th,) = ax.plot(
                [t for t, _ in line.top_ups],
                [v for _, v in line.top_ups],
                "^",
                color="#2ca02c",
                markersize=10,
                markeredgecolor="white",
                zorder=5,
            )
            extras.setdefault("top_up", th)
        for level in line.thresholds:
            hl = ax.axhline(level, color=color, linestyle=":", linewidth=1.2, alpha=0.9)
            extras.setdefault("threshold", hl)

    if chart.end is not None:
        xs_all.append(chart.end)
    if xs_all:
        start, end = min(xs_all), max(xs_all)
        if end - start < timedelta(hours=2):
            end = start + timedelta(hours=2)
        pad = (end - start) * 0.02
        ax.set_xlim(start - pad, end + pad)
        span = end - start
        dates = mpl["dates"]
        fmt = "%m-%d" if span >= timedelta(days=3) else "%m-%d %H:%M"
        ax.xaxis.set_major_locator(dates.AutoDateLocator(tz=tz, minticks=3, maxticks=8))
        ax.xaxis.set_major_formatter(dates.DateFormatter(fmt, tz=tz))
    if chart.percent:
        ax.set_ylim(0, 105)
    else:
        bottom = y_bottom(chart)
        ax.set_ylim(bottom=bottom)
        top = ax.get_ylim()[1]
        ax.set_ylim(bottom, top * 1.05 if top > 0 else 1)

    names = {
        "forecast": chart.forecast_label,
        "top_up": chart.top_up_label,
        "threshold": chart.threshold_label,
    }
    labels = [drawable(h.get_label()) for h in handles]
    for key in ("forecast", "top_up", "threshold"):
        if key in extras:
            handles.append(extras[key])
            labels.append(drawable(names[key]))
    if handles:
        ax.legend(handles, labels, loc="best", fontsize=9, framealpha=0.85)
    if chart.footnote:
        fig.text(0.01, 0.01, drawable(chart.footnote), fontsize=8, color="#666666")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


# -- off the event loop ------------------------------------------------------------------------


class ChartRenderer:
    """Long-lived (app.build_services): one drawing thread, started on the first chart."""

    def __init__(self, max_pending: int = 8) -> None:
        self.max_pending = max_pending
        self._executor: ThreadPoolExecutor | None = None
        self._pending = 0

    async def render(self, chart: Chart) -> bytes:
        if self._pending >= self.max_pending:
            raise ChartsBusy
        self._pending += 1
        try:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="charts")
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, render_png, chart)
        finally:
            self._pending -= 1

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
