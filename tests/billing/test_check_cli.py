"""`balance-bot check`: key from env/file only, plain-text output, exit codes."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bot.billing.check_cli import (
    EXPLAIN,
    add_check_arguments,
    amount,
    format_error,
    format_result,
    main_check,
    run_check,
)
from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState
from bot.billing.registry import default_registry
from tests.billing.conftest import make_service, settings

KEY = "echo-cli-secret-9876"


async def _run(cfg, provider="test-echo", *, env="CHECK_KEY", file=None, url=None, cur=None):
    out = io.StringIO()
    service = make_service(cfg)
    code = await run_check(cfg, provider, env, file, url, cur, out, service=service)
    await service.aclose()
    return code, out.getvalue()


async def test_success_prints_figures_not_key(server, monkeypatch) -> None:
    monkeypatch.setenv("CHECK_KEY", KEY)
    server.reply("/balance", json={"remaining": "12.50"})
    code, text = await _run(settings(test_echo=server.url), cur="cny")
    assert code == 0
    assert "remaining: 12.50 CNY" in text
    assert KEY not in text and "…9876" in text
    assert server.requests[0].authorization == f"Bearer {KEY}"


async def test_key_from_file(server, tmp_path) -> None:
    path = tmp_path / "key.txt"
    path.write_text(KEY + "\n")
    server.reply("/balance", json={"remaining": "1"})
    code, text = await _run(settings(test_echo=server.url), env=None, file=str(path))
    assert code == 0 and KEY not in text


async def test_rejected_key_explained(server, monkeypatch) -> None:
    monkeypatch.setenv("CHECK_KEY", KEY)
    server.reply("/balance", status=401, json={"error": {"message": f"bad key {KEY}"}})
    code, text = await _run(settings(test_echo=server.url))
    assert code == 1
    assert EXPLAIN[ErrorKind.KEY_REJECTED] in text
    assert KEY not in text


async def test_missing_env_is_usage_error(monkeypatch) -> None:
    monkeypatch.delenv("CHECK_KEY", raising=False)
    code, text = await _run(settings())
    assert code == 2 and "CHECK_KEY" in text


async def test_unreadable_file_is_usage_error(tmp_path) -> None:
    code, text = await _run(settings(), env=None, file=str(tmp_path / "missing"))
    assert code == 2 and "cannot read" in text


async def test_unknown_provider_lists_known(monkeypatch) -> None:
    monkeypatch.setenv("CHECK_KEY", KEY)
    code, text = await _run(settings(), provider="nope")
    assert code == 2 and "test-echo" in text


async def test_relay_needs_url(monkeypatch) -> None:
    monkeypatch.setenv("CHECK_KEY", KEY)
    code, text = await _run(settings(), provider="relay")
    assert code == 2 and "--url" in text


async def test_refused_url(monkeypatch) -> None:
    monkeypatch.setenv("CHECK_KEY", KEY)
    code, text = await _run(settings(), provider="relay", url="https://169.254.169.254")
    assert code == 1 and "the base URL was refused" in text and "metadata" in text


async def test_relay_with_url(server, monkeypatch) -> None:
    monkeypatch.setenv("CHECK_KEY", KEY)
    server.reply("/v1/balance", json={"remaining": "3"})
    code, text = await _run(settings(allow_private=True), provider="relay", url=f"{server.url}/v1/")
    assert code == 0 and "remaining: 3" in text


def test_arguments_never_take_the_key() -> None:
    parser = argparse.ArgumentParser()
    add_check_arguments(parser)
    args = parser.parse_args(["--provider", "deepseek", "--key-env", "DS_KEY", "--currency", "CNY"])
    assert (args.provider, args.key_env, args.key_file, args.currency) == (
        "deepseek",
        "DS_KEY",
        None,
        "CNY",
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--provider", "deepseek", "--key", "sk-abc"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--provider", "deepseek"])  # a key source is required


def test_main_check_with_real_registry(monkeypatch, capsys) -> None:
    """The one-line wiring path: argparse namespace + settings, real provider if present."""
    if "deepseek" not in default_registry():
        pytest.skip("deepseek provider not present")
    # main_check runs its own event loop (asyncio.run), so this sync test stops at a
    # usage error before any request; run_check is exercised end to end below.
    monkeypatch.delenv("NOPE_KEY", raising=False)
    args = argparse.Namespace(
        provider="deepseek", key_env="NOPE_KEY", key_file=None, url=None, currency=None
    )
    assert main_check(args, settings()) == 2
    assert "NOPE_KEY" in capsys.readouterr().out


async def test_real_provider_through_run_check(server, monkeypatch) -> None:
    if "deepseek" not in default_registry():
        pytest.skip("deepseek provider not present")
    monkeypatch.setenv("CHECK_KEY", "sk-0123456789abcdef0123456789abcdef")
    server.reply(
        "/user/balance",
        json={
            "is_available": True,
            "balance_infos": [
                {
                    "currency": "CNY",
                    "total_balance": "110.00",
                    "granted_balance": "10.00",
                    "topped_up_balance": "100.00",
                }
            ],
        },
    )
    out = io.StringIO()
    cfg = settings(deepseek=server.url)
    code = await run_check(cfg, "deepseek", "CHECK_KEY", None, None, None, out)
    assert code == 0, out.getvalue()
    assert "remaining: 110.00 CNY" in out.getvalue()


def test_every_error_kind_has_an_explanation() -> None:
    assert set(EXPLAIN) == set(ErrorKind)
    for kind in ErrorKind:
        lines = format_error(BillingError(kind, "HTTP 500", retry_after=3))
        assert lines[0].startswith("error: ") and kind.value in lines[1]


def _result(**kw) -> BalanceResult:
    return BalanceResult(provider="x", **kw)


def test_format_variants() -> None:
    unlimited = format_result(_result(kind=FigureKind.BALANCE, unlimited=True, never_expires=True))
    assert "remaining: unlimited" in unlimited and "expires:   never" in unlimited

    full = format_result(
        _result(
            kind=FigureKind.BALANCE,
            currency="USD",
            remaining=Decimal("1E+1"),
            total=Decimal("25"),
            used=Decimal("15"),
            expires_at=datetime(2026, 12, 1, tzinfo=UTC),
            state=KeyState.EXPIRED,
            extras={"plan": "pro\x1b[31m"},
        )
    )
    assert "remaining: 10.00 USD" in full and "total:     25.00 USD" in full
    assert "used:      15.00 USD" in full and "2026-12-01 00:00+00:00" in "\n".join(full)
    assert "state:     expired" in full
    assert all("\x1b" not in line for line in full)

    spend = format_result(
        _result(
            kind=FigureKind.SPEND,
            currency="USD",
            used=Decimal("4.2"),
            period_start=datetime(2026, 11, 1, tzinfo=UTC),
        )
    )
    assert spend[0].startswith("spent:     4.20 USD since 2026-11-01")

    validity = format_result(_result(kind=FigureKind.VALIDITY))
    assert validity == ["status:    valid — no balance API"]

    estimate = format_result(
        _result(kind=FigureKind.BALANCE, currency="USD", remaining=Decimal("3"), estimate=True)
    )
    assert "remaining: 3.00 USD (estimate)" in estimate


@pytest.mark.parametrize(
    ("value", "money", "shown"),
    [
        ("12.5", True, "12.50"),
        ("110", True, "110.00"),
        ("5384.70840195", True, "5384.71"),
        ("1E+1", True, "10.00"),
        ("0.0247", True, "0.025"),
        ("0.5", True, "0.50"),
        ("-3.456", True, "-3.46"),
        ("0", True, "0.00"),
        ("10000", False, "10000"),  # characters, points: whole counts stay whole
        ("12.5", False, "12.50"),
    ],
)
def test_amounts_have_one_rule_for_every_provider(value: str, money: bool, shown: str) -> None:
    assert amount(Decimal(value), money=money) == shown


def test_provider_explanations_replace_the_generic_words() -> None:
    siliconflow = default_registry()["siliconflow"]
    retired = BalanceResult(
        provider="siliconflow", kind=FigureKind.VALIDITY, extras={"hint": "balance_api_retired"}
    )
    lines = format_result(retired, siliconflow)
    assert lines[:2] == [
        "status:    valid — no balance API",
        "note:      SiliconFlow no longer offers a balance API for this site; the key itself "
        "works.",
    ]
    assert format_error(BillingError(ErrorKind.NETWORK), siliconflow)[0] == (
        "error: " + EXPLAIN[ErrorKind.NETWORK]
    )


def test_format_quota_windows_and_points() -> None:
    from datetime import timedelta

    from bot.billing.models import Window, WindowState

    reset = datetime(2026, 12, 1, 14, 20, tzinfo=UTC)
    quota = BalanceResult(
        provider="kimi-code", kind=FigureKind.QUOTA,
        windows=(Window("5h", used_pct=Decimal("52.25"), resets_at=reset),
                 Window("weekly", used=Decimal(30), limit=Decimal(120), unit="requests",
                        period=timedelta(days=7)),
                 Window("MiniMax-M2", state=WindowState.EXHAUSTED)),
    )  # fmt: skip
    lines = format_result(quota)
    assert "remaining: not reported" not in lines
    assert lines == [
        "window 5h: 52.2% used, resets 2026-12-01 14:20+00:00",
        "window weekly: used 30 of 120 requests, 25.0% used",
        "window MiniMax-M2: exhausted",
    ]
    points = BalanceResult(provider="poe", kind=FigureKind.BALANCE, remaining=Decimal(12345),
                           unit="points")  # fmt: skip
    assert format_result(points) == ["remaining: 12345 points"]
