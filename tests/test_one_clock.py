"""One clock for the whole program (bot/clock.py): no other module under bot/ reads the
wall clock. Business time must come from the injected clock so tests can fix it and the
calendar cannot break them (main once went red when a fixed test date slid into the past).

Monotonic timers (time.monotonic, loop.time) measure durations and are allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

BOT = Path(__file__).resolve().parent.parent / "bot"
ALLOWED = {"clock.py"}  # the one place: bot/clock.py:system_clock

# attribute reads that return the current wall-clock time
WALL = {
    "datetime": {"now", "utcnow", "today"},
    "date": {"today"},
    "time": {"time", "time_ns", "localtime", "gmtime", "ctime", "asctime", "strftime"},
}


def wall_clock_reads(source: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every `datetime.now`-like reference, called or not
    (`default_factory=datetime.now` is a read too)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            base = node.value
            name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
            if name in WALL and node.attr in WALL[name]:
                found.append((node.lineno, f"{name}.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module in ("time", "datetime"):
            for alias in node.names:
                if alias.name in WALL["time"] and node.module == "time":
                    found.append((node.lineno, f"from time import {alias.name}"))
    return found


def test_no_wall_clock_reads_outside_bot_clock() -> None:
    offenders = [
        f"bot/{path.relative_to(BOT)}:{line}: {what}"
        for path in sorted(BOT.rglob("*.py"))
        if str(path.relative_to(BOT)) not in ALLOWED
        for line, what in wall_clock_reads(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, "read the injected clock instead:\n" + "\n".join(offenders)


def test_the_check_catches_every_spelling() -> None:
    samples = [
        "datetime.now(UTC)",
        "datetime.datetime.utcnow()",
        "date.today()",
        "time.time()",
        "f = field(default_factory=datetime.now)",
        "from time import time",
    ]
    for sample in samples:
        assert wall_clock_reads(sample), sample
    assert not wall_clock_reads("time.monotonic(); loop.time(); clock(); now.date()")


def test_bot_clock_is_the_one_reader() -> None:
    reads = wall_clock_reads((BOT / "clock.py").read_text(encoding="utf-8"))
    assert [what for _, what in reads] == ["datetime.now"]
