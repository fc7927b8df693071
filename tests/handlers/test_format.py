"""Unit tests for the shared balance formatting: money, dates in a zone, errors, packing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.billing.errors import ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState
from bot.billing.registry import default_registry
from bot.handlers import format as fmt
from bot.i18n import translator
from bot.services.balances import KeyReport
from bot.services.keys import KeyView

EN, ZH = translator("en"), translator("zh")
PROVIDERS = default_registry()
NOW = datetime(2026, 11, 23, 20, 30, tzinfo=UTC)  # 04:30 on the 24th in Shanghai


@pytest.mark.parametrize(
    ("value", "currency", "text"),
    [
        ("12.3", "USD", "$12.30"),
        ("110", "CNY", "¥110.00"),
        ("1234567.891", "USD", "$1,234,567.89"),
        ("12.30", "EUR", "12.30 EUR"),
        ("0.02469", "USD", "$0.025"),
        ("0.5", "USD", "$0.50"),
        ("0.000123", "USD", "$0.00012"),
        ("0.0000001", "USD", "$&lt;0.000001"),
        ("0", "CNY", "¥0.00"),
        ("-1.25", "CNY", "-¥1.25"),
        ("4.887614", "USD", "$4.89"),
        ("5", None, "5.00"),
        ("1", "<x>", "1.00 &lt;X&gt;"),
    ],
)
def test_money(value: str, currency: str | None, text: str) -> None:
    assert fmt.money(Decimal(value), currency) == text


def test_money_units_without_currency() -> None:
    assert fmt.money(Decimal("987655"), None, EN, unit="tokens") == "987,655.00 tokens"
    assert fmt.money(Decimal("3"), None, EN, unit="€") == "€3.00"


def result(**kw) -> BalanceResult:  # type: ignore[no-untyped-def]
    kw.setdefault("kind", FigureKind.BALANCE)
    return BalanceResult(provider=kw.pop("provider", "relay"), **kw)


@pytest.mark.parametrize(
    ("expires", "tz", "text"),
    [
        (NOW + timedelta(days=12), "UTC", "expires 2026-12-05 · in 12 days"),
        (NOW + timedelta(hours=2), "UTC", "expires 2026-11-23 · today"),
        (NOW + timedelta(hours=5), "UTC", "expires 2026-11-24 · tomorrow"),
        # Same instant, other zone: in Shanghai it is already the 24th.
        (NOW + timedelta(hours=5), "Asia/Shanghai", "expires 2026-11-24 · today"),
        (NOW - timedelta(days=3), "UTC", "expired 2026-11-20 · 3 days ago"),
        (NOW - timedelta(days=1), "UTC", "expired 2026-11-22 · yesterday"),
        (NOW - timedelta(hours=1), "UTC", "expired 2026-11-23 · today"),
    ],
)
def test_expiry_in_the_users_zone(expires: datetime, tz: str, text: str) -> None:
    assert fmt.expiry(result(expires_at=expires), NOW, fmt.zone(tz), EN) == text


def test_expiry_none_and_unknown() -> None:
    assert fmt.expiry(result(never_expires=True), NOW, fmt.zone("UTC"), EN) == "no expiry"
    assert fmt.expiry(result(), NOW, fmt.zone("UTC"), EN) == "expiry unknown"
    assert fmt.zone("Not/AZone").key == "UTC"
    assert fmt.expiry(result(never_expires=True), NOW, fmt.zone("UTC"), ZH) == "永不过期"


def test_days_left_counts_calendar_days() -> None:
    tz = fmt.zone("America/New_York")
    assert fmt.days_left(NOW + timedelta(days=12), NOW, tz) == 12
    assert fmt.days_left(NOW - timedelta(days=3), NOW, tz) == -3


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(2, "just now"), (42, "42 s ago"), (600, "10 min ago"), (7300, "2 h ago"), (90000, "1 d ago")],
)
def test_age(seconds: int, text: str) -> None:
    assert fmt.age(NOW - timedelta(seconds=seconds), NOW, EN) == text


def test_every_error_kind_has_one_sentence_in_both_languages() -> None:
    for kind in ErrorKind:
        en, zh = fmt.error_sentence(kind, EN), fmt.error_sentence(kind, ZH)
        assert en.endswith(".") and en.count(". ") == 0, kind
        assert zh != en, kind
    assert (
        fmt.error_sentence(ErrorKind.UNREADABLE, EN) == "Can't decrypt this key, please re-add it."
    )
    sentences = {fmt.error_sentence(k, EN) for k in ErrorKind}
    assert len(sentences) == len(ErrorKind)


def test_marks() -> None:
    assert fmt.mark(result(remaining=Decimal(5), currency="USD"), NOW) == fmt.OK
    low = result(remaining=Decimal(1), total=Decimal(100), currency="USD")
    assert fmt.mark(low, NOW) == fmt.WARN
    assert fmt.mark(result(remaining=Decimal(0), state=KeyState.EXHAUSTED), NOW) == fmt.BAD
    assert (
        fmt.mark(result(expires_at=NOW - timedelta(days=1), remaining=Decimal(3)), NOW) == fmt.BAD
    )
    assert fmt.mark(result(), NOW) == fmt.UNKNOWN  # balance kind without a figure
    assert fmt.mark(result(unlimited=True), NOW) == fmt.OK
    assert fmt.error_mark(ErrorKind.KEY_REJECTED) == fmt.BAD
    assert fmt.error_mark(ErrorKind.NETWORK) == fmt.WARN
    assert fmt.error_mark(ErrorKind.NO_BALANCE_API) == fmt.UNKNOWN


def test_spend_is_spent_never_left() -> None:
    spend = result(provider="anthropic-admin", kind=FigureKind.SPEND, used=Decimal("11.24"),
                   currency="USD", period_start=datetime(2026, 11, 1, tzinfo=UTC))  # fmt: skip
    line = fmt.headline(spend, NOW, fmt.zone("UTC"), EN)
    assert line == "<b>$11.24</b> spent this month"
    assert "left" not in line
    since = result(kind=FigureKind.SPEND, used=Decimal(3), currency="USD",
                   period_start=datetime(2026, 11, 10, tzinfo=UTC))  # fmt: skip
    assert fmt.headline(since, NOW, fmt.zone("UTC"), EN) == "<b>$3.00</b> spent since 2026-11-10"


def test_validity_and_unlimited_and_missing_figure() -> None:
    tz = fmt.zone("UTC")
    validity = result(provider="openai", kind=FigureKind.VALIDITY)
    lines = fmt.detail_lines(validity, NOW, tz, EN, PROVIDERS)
    assert lines[0] == "valid — no balance API" and len(lines) == 2
    assert fmt.headline(result(unlimited=True, used=Decimal(3)), NOW, tz, EN) == "<b>unlimited</b>"
    assert fmt.headline(result(currency="USD"), NOW, tz, EN) == "no figures from the provider"


def key(label: str = "k") -> KeyView:
    return KeyView(
        id="id1", owner_id=1, label=label, provider="deepseek", base_url=None, hint="sk-…abcd"
    )


def test_report_block_escapes_and_shows_last_known() -> None:
    view = fmt.View(EN, fmt.zone("UTC"), NOW, PROVIDERS)
    last = result(provider="deepseek", remaining=Decimal("12.3"), currency="CNY")
    report = KeyReport(key("<b>&</b>"), error=ErrorKind.NETWORK, last_known=last,
                       last_known_at=NOW - timedelta(hours=2))  # fmt: skip
    text = fmt.report_block(report, view)
    assert text.splitlines() == [
        "⚠️ <b>&lt;b&gt;&amp;&lt;/b&gt;</b> · DeepSeek",
        "Couldn't reach the provider (timeout or connection error).",
        "last known: ¥12.30, 2 h ago",
    ]


def test_totals_never_mix_currencies_or_kinds() -> None:
    reports = [
        KeyReport(key(), result=result(remaining=Decimal("1.5"), currency="USD")),
        KeyReport(key(), result=result(remaining=Decimal("2"), currency="usd")),
        KeyReport(key(), result=result(remaining=Decimal("10"), currency="CNY")),
        KeyReport(key(), result=result(kind=FigureKind.SPEND, used=Decimal(50), currency="USD")),
        KeyReport(key(), result=result(unlimited=True, currency="USD")),
        KeyReport(key(), result=result(remaining=Decimal(7))),  # no currency: not summable
        KeyReport(key(), error=ErrorKind.NETWORK,
                  last_known=result(remaining=Decimal(99), currency="USD")),
    ]  # fmt: skip
    assert fmt.totals(reports) == {"USD": Decimal("3.5"), "CNY": Decimal("10")}


def test_pack_splits_only_between_blocks() -> None:
    blocks = [f"<b>{i}</b> " + "x" * 90 for i in range(10)]
    chunks = fmt.pack(blocks, limit=250)
    assert all(fmt.visible_len(c) <= 250 for c in chunks)
    assert "\n\n".join(chunks) == "\n\n".join(blocks)
    assert fmt.visible_len("<b>&lt;</b>🚀") == 3  # "<" plus a surrogate pair


def test_retired_balance_api_is_said_in_the_providers_words() -> None:
    """SiliconFlow .cn retired /v1/user/info: "valid", with why there is no figure."""
    tz = fmt.zone("UTC")
    retired = result(
        provider="siliconflow",
        kind=FigureKind.VALIDITY,
        extras={"hint": "balance_api_retired", "retired_on": "2026-08-14"},
    )
    lines = fmt.detail_lines(retired, NOW, tz, EN, PROVIDERS)
    assert lines == [
        "valid — no balance API",
        "<i>SiliconFlow no longer offers a balance API for this site; the key itself works.</i>",
    ]
    zh = fmt.detail_lines(retired, NOW, tz, ZH, PROVIDERS)
    assert "硅基流动已停止为该站点提供余额接口" in zh[1]
    assert fmt.mark(retired, NOW) == fmt.OK


# -- non-money units and plan windows -------------------------------------------------------


def test_points_and_characters_never_get_a_currency_symbol() -> None:
    assert fmt.money(Decimal(12345), None, EN, unit="points") == "12,345 points"
    assert fmt.money(Decimal("12.5"), None, EN, unit="characters") == "12.50 characters"
    poe = result(provider="poe", remaining=Decimal(12345), unit="points")
    tz = fmt.zone("UTC")
    assert fmt.headline(poe, NOW, tz, EN) == "<b>12,345 points</b> left"
    assert fmt.short_figure(poe, EN) == "12,345 points"
    eleven = result(remaining=Decimal(9000), total=Decimal(10000), used=Decimal(1000),
                    unit="characters")  # fmt: skip
    assert fmt.detail_lines(eleven, NOW, tz, EN, PROVIDERS)[:2] == [
        "<b>9,000 characters</b> left",
        "used 1,000 characters of 10,000 characters",
    ]
    assert "$" not in fmt.short_figure(poe, ZH) and "¥" not in fmt.short_figure(poe, ZH)


def test_points_are_never_added_into_money_totals() -> None:
    reports = [
        KeyReport(key(), result=result(remaining=Decimal("1.5"), currency="USD")),
        KeyReport(key(), result=result(remaining=Decimal(12345), unit="points")),
        KeyReport(key(), result=result(remaining=Decimal(500), unit="characters")),
    ]
    assert fmt.totals(reports) == {"USD": Decimal("1.5")}


def test_quota_result_shows_its_windows_not_a_missing_balance() -> None:
    from bot.billing.models import Window, WindowState

    tz = fmt.zone("Asia/Shanghai")
    quota = result(
        provider="kimi-code",
        kind=FigureKind.QUOTA,
        windows=[
            Window("5h", used_pct=Decimal("52.9"),
                   resets_at=datetime(2026, 11, 24, 6, 20, tzinfo=UTC)),
            Window("weekly", used=Decimal(30), limit=Decimal(120), unit="requests"),
            Window("glm-4.6", state=WindowState.UNLIMITED),
        ],
    )  # fmt: skip
    lines = fmt.detail_lines(quota, NOW, tz, EN, PROVIDERS)
    assert lines == [
        "5-hour ▓▓▓▓░░░░ 52 % · resets 14:20, in 9 h 50 min",
        "weekly ▓▓░░░░░░ 25 % · 90 requests left",
        "glm-4.6: unlimited",
    ]
    assert all("no figures" not in line for line in lines)
    assert fmt.short_figure(quota, EN) == "5-hour: 52 % used"  # the fullest window
    assert fmt.mark(quota, NOW) == fmt.OK
    assert fmt.detail_lines(quota, NOW, tz, ZH, PROVIDERS)[0].startswith("5 小时")

    full = result(kind=FigureKind.QUOTA, windows=[Window("5h", used_pct=Decimal(95))])
    assert fmt.mark(full, NOW) == fmt.WARN
    gone = result(
        kind=FigureKind.QUOTA,
        windows=[Window("5h", state=WindowState.EXHAUSTED), Window("weekly", used_pct=Decimal(99))],
    )
    assert fmt.mark(gone, NOW) == fmt.BAD
    assert fmt.short_figure(gone, EN) == "5-hour: used up"
    assert fmt.mark(result(kind=FigureKind.QUOTA), NOW) == fmt.UNKNOWN
    assert fmt.detail_lines(result(kind=FigureKind.QUOTA), NOW, tz, EN, PROVIDERS) == [
        "no figures from the provider"
    ]
    evil = result(kind=FigureKind.QUOTA, windows=[Window("<b>x", used_pct=Decimal(1))])
    assert fmt.detail_lines(evil, NOW, tz, EN, PROVIDERS) == ["&lt;b&gt;x ▓░░░░░░░ 1 %"]


def test_money_with_windows_keeps_the_money_line_first() -> None:
    from bot.billing.models import Window

    both = result(provider="zhipu", remaining=Decimal("12.3"), currency="CNY",
                  windows=[Window("5h", used_pct=Decimal(10))])  # fmt: skip
    lines = fmt.detail_lines(both, NOW, fmt.zone("UTC"), EN, PROVIDERS)
    assert lines == ["<b>¥12.30</b> left", "5-hour ▓░░░░░░░ 10 %"]
    assert fmt.short_figure(both, EN) == "¥12.30"


def test_wrong_key_type_uses_the_providers_own_words() -> None:
    fal = fmt.error_sentence(ErrorKind.WRONG_KEY_TYPE, EN, PROVIDERS["fal"])
    assert "billing read permission" in fal
    assert "fal" in fmt.error_sentence(ErrorKind.WRONG_KEY_TYPE, ZH, PROVIDERS["fal"])
    assert fal != fmt.error_sentence(ErrorKind.WRONG_KEY_TYPE, EN, PROVIDERS["poe"])  # poe: generic


# -- the window line: bar, what is left, reset in the user's zone, pace -----------------------


def test_window_line_bar_reset_and_relative_time() -> None:
    from bot.billing.models import Window, WindowState

    tz = fmt.zone("Asia/Shanghai")  # NOW is 04:30 there
    five = timedelta(hours=5)
    w = Window("5h", used_pct=Decimal("52.9"), resets_at=NOW + timedelta(hours=2, minutes=10),
               period=five)  # fmt: skip
    assert fmt.window_line(w, NOW, tz, EN) == "5-hour ▓▓▓▓░░░░ 52 % · resets 06:40, in 2 h 10 min"
    zh = "5 小时 ▓▓▓▓░░░░ 已用 52 % · 06:40 重置，还有 2 小时 10 分钟"
    assert fmt.window_line(w, NOW, tz, ZH) == zh
    counted = Window("weekly", used=Decimal(30), limit=Decimal(120), unit="requests",
                     resets_at=NOW + timedelta(days=3, hours=1),
                     period=timedelta(days=7))  # fmt: skip
    # 2026-11-27 05:30 in Shanghai is a Friday; three days ahead shows the weekday
    assert fmt.window_line(counted, NOW, tz, EN) == (
        "weekly ▓▓░░░░░░ 25 % · 90 requests left · resets Fri 05:30, in 3 d 1 h"
    )
    assert "周五 05:30" in fmt.window_line(counted, NOW, tz, ZH)
    tomorrow = Window("daily", used=Decimal(1), limit=Decimal(4), unit="money", currency="USD",
                      resets_at=NOW + timedelta(hours=20))  # fmt: skip
    assert fmt.window_line(tomorrow, NOW, tz, EN) == (
        "daily ▓▓░░░░░░ 25 % · $3.00 left · resets tomorrow 00:30, in 20 h"
    )
    far = Window("monthly", used_pct=Decimal(1), resets_at=NOW + timedelta(days=20))
    assert "resets 2026-12-14 04:30, in 20 d" in fmt.window_line(far, NOW, tz, EN)
    up = Window("5h", state=WindowState.EXHAUSTED, resets_at=NOW + timedelta(seconds=30))
    assert fmt.window_line(up, NOW, tz, EN) == "5-hour ▓▓▓▓▓▓▓▓ used up · resets 04:30, in 1 min"
    # A stored reading whose reset has passed says so instead of counting down.
    old = Window("5h", used_pct=Decimal(90), resets_at=NOW - timedelta(minutes=5))
    assert fmt.window_line(old, NOW, tz, EN) == (
        "5-hour ▓▓▓▓▓▓▓░ 90 % · reset 04:25, figure is from before"
    )


@pytest.mark.parametrize(
    ("pct", "cells"),
    [("0", 0), ("0.4", 1), ("12.4", 1), ("50", 4), ("87.4", 6), ("99.9", 7), ("100", 8)],
)
def test_window_bar_never_looks_empty_when_started_or_full_before_it_is(
    pct: str, cells: int
) -> None:
    assert fmt.bar(Decimal(pct)) == "▓" * cells + "░" * (8 - cells)


def test_pace_mark_only_with_a_known_period_and_usage_clearly_ahead() -> None:
    from bot.billing.models import Window

    tz = fmt.zone("UTC")
    five = timedelta(hours=5)
    resets = NOW + timedelta(hours=3)  # 40 % of the 5 hours gone
    ahead = Window("5h", used_pct=Decimal(60), resets_at=resets, period=five)
    line = fmt.window_line(ahead, NOW, tz, EN)
    assert line.endswith(" · ⚡ only 40 % of the time gone")
    assert "⚡" in fmt.window_line(ahead, NOW, tz, ZH)
    on_pace = Window("5h", used_pct=Decimal(45), resets_at=resets, period=five)
    assert "⚡" not in fmt.window_line(on_pace, NOW, tz, EN)
    # Without the window's length nothing is claimed, however full the window.
    unknown = Window("5h", used_pct=Decimal(95), resets_at=resets)
    assert "⚡" not in fmt.window_line(unknown, NOW, tz, EN)
    # Figures that contradict each other (reset further away than the period) claim nothing.
    odd = Window("5h", used_pct=Decimal(95), resets_at=NOW + timedelta(hours=9), period=five)
    assert fmt.ahead_of_pace(odd, NOW) is None
    assert fmt.ahead_of_pace(Window("5h", used_pct=Decimal(95), period=five), NOW) is None


def test_duration_and_clock_time() -> None:
    assert fmt.duration(59, EN) == "1 min"
    assert fmt.duration(3600, EN) == "1 h"
    assert fmt.duration(3601, EN) == "1 h 1 min"
    assert fmt.duration(86400 * 2 + 3600 * 5, EN) == "2 d 5 h"
    assert fmt.duration(86400 * 7, ZH) == "7 天"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("1e26", "1.00E+26"),  # quantize raised InvalidOperation from ~1e26
        ("1E+40", "1.00E+40"),
        ("-9E+999999", "-9.00E+999999"),
        ("1E-999999", "<0.000001"),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("999999999999999999", "999,999,999,999,999,999.00"),
    ],
)
def test_number_is_total(value: str, text: str) -> None:
    """Any Decimal renders (issue 11, item 4): money, counts and alert payload figures."""
    assert fmt.number(Decimal(value)) == text
    assert fmt.count(Decimal(value)).replace(".00", "") == text.replace(".00", "")
    for unit in ("", "points", "tokens", "quota"):
        assert fmt.money(Decimal(value), None, unit=unit)


def test_alert_texts_render_any_figure() -> None:
    from bot.alerts.outbox import OutboxItem
    from bot.handlers import alert_messages

    now = datetime(2026, 1, 1, tzinfo=UTC)  # rendering only: no comparison with real time
    for kind in ("low", "recovered", "forecast"):
        payload = {"remaining": "9E+999999", "total": "1" * 60, "currency": "USD",
                   "threshold": "50%", "threshold_amount": "4.5E+999999", "label": "x"}  # fmt: skip
        item = OutboxItem(1, 1, "k", kind, payload, 0, now, "en", "UTC")
        text, _ = alert_messages.render(item, now, PROVIDERS)
        assert "9.00E+999999" in text
