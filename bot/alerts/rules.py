"""Alert rules: the event state machine and the threshold specs. Pure: no I/O, no clock.

`evaluate` takes one check's outcome and the key's memory (a JSON dict kept on
`alert_state`) and returns the new memory and the events to notify. The sweep
(bot/alerts/sweep.py) feeds it; a new event family is a new rule here.

- low-balance rungs: `fired` lists rungs below which the balance fell; a rung fires
  when the balance drops strictly below it and re-arms only once the balance is at
  least threshold + margin (hysteresis). All rungs re-armed after some fired → one
  "recovered" note. Unknown or unlimited balances never fire or re-arm anything.
- expiry: stage 0 → 1 (≤ 7 days) → 2 (≤ 1 day) → 3 (expired); a new expiry date
  (renewal) resets the stage.
- revoked: fires on the provider rejecting the key; a later success re-arms it.
- stale: transient failures start `failing_since`; after 24 h in a row, one event.
- forecast: runs out within 3 days at the recent burn rate; re-armed by a top-up
  or a forecast beyond 4.5 days.
- plan windows (bot/alerts/windows.py): per window, a ladder on used % (80/95 by
  default), "used up", and "refilled" for a window that had warned.
A single failed check changes nothing but `failing_since`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.alerts import windows
from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, CheckOutcome, FigureKind, KeyState
from bot.services import forecast

MAX_RUNGS = 5
MAX_AMOUNT = Decimal("1000000000")
EXPIRY_SOON = timedelta(days=7)
EXPIRY_VERY_SOON = timedelta(days=1)
STALE_AFTER = timedelta(hours=24)
FORECAST_DAYS = Decimal(3)
FORECAST_REARM_DAYS = Decimal("4.5")

# event kinds (also the outbox `kind` and the renderer's switch)
LOW, RECOVERED, EXPIRES, EXPIRED, REVOKED, STALE, FORECAST, DIGEST = (
    "low",
    "recovered",
    "expires",
    "expired",
    "revoked",
    "stale",
    "forecast",
    "digest",
)


# -- thresholds ---------------------------------------------------------------------------

_SPEC = re.compile(r"^(-?\d{1,15}(?:[.,]\d{1,6})?)(%?)$")


class BadSpec(ValueError):
    """A threshold the user typed that we cannot use: `token` is the part at fault and
    `problem` says why (UNREADABLE, PERCENT_RANGE, AMOUNT_RANGE, TOO_MANY)."""

    def __init__(self, token: str, problem: str = "unreadable") -> None:
        super().__init__(token)
        self.token = token
        self.problem = problem


UNREADABLE, PERCENT_RANGE, AMOUNT_RANGE, TOO_MANY = (
    "unreadable",
    "percent_range",
    "amount_range",
    "too_many",
)


def parse_spec(token: str) -> str:
    """`50` → "50", `2.5%` → "2.5%", `5 %` → "5%": normalised text, or BadSpec."""
    text = token.strip()
    m = _SPEC.match(re.sub(r"\s+%$", "%", text))
    if not m:
        raise BadSpec(text)
    try:
        value = Decimal(m[1].replace(",", "."))
    except InvalidOperation:
        raise BadSpec(text) from None
    pct = bool(m[2])
    if pct and not 0 < value < 100:
        raise BadSpec(text, PERCENT_RANGE)
    if not pct and not 0 < value <= MAX_AMOUNT:
        raise BadSpec(text, AMOUNT_RANGE)
    text_value = format(value.normalize(), "f")
    return f"{text_value}%" if pct else text_value


def join_percent_signs(tokens: Sequence[str]) -> list[str]:
    """`["5", "%"]` → `["5%"]`: a percent sign typed apart belongs to the number before."""
    out: list[str] = []
    for token in tokens:
        if token.strip() == "%" and out:
            out[-1] += "%"
        else:
            out.append(token)
    return out


def parse_specs(tokens: Sequence[str]) -> list[str]:
    """A ladder: distinct rungs, highest first (amounts before percentages), at most 5."""
    specs = list(dict.fromkeys(parse_spec(t) for t in join_percent_signs(tokens)))
    if not specs:
        raise BadSpec(" ".join(tokens))
    if len(specs) > MAX_RUNGS:
        raise BadSpec(" ".join(tokens), TOO_MANY)
    return sorted(specs, key=lambda s: (s.endswith("%"), -Decimal(s.rstrip("%"))))


#: Friendly amounts: 1, 2, 2.5 and 5 times a power of ten.
_FRIENDLY = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5))
#: Offered thresholds: these shares of what is left now, so none fires at once.
PRESET_SHARES = (Decimal("0.5"), Decimal("0.25"), Decimal("0.1"))
PRESET_PERCENTS = (20, 10)


def friendly(value: Decimal) -> Decimal:
    """The friendly amount nearest to `value` (¥24.80 → 25, $4.96 → 5, 0.124 → 0.1)."""
    if not value.is_finite() or value <= 0:
        return Decimal(0)
    exp = value.adjusted()
    candidates = [n.scaleb(e) for e in (exp - 1, exp, exp + 1) for n in _FRIENDLY]
    return min(candidates, key=lambda c: (abs(c - value), c))


def presets(remaining: Decimal | None, total: Decimal | None) -> list[str]:
    """Thresholds to offer for a balance of `remaining`: all strictly below it.

    About half, a quarter and a tenth of it in friendly amounts, then the shares of the
    total (when the provider reports one) that are still ahead. Nothing to offer
    without a current figure: a guess could fire at once.
    """
    if remaining is None or not remaining.is_finite() or remaining <= 0:
        return []
    specs: list[str] = []
    for share in PRESET_SHARES:
        amount = friendly(remaining * share)
        if not 0 < amount < remaining:
            continue
        try:
            spec = parse_spec(format(amount.normalize(), "f"))
        except BadSpec:  # finer than the specs allow
            continue
        if spec not in specs:
            specs.append(spec)
    if total is not None and total > 0:
        specs += [f"{p}%" for p in PRESET_PERCENTS if remaining > total * p / 100]
    return specs


def threshold_amount(spec: str, total: Decimal | None) -> Decimal | None:
    """The rung in money; a percentage needs the provider's total (else None)."""
    if spec.endswith("%"):
        if total is None or total <= 0:
            return None
        return total * Decimal(spec[:-1]) / 100
    return Decimal(spec)


