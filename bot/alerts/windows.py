"""Plan-window alerts: a warning ladder on used %, "used up", and "refilled" — per window.

Pure like bot/alerts/rules.py (which calls `evaluate` for every successful check): no
I/O, no clock. A window is one of a plan's limits (`bot.billing.models.Window`: a 5-hour,
weekly or monthly quota); its memory lives in the key's alert memory under `"win"`,
keyed by the window's stable name:

    {"5h": {"f": ["80", "95"], "r": "<resets_at ISO>", "p": "87.5"}, ...}

- `f`: rungs that fired in the current period ("100" is "used up"). A rung fires once
  when the used share reaches it; it re-arms when the share falls `margin` points below
  it (hysteresis), or when the period that warned is over: the reset we knew of has
  passed and the provider reports a later one.
- "refilled" is sent only for a window that had warned, when every rung re-armed and
  none is crossed again — a window nobody was warned about never produces a refill
  notice, however often it resets.
- `r`: the reset time of the period we last saw; `p`: the last used share (the sweep
  checks sooner while it climbs near a rung, see `next_check`).

Windows the provider no longer lists are forgotten; the memory holds at most the
result's windows (bounded by `MAX_WINDOWS`). The rungs are the user's
(`/alerts <label|all> window 80% 95%`): `None` stored means the default ladder, an
empty list means window alerts are off.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.billing.models import BalanceResult, Window, WindowState

# event kinds (outbox `kind`, ≤ 16 characters)
WINDOW_LOW, WINDOW_OUT, WINDOW_REFILLED = "window_low", "window_out", "window_refill"
KINDS = (WINDOW_LOW, WINDOW_OUT, WINDOW_REFILLED)

DEFAULT_RUNGS: tuple[str, ...] = ("80", "95")
USED_UP = "100"
MAX_RUNGS = 5
MARGIN = Decimal(5)  # percentage points below a rung before it re-arms
_HUNDRED = Decimal(100)

#: Scheduling (see `next_check`): a window that warned is checked this soon after its
#: reset; one climbing within NEAR points of its next rung every NEAR_EVERY.
REFILL_GRACE = timedelta(seconds=60)
NEAR = Decimal(10)
NEAR_EVERY = timedelta(minutes=10)
MIN_GAP = timedelta(minutes=5)  # never sooner than this after the previous check

_RUNG = re.compile(r"^(\d{1,3}(?:[.,]\d{1,2})?)\s*%?$")


class BadRungs(ValueError):
    """Window rungs the user typed that we cannot use."""


def parse_rungs(tokens: Sequence[str]) -> list[str]:
    """`["95%", "80"]` → `["80", "95"]`: distinct shares above 0 and below 100, at most 5."""
    rungs: list[Decimal] = []
    for token in tokens:
        m = _RUNG.match(token.strip())
        if not m:
            raise BadRungs(token)
        try:
            value = Decimal(m[1].replace(",", "."))
        except InvalidOperation:
            raise BadRungs(token) from None
        if not 0 < value < _HUNDRED:
            raise BadRungs(token)
        rungs.append(value)
    unique = sorted(set(rungs))
    if not unique or len(unique) > MAX_RUNGS:
        raise BadRungs(" ".join(tokens))
    return [_text(v) for v in unique]


def effective_rungs(stored: Sequence[str] | None) -> tuple[str, ...]:
    """The ladder in force: the default when nothing was chosen; `()` when switched off."""
    if stored is None:
        return DEFAULT_RUNGS
    out: list[str] = []
    for rung in stored:
        try:
            value = Decimal(str(rung))
        except InvalidOperation:
            continue
        if value.is_finite() and 0 < value < _HUNDRED:
            out.append(_text(value))
    return tuple(sorted(set(out), key=Decimal)[:MAX_RUNGS])


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f")


def margin(level: Decimal) -> Decimal:
    return min(MARGIN, level / 2)


def used_share(window: Window) -> Decimal | None:
    """The used share for alerting: 100 when the provider says the window is used up."""
    if window.state is WindowState.UNLIMITED:
        return None
    if window.state is WindowState.EXHAUSTED:
        return _HUNDRED
    return window.percent_used


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _num(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def figure(window: Window) -> dict[str, Any]:
    """A window as event payloads and `alert_state.last` keep it (strings, ISO times)."""
    pct = used_share(window)
    return {
        "window": window.name,
        "pct": _num(None if pct is None else pct.quantize(Decimal("0.1"))),
        "used": _num(window.used),
        "limit": _num(window.limit),
        "unit": window.unit.value,
        "currency": window.currency,
        "resets_at": _iso(window.resets_at),
        "period": None if window.period is None else int(window.period.total_seconds()),
        "state": window.state.value,
    }


def new_period(state: Mapping[str, Any], window: Window, now: datetime) -> bool:
    """The period we knew of is over: its reset has passed and a later one is reported."""
    known = _when(state.get("r"))
    return (
        known is not None
        and now >= known
        and window.resets_at is not None
        and window.resets_at > known
    )


def evaluate(
    rungs: Sequence[str],
    memory: dict[str, Any],
    result: BalanceResult,
    now: datetime,
    bump: Callable[[dict[str, Any], str], int],
    measured_at: str | None,
) -> list[tuple[str, str, dict[str, Any]]]:
    """Update `memory["win"]` for this result; return (kind, tag, data) per event.

    `bump(memory, name)` is the rules' event counter (unique idempotency tags).
    """
    if not result.windows:
        memory.pop("win", None)
        return []
    if not rungs:  # window alerts off: nothing remembered, nothing sent
        memory["win"] = {}
        return []
    levels = {r: Decimal(r) for r in (*rungs, USED_UP)}
    old: Mapping[str, Any] = memory.get("win") or {}
    if not isinstance(old, Mapping):
        old = {}
    states: dict[str, Any] = {}
    events: list[tuple[str, str, dict[str, Any]]] = []
    for window in result.windows:
        state = old.get(window.name)
        state = dict(state) if isinstance(state, Mapping) else {}
        pct = used_share(window)
        if pct is None:  # no figure this time: remember what we knew, decide nothing
            states[window.name] = state
            continue
        fired = [r for r in state.get("f") or () if r in levels]
        had_fired = bool(fired)
        if new_period(state, window, now):
            fired = []
        else:
            fired = [r for r in fired if pct > levels[r] - margin(levels[r])]
        crossed = [r for r, level in levels.items() if r not in fired and pct >= level]
        data = {**figure(window), "measured_at": measured_at}
        if crossed:
            fired += crossed
            n = bump(memory, "win")
            if USED_UP in crossed:
                events.append((WINDOW_OUT, f"wout:{window.name}:{n}", data))
            else:
                worst = max(crossed, key=lambda r: levels[r])
                events.append(
                    (WINDOW_LOW, f"wlow:{window.name}:{worst}:{n}", {**data, "rung": worst})
                )
        elif had_fired and not fired:
            n = bump(memory, "win")
            events.append((WINDOW_REFILLED, f"wref:{window.name}:{n}", data))
        states[window.name] = {
            "f": sorted(set(fired), key=lambda r: levels[r]),
            "r": _iso(window.resets_at),
            "p": str(pct),
        }
    memory["win"] = states
    return events


def next_check(
    rungs: Sequence[str],
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    result: BalanceResult | None,
    now: datetime,
    interval: timedelta,
    min_gap: timedelta = MIN_GAP,
) -> datetime:
    """When the sweep should look at this key again: `now + interval`, or sooner when a
    window needs it — soon after the reset of a window that warned (so "refilled" comes
    within minutes), and every NEAR_EVERY while a window climbs near its next rung.
    Never sooner than `min_gap` after this check (politeness towards the provider),
    never later than `interval`.

    `before`/`after` are the key's alert memory before and after this check.
    """
    due = now + interval
    if result is None or not result.windows or not rungs:
        return due
    levels = sorted(Decimal(r) for r in (*rungs, USED_UP))
    old = before.get("win") if isinstance(before.get("win"), Mapping) else {}
    new = after.get("win") if isinstance(after.get("win"), Mapping) else {}
    soon: list[datetime] = []
    for window in result.windows:
        state = new.get(window.name) or {}
        pct = used_share(window)
        at = window.resets_at
        if state.get("f") and at is not None and at > now:
            soon.append(at + REFILL_GRACE)
        if pct is None or pct >= _HUNDRED:
            continue
        nxt = next((lv for lv in levels if lv > pct), None)
        previous = (old.get(window.name) or {}).get("p")
        try:
            rising = previous is not None and pct > Decimal(str(previous))
        except InvalidOperation:
            rising = False
        if nxt is not None and nxt - pct <= NEAR and rising:
            soon.append(now + NEAR_EVERY)
    if not soon:
        return due
    return min(due, max(now + min_gap, min(soon)))
