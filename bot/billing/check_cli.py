"""`balance-bot check`: check one key from the shell, without Telegram or a database.

The key is read from an environment variable or a file, never from the command line
(argv is visible in `ps` and shell history). Output is plain text; the exit status is
0 on success, 1 when the check failed, 2 for a usage problem.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import textwrap
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TextIO

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import (
    BalanceResult,
    FigureKind,
    KeyRequest,
    KeyState,
    Unit,
    Window,
    WindowState,
)
from bot.billing.providers.base import Provider
from bot.billing.service import BillingService
from bot.billing.ssrf import UrlRefusal
from bot.secret import Secret
from bot.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: The whole check, retries included, ends within this many seconds, so the command answers
#: within 20 s even when a provider hangs (start-up and shutdown take the rest).
CHECK_DEADLINE = 15.0
TIMED_OUT = (
    "The provider did not answer in time (it may be down or hanging); nothing was "
    "changed. Try again later."
)

EXPLAIN: dict[ErrorKind, str] = {
    ErrorKind.KEY_REJECTED: "The provider rejected the key: it is wrong, revoked or its account "
    "is deactivated.",
    ErrorKind.WRONG_KEY_TYPE: "This kind of key cannot read the balance at this provider "
    "(it needs a different key type, such as an admin or session key).",
    ErrorKind.NO_BALANCE_API: "This provider offers no balance API for this key.",
    ErrorKind.RATE_LIMITED: "The provider is rate-limiting requests; try again later.",
    ErrorKind.PROVIDER_ERROR: "The provider answered with an error; try again later.",
    ErrorKind.NETWORK: "The provider could not be reached (timeout, DNS or connection failure).",
    ErrorKind.MALFORMED: "The provider's answer could not be understood (not JSON, missing "
    "fields or too large).",
    ErrorKind.URL_REFUSED: "The base URL was refused by the safety check (https only, no "
    "private or internal addresses).",
    ErrorKind.UNREADABLE: "The stored key could not be decrypted.",
    ErrorKind.PROVIDER_DOWN: "The provider failed several checks in a row just now; it is not "
    "asked again for a little while (circuit breaker).",
}


NO_KEY_ARGUMENT = "keys are never taken on the command line; use --key-env or --key-file"
DESCRIPTION = (
    "Check one API key's balance, quota or validity at its provider and print what the "
    "provider reports, without Telegram and without a database. The key is read from an "
    "environment variable (--key-env) or a file (--key-file), never from the command line: "
    "arguments are visible to other users in `ps` and stay in shell history. Exit status: "
    "0 checked, 1 the check failed, 2 wrong usage."
)


class _RefuseKey(argparse.Action):
    """`--key …` (or a key as a bare argument): refused, and the value never printed."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        kwargs.setdefault("nargs", "?")
        super().__init__(option_strings, dest, **kwargs)  # type: ignore[arg-type]

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        if option_string is None and not values:  # no stray argument: nothing to refuse
            setattr(namespace, self.dest, [])
            return
        parser.error(NO_KEY_ARGUMENT)