def margin(threshold: Decimal) -> Decimal:
    """Hysteresis: how far above a rung the balance must climb before it re-arms."""
    return max(threshold * Decimal("0.05"), min(Decimal("0.5"), threshold * Decimal("0.1")))


# -- the state machine (pure) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Watch:
    thresholds: tuple[str, ...] = ()
    expiry_on: bool = True
    revoked_on: bool = True
    forecast_on: bool = True
    window_rungs: tuple[str, ...] = windows.DEFAULT_RUNGS  # () = window alerts off


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    tag: str  # makes the idempotency key unique per crossing
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Transition:
    """What one check changes: the key's new memory, its failure streak, the events."""

    memory: dict[str, Any]
    failing_since: datetime | None
    events: list[Event]


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _num(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _bump(memory: dict[str, Any], name: str) -> int:
    counters = dict(memory.get("n") or {})
    counters[name] = int(counters.get(name, 0)) + 1
    memory["n"] = counters
    return int(counters[name])


def evaluate(
    watch: Watch,
    memory: Mapping[str, Any],
    failing_since: datetime | None,
    outcome: CheckOutcome,
    burn: forecast.Burn,
    now: datetime,
) -> Transition:
    """One check's outcome through the state machine: new memory and the events.

    `burn` is the key's recent balance readings before this check (bot/services/forecast.py).
    """
    mem: dict[str, Any] = {k: v for k, v in memory.items()}
    events: list[Event] = []
    result = outcome.result
    if result is None:
        kind = outcome.error.kind if isinstance(outcome.error, BillingError) else None
        if kind is ErrorKind.KEY_REJECTED:
            if watch.revoked_on and not mem.get("rev"):
                mem["rev"] = True
                n = _bump(mem, "rev")
                events.append(Event(REVOKED, f"rev:{n}", {"at": iso(now)}))
            return Transition(mem, None, events)
        since = failing_since or now
        if now - since >= STALE_AFTER and not mem.get("stale"):
            mem["stale"] = True
            n = _bump(mem, "stale")
            err = kind.value if kind is not None else ErrorKind.PROVIDER_ERROR.value
            events.append(Event(STALE, f"stale:{n}", {"since": iso(since), "error": err}))
        return Transition(mem, since, events)

    mem["rev"] = False
    mem["stale"] = False
    figure = {k: v for k, v in reading(result).items() if k != "windows"}
    events += _low_balance(watch, mem, result, figure)
    if watch.expiry_on:
        events += _expiry(mem, result, now, figure)
    if watch.forecast_on:
        events += _forecast(mem, result, burn, now, figure)
    found = windows.evaluate(watch.window_rungs, mem, result, now, _bump, figure.get("measured_at"))
    events += [Event(kind, tag, data) for kind, tag, data in found]
    return Transition(mem, None, events)


def reading(result: BalanceResult) -> dict[str, Any]:
    """The figure as event payloads and `alert_state.last` keep it (strings, ISO times).

    A plan key's windows come along (the digest and /alerts show them).
    """
    out: dict[str, Any] = {
        "remaining": _num(result.remaining),
        "total": _num(result.total),
        "currency": result.currency,
        "unit": _unit(result),
        "measured_at": iso(result.fetched_at),
    }
    if result.windows:
        out["windows"] = [windows.figure(w) for w in result.windows]
    return out


def _unit(result: BalanceResult) -> str:
    """What the figure counts, for the renderer: points/characters, or a relay's raw unit."""
    if result.unit is not None:
        return result.unit.value
    return str(result.extras.get("unit", "")) if result.extras else ""


def money_value(result: BalanceResult) -> Decimal | None:
    """The remaining balance when it is a real figure (not unknown, not unlimited)."""
    if result.kind is not FigureKind.BALANCE or result.unlimited:
        return None
    return result.remaining


def _low_balance(
    watch: Watch, mem: dict[str, Any], result: BalanceResult, figure: dict[str, Any]
) -> list[Event]:
    value = money_value(result)
    fired = [r for r in mem.get("fired", []) if r in watch.thresholds]
    had_fired = bool(fired)
    if value is None:
        mem["fired"] = fired
        return []
    levels = {spec: threshold_amount(spec, result.total) for spec in watch.thresholds}
    # re-arm rungs the balance climbed back above (with hysteresis)
    fired = [
        r
        for r in fired
        if levels[r] is None or value <= levels[r] + margin(levels[r])  # type: ignore[operator]
    ]
    events: list[Event] = []
    crossed = [
        spec
        for spec, level in levels.items()
        if spec not in fired and level is not None and value < level
    ]
    if crossed:
        worst = min(crossed, key=lambda s: levels[s])  # type: ignore[arg-type,return-value]
        fired += crossed
        n = _bump(mem, "low")
        data = {**figure, "threshold": worst, "threshold_amount": _num(levels[worst])}
        events.append(Event(LOW, f"low:{worst}:{n}", data))
    elif had_fired and not fired:
        n = _bump(mem, "rec")
        events.append(Event(RECOVERED, f"rec:{n}", dict(figure)))
    mem["fired"] = fired
    return events


def _expiry(
    mem: dict[str, Any], result: BalanceResult, now: datetime, figure: dict[str, Any]
) -> list[Event]:
    exp = dict(mem.get("exp") or {"at": None, "stage": 0})
    at = result.expires_at
    expired = result.state is KeyState.EXPIRED or (at is not None and at <= now)
    if at is not None and iso(at) != exp.get("at"):
        exp = {"at": iso(at), "stage": 0}  # first seen, or renewed
    elif at is None and not expired and exp.get("stage"):
        exp = {"at": None, "stage": 0}  # renewed without a date
    if expired:
        target = 3
    elif at is not None and at - now <= EXPIRY_VERY_SOON:
        target = 2
    elif at is not None and at - now <= EXPIRY_SOON:
        target = 1
    else:
        target = 0
    events: list[Event] = []
    if target > int(exp.get("stage", 0)):
        exp["stage"] = target
        n = _bump(mem, "exp")
        kind = EXPIRED if target == 3 else EXPIRES
        data = {**figure, "expires_at": iso(at), "stage": target}
        events.append(Event(kind, f"exp{target}:{(iso(at) or 'na')[:10]}:{n}", data))
    mem["exp"] = exp
    return events


def _forecast(
    mem: dict[str, Any],
    result: BalanceResult,
    burn: forecast.Burn,
    now: datetime,
    figure: dict[str, Any],
) -> list[Event]:
    value = money_value(result)
    if value is None:
        return []
    previous = burn.last_value
    if previous is not None and value > previous:  # a top-up: start afresh
        mem["fc"] = False
        return []
    when = forecast.runs_out_at(burn.then(result.fetched_at, value), value, now)
    if when is None:
        return []
    days = Decimal((when - now).total_seconds()) / 86400
    if days > FORECAST_REARM_DAYS:
        mem["fc"] = False
        return []
    if days > FORECAST_DAYS or mem.get("fc") or value <= 0:
        return []
    mem["fc"] = True
    n = _bump(mem, "fc")
    return [Event(FORECAST, f"fc:{n}", {**figure, "runs_out_at": iso(when)})]


# -- mutes ------------------------------------------------------------------------------------
# A mute silences notifications, not the state machine: a rung crossed while muted is
# recorded as fired, so it would never be told. These two keep it ("held") and tell it
# once the mute is over, if the balance is still below it.


def hold_while_muted(before: Mapping[str, Any], memory: dict[str, Any]) -> None:
    """Remember the rungs this muted check fired (they were not told)."""
    crossed = [r for r in memory.get("fired", []) if r not in before.get("fired", [])]
    if crossed:
        memory["held"] = list(dict.fromkeys([*memory.get("held", []), *crossed]))


def told_after_mute(
    watch: Watch, memory: dict[str, Any], result: BalanceResult | None, events: Sequence[Event]
) -> list[Event]:
    """After the mute: one low-balance event for held rungs the balance is still below
    (none when it recovered meanwhile, or when this check tells a crossing anyway)."""
    held = memory.get("held")
    if not held or result is None or money_value(result) is None:
        return []  # nothing held, or no reading yet: keep holding until there is one
    del memory["held"]
    still = [r for r in held if r in memory.get("fired", []) and r in watch.thresholds]
    if not still or any(e.kind == LOW for e in events):
        return []
    levels = {r: threshold_amount(r, result.total) for r in still}
    known = [r for r in still if levels[r] is not None]
    if not known:
        return []
    worst = min(known, key=lambda r: levels[r])  # type: ignore[arg-type,return-value]
    n = _bump(memory, "low")
    data = {**reading(result), "threshold": worst, "threshold_amount": _num(levels[worst])}
    return [Event(LOW, f"low:{worst}:{n}", data)]
