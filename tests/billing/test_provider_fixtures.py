"""Run every provider fixture (tests/fixtures/providers/*.yaml) through the real stack.

For each case: a FakeProviderServer on 127.0.0.1 serves the case's routes, and the REAL
provider (from the real registry) runs through the REAL BillingService and HTTP client.
Only the fields listed under `expect` are compared.

Fixture format::

    provider: deepseek
    cases:
      - name: cny balance
        key: sk-test-...                 # optional
        options: {currency: CNY}         # optional KeyRequest.options
        user_url: false                  # true: server URL is the user's base_url (relay)
        url_suffix: ""                   # appended to the server URL
        routes:                          # path -> reply or [reply, ...] (last repeats)
          /user/balance: {status: 200, json: {...}}   # or body: "...", headers: {...}
        expect: {kind: balance, remaining: "110.00", ...}
        # also: unit: points (null = money); windows: [{name: 5h, used_pct: "52",
        #   resets_at: ..., period: 18000, state: ok}, ...] — every window, in order,
        #   only the listed fields compared (percent_used and remaining are computed);
        #   extras_keys: [a, b] — exactly these extras, nothing else kept from the body
        expect_error: {kind: key_rejected}           # instead of expect
        expect_paths: ["/user/balance"]              # optional, in order
        expect_query: {expand: credits}              # optional: first request's query
        auth_header: {Authorization: "Bearer {key}"} # optional; {} or null = no check
        expect_json: {/api/check-balance: {apiKey: "{key}"}}  # optional: these paths were
                                         # POSTed with exactly this JSON body ({key} filled in)

Notes for fixture authors: the HTTP client retries 429/5xx (up to 3 requests in all,
with tiny backoffs here), so a 5xx route shows up 3 times in `expect_paths`; a
Retry-After above 0.05 s is not waited for here. Nothing is frozen: use absolute dates.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.billing.errors import BillingError
from bot.billing.http import HttpOptions
from bot.billing.models import BalanceResult, KeyRequest, Window
from bot.billing.registry import default_registry
from bot.billing.service import BillingService
from bot.secret import Secret
from bot.settings import Settings
from tests.fakes.canned import reply_of
from tests.fakes.provider_server import FakeProviderServer, Reply

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "providers"
DEFAULT_KEY = "sk-test-0123456789abcdef0123"
FAST = HttpOptions(
    connect_timeout=2.0,
    read_timeout=5.0,
    attempt_timeout=8.0,
    backoff_base=0.01,
    backoff_max=0.02,
    max_retry_after=0.05,
)

_DECIMALS = ("remaining", "total", "used")
_BOOLS = ("unlimited", "never_expires", "estimate")
_DATES = ("expires_at", "period_start")
_ENUMS = ("kind", "state")
_CASE_KEYS = {
    "name",
    "key",
    "options",
    "user_url",
    "url_suffix",
    "routes",
    "expect",
    "expect_error",
    "expect_paths",
    "expect_query",
    "auth_header",
    "expect_json",
}
_REPLY_KEYS = {"status", "json", "body", "headers", "delay"}


def _load() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out.append((path, data))
    return out


def _cases() -> list[Any]:
    params = []
    for path, data in _load():
        provider = data.get("provider", path.stem)
        for index, case in enumerate(data.get("cases") or []):
            name = case.get("name", f"case{index}")
            params.append(pytest.param(path, provider, case, id=f"{provider}::{name}"))
    return params


def _reply(spec: dict[str, Any]) -> Reply:
    unknown = set(spec) - _REPLY_KEYS
    assert not unknown, f"unknown reply fields {sorted(unknown)}"
    return reply_of(spec)


def _as_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _same_extra(actual: Any, expected: Any) -> bool:
    """Compared as strings; numbers also match when equal as Decimals ("10" vs "10.00")."""
    if expected is None:
        return actual is None
    if str(actual) == str(expected):
        return True
    a, e = _as_decimal(actual), _as_decimal(expected)
    return a is not None and e is not None and a == e


_WINDOW_DECIMALS = ("used", "limit", "used_pct", "percent_used", "remaining")
_WINDOW_TEXTS = ("name", "currency")
_WINDOW_ENUMS = ("unit", "state")


def compare_window(index: int, window: Window, expect: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    where = f"windows[{index}]"
    for field, want in expect.items():
        if field in _WINDOW_DECIMALS:
            got = getattr(window, field)
            want_d = _as_decimal(want)
            if want is not None and want_d is None:
                problems.append(f"{where}.{field}: expected value {want!r} is not a decimal")
            elif got != want_d or (got is None) != (want_d is None):
                problems.append(f"{where}.{field}: got {got!r}, expected {want!r}")
        elif field in _WINDOW_TEXTS:
            if getattr(window, field) != want:
                problems.append(f"{where}.{field}: got {getattr(window, field)!r}, want {want!r}")
        elif field in _WINDOW_ENUMS:
            got_v = getattr(window, field).value
            if got_v != want:
                problems.append(f"{where}.{field}: got {got_v!r}, expected {want!r}")
        elif field == "resets_at":
            if window.resets_at != _as_datetime(want):
                problems.append(f"{where}.resets_at: got {window.resets_at!r}, want {want!r}")
        elif field == "period":  # seconds
            want_p = None if want is None else timedelta(seconds=int(want))
            if window.period != want_p:
                problems.append(f"{where}.period: got {window.period!r}, expected {want!r}")
        else:
            problems.append(f"unknown window field {field!r}")
    return problems


def compare_result(result: BalanceResult, expect: dict[str, Any]) -> list[str]:
    """Mismatch descriptions (empty when everything listed matches)."""
    problems: list[str] = []
    for field, want in expect.items():
        if field in _DECIMALS:
            got = getattr(result, field)
            want_d = _as_decimal(want)
            if want is not None and want_d is None:
                problems.append(f"{field}: expected value {want!r} is not a decimal")
            elif got != want_d or (got is None) != (want_d is None):
                problems.append(f"{field}: got {got!r}, expected {want!r}")
        elif field in _BOOLS:
            got = getattr(result, field)
            if got is not bool(want):
                problems.append(f"{field}: got {got!r}, expected {want!r}")
        elif field in _DATES:
            got = getattr(result, field)
            if got != _as_datetime(want):
                problems.append(f"{field}: got {got!r}, expected {want!r}")
        elif field in _ENUMS:
            got = getattr(result, field)
            got_v = got.value if got is not None else None
            if got_v != want:
                problems.append(f"{field}: got {got_v!r}, expected {want!r}")
        elif field == "currency":
            if result.currency != want:
                problems.append(f"currency: got {result.currency!r}, expected {want!r}")
        elif field == "extras":
            for name, value in (want or {}).items():
                if name not in result.extras:
                    problems.append(f"extras[{name!r}] missing (have {sorted(result.extras)})")
                elif not _same_extra(result.extras[name], value):
                    problems.append(
                        f"extras[{name!r}]: got {result.extras[name]!r}, expected {value!r}"
                    )
        elif field == "unit":
            got_unit = None if result.unit is None else result.unit.value
            if got_unit != want:
                problems.append(f"unit: got {got_unit!r}, expected {want!r}")
        elif field == "windows":
            wanted = list(want or [])
            names = [w.name for w in result.windows]
            if len(wanted) != len(result.windows):
                problems.append(f"windows: got {len(names)} {names}, expected {len(wanted)}")
                continue
            for index, (window, spec) in enumerate(zip(result.windows, wanted, strict=True)):
                problems += compare_window(index, window, spec or {})
        elif field == "extras_keys":  # the exact set of extras: nothing else was kept
            if sorted(result.extras) != sorted(want or []):
                problems.append(f"extras_keys: got {sorted(result.extras)}, expected {want}")
        elif field == "provider":
            if result.provider != want:
                problems.append(f"provider: got {result.provider!r}, expected {want!r}")
        else:
            problems.append(f"unknown expect field {field!r}")
    return problems


def compare_error(error: BillingError, expect: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for field, want in expect.items():
        if field == "kind":
            if error.kind.value != want:
                problems.append(f"kind: got {error.kind.value!r}, expected {want!r}")
        elif field == "status":
            if error.status != want:
                problems.append(f"status: got {error.status!r}, expected {want!r}")
        elif field == "retry_after":
            if (error.retry_after is None) != (want is None) or (
                want is not None and float(error.retry_after or 0) != float(want)
            ):
                problems.append(f"retry_after: got {error.retry_after!r}, expected {want!r}")
        elif field == "detail":
            if error.detail != want:
                problems.append(f"detail: got {error.detail!r}, expected {want!r}")
        else:
            problems.append(f"unknown expect_error field {field!r}")
    return problems


def _with_key(value: Any, key: str) -> Any:
    """The expected JSON body with every "{key}" in its strings replaced by the case's key."""
    if isinstance(value, str):
        return value.replace("{key}", key)
    if isinstance(value, list):
        return [_with_key(v, key) for v in value]
    if isinstance(value, dict):
        return {k: _with_key(v, key) for k, v in value.items()}
    return value