def _epilog() -> str:
    # The help is written before any setting is read (a broken .env must not hide it), so
    # it lists the bundled providers, straight from their package, and says that
    # PROVIDERS_FILE adds more; the check itself uses registry_for(settings) (bot/cli.py).
    from bot.billing.registry import discover

    bundled = discover()
    ids = sorted(bundled)
    lines, line = [], "  "
    for pid in ids:
        if len(line) + len(pid) > 78:
            lines.append(line.rstrip())
            line = "  "
        line += pid + "  "
    lines.append(line.rstrip())
    selfhosted = ", ".join(p.id for p in bundled.ordered() if p.needs_base_url)
    return (
        "provider ids:\n" + "\n".join(lines) + "\n"
        "plus any provider declared in PROVIDERS_FILE.\n"
        f"Self-hosted ones need --url: {selfhosted}.\n\n"
        "example:\n  DS_KEY=sk-… balance-bot check --provider deepseek --key-env DS_KEY"
    )


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `balance-bot check`; the key itself is deliberately not one of them."""
    parser.description = textwrap.fill(DESCRIPTION, 78)
    parser.epilog = _epilog()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.allow_abbrev = False  # `--key=…` must never be read as an abbreviation
    parser.add_argument(
        "--provider", required=True, metavar="ID", help="provider id (listed below)"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--key-env", metavar="VAR", help="environment variable holding the key")
    source.add_argument("--key-file", metavar="PATH", help="file holding the key")
    source.add_argument("--key", "--api-key", action=_RefuseKey, help=argparse.SUPPRESS)
    parser.add_argument("--url", metavar="URL", help="the site's base URL (self-hosted relays)")
    parser.add_argument("--currency", metavar="CODE", help="currency option, e.g. CNY")
    parser.add_argument("stray", nargs="*", action=_RefuseKey, help=argparse.SUPPRESS)


def main_check(args: argparse.Namespace, settings: Settings) -> int:
    """Entry point for the argparse sub-command."""
    return asyncio.run(
        run_check(
            settings,
            args.provider,
            getattr(args, "key_env", None),
            getattr(args, "key_file", None),
            getattr(args, "url", None),
            getattr(args, "currency", None),
        )
    )


async def run_check(
    settings: Settings,
    provider_id: str,
    key_env: str | None,
    key_file: str | None,
    url: str | None,
    currency: str | None,
    out: TextIO | None = None,
    *,
    service: BillingService | None = None,
) -> int:
    """Check one key and print the result to `out` (stdout); returns the exit status.

    `service` lets tests (or a caller that already has one) supply the BillingService.
    """

    stream = out if out is not None else sys.stdout

    def say(line: str) -> None:
        print(line, file=stream, flush=True)

    try:
        secret = _read_key(key_env, key_file)
    except _Usage as exc:
        say(f"error: {exc}")
        return EXIT_USAGE

    owned = service is None
    svc = service or BillingService(settings, check_timeout=CHECK_DEADLINE)
    try:
        try:
            provider = svc.provider(provider_id)
        except KeyError:
            known = ", ".join(p.id for p in svc.providers())
            say(f"error: unknown provider {provider_id!r}; known providers: {known}")
            return EXIT_USAGE
        base_url: str | None = None
        if url:
            try:
                base_url = svc.validate_base_url(url)
            except BillingError as exc:
                say(f"error: {url_refused(exc)}")
                return EXIT_FAILED
        elif provider.needs_base_url and not settings.provider_base_url(provider.id):
            say(f"error: provider {provider.id!r} needs --url (the relay's base URL)")
            return EXIT_USAGE

        options = {"currency": currency.strip().upper()} if currency else {}
        request = KeyRequest(
            key_id="cli", provider=provider.id, secret=secret, base_url=base_url, options=options
        )
        outcome = await svc.fetch(request, use_cache=False)
    finally:
        if owned:
            await svc.aclose()

    say(f"provider:  {provider.title} ({provider.id})")
    say(f"key:       {secret.hint}")
    if outcome.result is not None:
        for line in format_result(outcome.result, provider):
            say(line)
        return EXIT_OK
    error = outcome.error
    if isinstance(error, BillingError):
        for line in format_error(error, provider):
            say(line)
    else:
        say("error: " + EXPLAIN[ErrorKind.PROVIDER_ERROR])
    return EXIT_FAILED


#: Refusals that ALLOW_PRIVATE_BASE_URLS lifts (docs/security.md §4.6): the operator may
#: allow a relay on their own network; metadata, tunnelled and reserved addresses never.
_PRIVATE_FIXES = frozenset(
    {
        UrlRefusal.NOT_HTTPS,
        UrlRefusal.NON_STANDARD_PORT,
        UrlRefusal.INTERNAL_NAME,
        UrlRefusal.SINGLE_LABEL,
        UrlRefusal.PRIVATE,
        UrlRefusal.CGNAT,
        UrlRefusal.LOOPBACK,
    }
)


def url_refused(error: BillingError) -> str:
    """One sentence: why the base URL was refused, and the setting that lifts it if any."""
    reason = error.reason if isinstance(error.reason, UrlRefusal) else None
    if reason is UrlRefusal.NOT_HTTPS:
        why = "the base URL must start with https://, because the key is sent to it"
    else:
        why = f"the base URL was refused: {reason.value if reason else error.detail}"
    if reason in _PRIVATE_FIXES:
        why += (
            "; for a relay on your own network, the operator can set ALLOW_PRIVATE_BASE_URLS=true"
        )
    return why + "."


class _Usage(Exception):
    """A problem with how the command was called; the message is safe to print."""


def _read_key(key_env: str | None, key_file: str | None) -> Secret:
    if bool(key_env) == bool(key_file):
        raise _Usage("give exactly one of --key-env VAR or --key-file PATH")
    if key_env:
        value = os.environ.get(key_env, "").strip()
        if not value:
            raise _Usage(f"environment variable {key_env} is not set or empty")
    else:
        assert key_file is not None
        try:
            value = Path(key_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            raise _Usage(f"cannot read the key file {key_file}") from None
        if not value:
            raise _Usage(f"the key file {key_file} is empty")
    if any(c.isspace() for c in value):
        raise _Usage("the key contains whitespace; put exactly one key in the variable or file")
    return Secret(value)


def amount(value: Decimal, *, money: bool = True) -> str:
    """One rule for every provider: 2 decimals (below 1, enough for 2 significant digits,
    at most 6); counts of points, characters or tokens without decimals when whole."""
    if not value.is_finite():
        return str(value)
    if not money and value == value.to_integral_value():
        return f"{value.quantize(Decimal(1)):f}"
    places = 2
    magnitude = abs(value)
    if 0 < magnitude < 1:
        places = min(6, max(2, -magnitude.adjusted() + 1))
    text = f"{value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):f}"
    if places > 2:  # 0.024700 → 0.0247, keeping two decimals at least
        whole, frac = text.split(".")
        text = f"{whole}.{frac.rstrip('0').ljust(2, '0')}"
    return text


def _money(value: Decimal, currency: str | None, *, money: bool = True) -> str:
    text = amount(value, money=money)
    return f"{text} {currency}" if currency else text


def _when(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="minutes")


def _clean(text: object) -> str:
    """Upstream strings (plan names) reach a terminal: drop control characters."""
    return "".join(c if c.isprintable() else "?" for c in str(text))[:200]


def _explained(provider: Provider | None, topic: object) -> str | None:
    text = provider.explanations.get(str(topic)) if provider is not None and topic else None
    return text if isinstance(text, str) else None


def _window(window: Window) -> str:
    """`window 5h: 52% used, resets 2026-12-01 14:20+00:00` — figures as given."""
    parts: list[str] = []
    if window.state is not WindowState.OK:
        parts.append(window.state.value)
    if window.used is not None:
        is_money = window.unit is Unit.MONEY
        unit = window.currency if is_money else window.unit.value
        used = amount(window.used, money=is_money)
        if window.limit is not None:
            used += f" of {amount(window.limit, money=is_money)}"
        parts.append(f"used {used} {unit or ''}".rstrip())
    pct = window.percent_used
    if pct is not None and window.state is WindowState.OK:
        parts.append(f"{pct.quantize(Decimal('0.1'))}% used")
    if window.resets_at is not None:
        parts.append(f"resets {_when(window.resets_at)}")
    return f"window {_clean(window.name)}: " + (", ".join(parts) or "no figures")


def format_result(result: BalanceResult, provider: Provider | None = None) -> list[str]:
    """Plain-text lines for one result; only figures the provider actually gave."""
    lines: list[str] = []
    cur = result.currency or (result.unit.value if result.unit is not None else None)
    is_money = result.unit is None or result.unit is Unit.MONEY
    est = " (estimate)" if result.estimate else ""
    if result.kind is FigureKind.VALIDITY:
        lines.append("status:    valid — no balance API")
        note = _explained(provider, result.extras.get("hint"))
        if note:
            lines.append(f"note:      {note}")
    elif result.kind is FigureKind.SPEND:
        if result.used is not None:
            since = f" since {_when(result.period_start)}" if result.period_start else ""
            lines.append(f"spent:     {_money(result.used, cur, money=is_money)}{since}")
        if result.remaining is not None:
            lines.append(f"remaining: {_money(result.remaining, cur, money=is_money)}{est}")
    elif result.kind is FigureKind.QUOTA:
        if not result.windows:
            lines.append("windows:   not reported")
    else:
        if result.unlimited:
            lines.append("remaining: unlimited")
        elif result.remaining is not None:
            lines.append(f"remaining: {_money(result.remaining, cur, money=is_money)}{est}")
        else:
            lines.append("remaining: not reported")
        if result.total is not None:
            lines.append(f"total:     {_money(result.total, cur, money=is_money)}")
        if result.used is not None:
            lines.append(f"used:      {_money(result.used, cur, money=is_money)}")
    if result.currency:
        lines.append(f"currency:  {result.currency}")
    if result.expires_at is not None:
        lines.append(f"expires:   {_when(result.expires_at)}")
    elif result.never_expires:
        lines.append("expires:   never")
    if result.state is not KeyState.OK:
        lines.append(f"state:     {result.state.value}")
    lines += [_window(w) for w in result.windows]
    for name, value in sorted(result.extras.items()):
        lines.append(f"  {_clean(name)}: {_clean(value)}")
    return lines


def format_error(error: BillingError, provider: Provider | None = None) -> list[str]:
    own = _explained(provider, error.kind.value)
    if error.kind is ErrorKind.NETWORK and error.detail == "timed out":
        own = TIMED_OUT
    lines = [f"error: {own or EXPLAIN.get(error.kind, 'The check failed.')}"]
    facts = [f"kind={error.kind.value}"]
    if error.detail:
        facts.append(f"detail={error.detail}")
    if error.retry_after is not None:
        facts.append(f"retry after {error.retry_after:g} s")
    lines.append("       (" + ", ".join(facts) + ")")
    return lines