def test_fixture_files_exist() -> None:
    assert FIXTURES.is_dir(), "tests/fixtures/providers is missing"


@pytest.mark.parametrize(("path", "provider_id", "case"), _cases())
async def test_provider_fixture(path: Path, provider_id: str, case: dict[str, Any]) -> None:
    unknown = set(case) - _CASE_KEYS
    assert not unknown, f"{path.name}: unknown case fields {sorted(unknown)}"
    assert ("expect" in case) != ("expect_error" in case), "give exactly one of expect/error"
    registry = default_registry()
    assert provider_id in registry, f"{path.name}: no registered provider {provider_id!r}"

    key = str(case.get("key") or DEFAULT_KEY)
    user_url = bool(case.get("user_url", False))
    server = await FakeProviderServer().start()
    try:
        for route, spec in (case.get("routes") or {}).items():
            if isinstance(spec, list):
                server.script(route, [_reply(s) for s in spec])
            else:
                server.script(route, [_reply(spec)])
        base = server.url + str(case.get("url_suffix") or "")
        env_id = provider_id.upper().replace("-", "_")
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            allow_private_base_urls=user_url,
            provider_base_urls={} if user_url else {env_id: base},
        )
        request = KeyRequest(
            key_id="fixture",
            provider=provider_id,
            secret=Secret(key),
            base_url=base if user_url else None,
            options={str(k): str(v) for k, v in (case.get("options") or {}).items()},
        )
        service = BillingService(settings, registry=registry, http_options=FAST)
        try:
            outcome = await service.fetch(request, use_cache=False)
        finally:
            await service.aclose()
    finally:
        await server.stop()

    seen = [r.path for r in server.requests]
    assert server.requests, "the provider made no request to the fake server"
    for r in server.requests:
        assert key not in str(r.query), f"key sent in the query string of {r.path}"

    auth = case.get("auth_header", {"Authorization": "Bearer {key}"})
    for name, template in (auth or {}).items():
        want = None if template is None else str(template).replace("{key}", key)  # null: absent
        for r in server.requests:
            got = {k.lower(): v for k, v in r.headers.items()}.get(name.lower())
            assert got == want, f"{r.path}: header {name} is {got!r}, expected {want!r}"

    for path, body in (case.get("expect_json") or {}).items():
        sent = [r for r in server.requests if r.path == path]
        assert sent, f"no request to {path}"
        want_body = _with_key(body, key)
        for r in sent:
            assert r.method == "POST", f"{path}: {r.method}, expected POST"
            assert r.json() == want_body, f"{path}: body {r.json()!r}, expected {want_body!r}"

    if "expect_paths" in case:
        assert seen == list(case["expect_paths"]), f"request paths {seen}"
    if "expect_query" in case:  # the first request's query string, exactly
        want_query = {str(k): str(v) for k, v in (case["expect_query"] or {}).items()}
        assert dict(server.requests[0].query) == want_query, server.requests[0].query

    if "expect_error" in case:
        assert outcome.error is not None, f"expected an error, got {outcome.result!r}"
        assert isinstance(outcome.error, BillingError), repr(outcome.error)
        assert key not in str(outcome.error), "the key leaked into the error message"
        problems = compare_error(outcome.error, case["expect_error"] or {})
    else:
        assert outcome.result is not None, f"expected a result, got error {outcome.error!r}"
        assert outcome.result.provider == provider_id
        problems = compare_result(outcome.result, case["expect"] or {})
    assert not problems, "; ".join(problems)


def test_every_provider_has_a_fixture() -> None:
    have = {data.get("provider", path.stem) for path, data in _load()}
    missing = sorted(set(default_registry()) - have)
    assert not missing, f"providers without tests/fixtures/providers/<id>.yaml: {missing}"


def test_every_fixture_names_a_registered_provider() -> None:
    registry = default_registry()
    unknown = sorted(
        f"{path.name}: {data.get('provider')!r}"
        for path, data in _load()
        if data.get("provider") not in registry
    )
    assert not unknown, f"fixtures for unknown providers: {unknown}"
