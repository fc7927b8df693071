"""Providers declared in PROVIDERS_FILE: the loader refuses broken files with one line naming
the entry, and a declared provider is checked through the real BillingService and its
guarded HTTP client against the fake provider server."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bot.billing.declared import DeclaredProvider, load_declared
from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import FigureKind, KeyRequest, KeyState
from bot.billing.registry import default_registry, registry_for
from bot.billing.service import BillingService
from bot.errors import ConfigError
from bot.secret import Secret
from tests.billing.conftest import FAST
from tests.e2e.procs import clean_env
from tests.fakes.provider_server import FakeProviderServer

KEY = "acme-key-0123456789abcdef"

GOOD = """\
providers:
  - id: acme
    title: Acme AI
    base_url: {url}
    method: GET
    path: /v1/wallet
    auth:
      type: header
      name: X-Acme-Key
    currency: USD
    response:
      remaining: data.wallet.left
      total: data.wallet.total
      used: data.wallet.spent
      currency: data.wallet.currency
      expiry: data.wallet.expires_at
      error: error.message
"""


def write(tmp_path: Path, text: str, name: str = "providers.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(path: Path, *, allow_private: bool = True) -> list[DeclaredProvider]:
    return load_declared(path, builtin_ids=default_registry(), allow_private=allow_private)


def entry(**fields: Any) -> str:
    """One provider entry as YAML (values already YAML text)."""
    base = {"id": "acme", "title": "Acme AI", "base_url": "https://api.acme.example",
            "path": "/v1/wallet", "auth": "{type: bearer}"}  # fmt: skip
    base.update(fields)
    lines = [f"    {k}: {v}" for k, v in base.items() if v is not None]
    return "providers:\n  - " + "\n".join(lines).lstrip()


# -- the loader -------------------------------------------------------------------------------


def test_good_file_loads_with_canonical_url(tmp_path: Path) -> None:
    (acme,) = load(write(tmp_path, GOOD.format(url="https://API.Acme.example/")))
    assert (acme.id, acme.title, acme.default_base_url) == ("acme", "Acme AI",
                                                            "https://api.acme.example")  # fmt: skip
    assert acme.method == "GET" and acme.auth.type == "header" and acme.auth.name == "X-Acme-Key"
    assert acme.currency == "USD" and acme.response is not None and acme.guarded


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            entry(auth="{type: cookie, name: sid}"),
            "auth.type must be bearer, header, query or body",
        ),
        (entry(path=None), "path is missing"),
        (entry(path="v1/wallet"), "path must start with '/'"),
        (entry(path="/v1/../admin"), "dot segments"),
        (entry(path="/v1/wallet?key=1"), "no query string"),
        (entry(base_url="ftp://api.acme.example"), "base_url refused"),
        (entry(base_url="https://user:pw@api.acme.example"), "base_url refused"),
        (entry(base_url=None), "base_url is missing"),
        (entry(id="openrouter"), "built-in provider"),
        (entry(id="Acme!"), "id must be"),
        (entry(auth="{type: header}"), "auth.name is required"),
        (entry(auth="{type: header, name: Host}"), "not a usable HTTP header name"),
        (entry(auth="{type: body, name: apiKey}"), "needs method POST"),
        (entry(auth="{type: bearer, name: X}"), "not used with bearer"),
        (entry(auth=None), "auth is missing"),
        (entry(method="DELETE"), "method must be GET or POST"),
        (entry(currency="dollars"), "currency must be a 3-letter code"),
        (entry(response="{remaining: 'data[0]'}"), "dotted path"),
        (entry(response="{balance: data.left}"), "unknown response field 'balance'"),
        (entry(response="{currency: data.cur}"), "at least one of remaining, total, used"),
        (entry(respone="{remaining: x}"), "unknown field 'respone'"),
        (entry(title="'" + "x" * 80 + "'"), "title must be"),
        ("providers: [acme]", "must be a mapping"),
        ("provider:\n  - id: acme", "top-level 'providers:' list"),
        ("providers:\n  - id: acme\n   title: [unclosed", "not valid YAML"),
    ],
)
def test_broken_file_is_one_line_naming_the_entry(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"PROVIDERS_FILE {path}")
    assert words in message, message
    if "entry" in message:
        assert "entry 1" in message
    assert info.value.exit_code == 78


def test_duplicate_id_names_the_second_entry(tmp_path: Path) -> None:
    text = (
        entry()
        + "\n  - id: acme\n    title: Again\n    base_url: https://b.example\n"
        + ("    path: /x\n    auth: {type: bearer}\n")
    )
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text))
    assert "entry 2 (id 'acme')" in str(info.value) and "declared twice" in str(info.value)


def test_private_base_url_refused_unless_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, entry(base_url="http://127.0.0.1:8080"))
    with pytest.raises(ConfigError) as info:
        load(path, allow_private=False)
    assert "base_url refused" in str(info.value)
    assert load(path, allow_private=True)[0].default_base_url == "http://127.0.0.1:8080"


def test_missing_file_and_huge_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "nope.yaml")
    big = write(tmp_path, "# " + "x" * (300 * 1024))
    with pytest.raises(ConfigError, match="larger than"):
        load(big)


def test_registry_for_adds_declared_to_builtins(tmp_path: Path, make_settings: Any) -> None:
    path = write(tmp_path, GOOD.format(url="https://api.acme.example"))
    registry = registry_for(make_settings(providers_file=path))
    assert "acme" in registry and "deepseek" in registry
    assert len(registry) == len(default_registry()) + 1
    assert registry_for(make_settings()) is default_registry()


# -- checks through the real stack ------------------------------------------------------------


async def check(
    tmp_path: Path, make_settings: Any, yaml_text: str, server: FakeProviderServer, **kw: Any
) -> Any:
    path = write(tmp_path, yaml_text.replace("{url}", server.url))
    settings = make_settings(providers_file=path, **kw)
    service = BillingService(settings, http_options=FAST)
    try:
        return await service.fetch(KeyRequest("k", "acme", Secret(KEY)), use_cache=False)
    finally:
        await service.aclose()


async def test_header_auth_and_dotted_paths(tmp_path: Path, make_settings: Any) -> None:
    server = await FakeProviderServer().start()
    server.reply("/v1/wallet", json={"data": {"wallet": {"left": "12.50", "total": 20,
                 "spent": 7.5, "currency": "eur", "expires_at": 4102444800}}})  # fmt: skip
    try:
        outcome = await check(tmp_path, make_settings, GOOD, server)
    finally:
        await server.stop()
    result = outcome.result
    assert result is not None, outcome.error
    assert (result.remaining, result.total, result.used) == (12.5, 20, 7.5)
    assert result.currency == "EUR" and result.expires_at is not None
    assert result.expires_at.year == 2100 and result.state is KeyState.OK
    (seen,) = server.requests
    headers = {k.lower(): v for k, v in seen.headers.items()}
    assert seen.method == "GET" and headers["x-acme-key"] == KEY
    assert "authorization" not in headers and KEY not in str(seen.query)


@pytest.mark.parametrize(
    ("auth", "method", "where"),
    [("{type: bearer}", "GET", "bearer"), ("{type: query, name: api_key}", "GET", "query"),
     ("{type: body, name: apiKey}", "POST", "body")],
)  # fmt: skip
async def test_each_auth_type_puts_the_key_only_there(
    tmp_path: Path, make_settings: Any, auth: str, method: str, where: str
) -> None:
    server = await FakeProviderServer().start()
    server.reply("/v1/wallet", json={"balance": "3"})
    text = entry(base_url="{url}", auth=auth, method=method, response="{remaining: balance}")
    try:
        outcome = await check(tmp_path, make_settings, text, server)
    finally:
        await server.stop()
    assert outcome.result is not None and outcome.result.remaining == 3
    (seen,) = server.requests
    assert seen.method == method
    in_header = {k.lower(): v for k, v in seen.headers.items()}.get(
        "authorization"
    ) == f"Bearer {KEY}"
    in_query = seen.query.get("api_key") == KEY
    in_body = seen.json() == {"apiKey": KEY}
    assert (in_header, in_query, in_body) == (where == "bearer", where == "query", where == "body")


async def test_without_response_the_cc_switch_shape_is_read(
    tmp_path: Path, make_settings: Any
) -> None:
    server = await FakeProviderServer().start()
    server.reply("/v1/wallet", json=[{"isValid": True, "planName": "Pro", "remaining": 8,
                                      "unit": "CNY"}])  # fmt: skip
    try:
        outcome = await check(tmp_path, make_settings, entry(base_url="{url}"), server)
    finally:
        await server.stop()
    result = outcome.result
    assert result is not None and result.remaining == 8 and result.currency == "CNY"
    assert result.extras["plan"] == "Pro"


@pytest.mark.parametrize(
    ("reply", "kind", "state"),
    [
        ({"error": {"message": "Invalid API key"}}, "key_rejected", None),
        ({"error": {"message": "quota exhausted"}}, None, KeyState.EXHAUSTED),
        ({"error": {"message": "db is down"}}, "provider_error", None),
        ({"data": {"wallet": {"left": "1E+40"}}}, "malformed", None),
        ({"data": {"wallet": {"left": "9E+999999"}}}, "malformed", None),
        ({"data": {"wallet": {"left": "1" * 60}}}, "malformed", None),
        ({"data": {"wallet": {"left": {"nested": 1}}}}, "malformed", None),
        ({"data": {"wallet": {"left": 5, "currency": "dollars"}}}, "malformed", None),
        ({"data": {}}, "malformed", None),
        ({"data": {"wallet": {"left": "0"}}}, None, KeyState.EXHAUSTED),
        ({"data": {"wallet": {"left": 5, "expires_at": "2020-01-01T00:00:00Z"}}}, None,
         KeyState.EXPIRED),
    ],
)  # fmt: skip
async def test_hostile_or_refusing_answers(
    tmp_path: Path, make_settings: Any, reply: Any, kind: str | None, state: KeyState | None
) -> None:
    server = await FakeProviderServer().start()
    server.reply("/v1/wallet", json=reply)
    try:
        outcome = await check(tmp_path, make_settings, GOOD, server)
    finally:
        await server.stop()
    if kind is not None:
        assert isinstance(outcome.error, BillingError), outcome
        assert outcome.error.kind.value == kind
        assert KEY not in str(outcome.error)
    else:
        assert outcome.result is not None and outcome.result.state is state


async def test_status_codes_map_like_builtins(tmp_path: Path, make_settings: Any) -> None:
    server = await FakeProviderServer().start()
    try:
        statuses = [(401, ErrorKind.KEY_REJECTED), (429, ErrorKind.RATE_LIMITED),
                    (502, ErrorKind.PROVIDER_ERROR), (404, ErrorKind.PROVIDER_ERROR)]  # fmt: skip
        for status, kind in statuses:
            server.clear()
            server.reply("/v1/wallet", status, json={"error": "x"})
            outcome = await check(tmp_path, make_settings, GOOD, server)
            assert isinstance(outcome.error, BillingError) and outcome.error.kind is kind
        server.clear()
        server.reply("/v1/wallet", 302, headers={"Location": "http://169.254.169.254/"})
        outcome = await check(tmp_path, make_settings, GOOD, server)
        assert isinstance(outcome.error, BillingError)
        assert outcome.error.detail == "unexpected redirect" and server.count() == 1
    finally:
        await server.stop()


async def test_declared_url_goes_through_the_ssrf_guard(
    tmp_path: Path, make_settings: Any, dns: Any, connects: Any
) -> None:
    """A public-looking name that resolves to loopback is refused at connect time."""
    dns(["127.0.0.1"])
    text = entry(base_url="https://wallet.acme.example", response="{remaining: balance}")
    path = write(tmp_path, text)
    settings = make_settings(providers_file=path, allow_private_base_urls=False)
    service = BillingService(settings, http_options=FAST)
    try:
        outcome = await service.fetch(KeyRequest("k", "acme", Secret(KEY)), use_cache=False)
    finally:
        await service.aclose()
    assert isinstance(outcome.error, BillingError)
    assert outcome.error.kind is ErrorKind.URL_REFUSED
    assert connects.targets == []


def test_validity_without_figures_is_said(tmp_path: Path) -> None:
    """A cc-switch answer with only isValid: valid, no balance — never a zero."""
    from datetime import UTC, datetime

    from bot.billing.providers._usage_script import read_usage_script

    result = read_usage_script({"isValid": True}, provider="acme", now=datetime.now(UTC))
    assert result.kind is FigureKind.VALIDITY and result.remaining is None


# -- the CLI as a process ---------------------------------------------------------------------


async def run_cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_check_cli_declared_provider_end_to_end(tmp_path: Path) -> None:
    server = await FakeProviderServer().start()
    server.reply("/v1/wallet", json={"data": {"wallet": {"left": "12.50", "total": 20,
                                                         "spent": 7.5}}})  # fmt: skip
    path = write(tmp_path, GOOD.format(url=server.url))
    env = clean_env(ACME_KEY=KEY, PROVIDERS_FILE=str(path), ALLOW_PRIVATE_BASE_URLS="true",
                    TELEGRAM_BOT_TOKEN="")  # fmt: skip
    try:
        code, out, err = await run_cli(
            "check", "--provider", "acme", "--key-env", "ACME_KEY", env=env, cwd=tmp_path
        )
    finally:
        await server.stop()
    assert code == 0, out + err
    assert "provider:  Acme AI (acme)" in out
    assert "remaining: 12.50 USD" in out and "total:     20.00 USD" in out
    assert KEY not in out + err
    assert server.count("/v1/wallet") == 1


@pytest.mark.parametrize("command", [["check", "--provider", "acme", "--key-env", "K"], ["run"]])
async def test_broken_file_stops_start_up_with_exit_78(tmp_path: Path, command: list[str]) -> None:
    path = write(tmp_path, entry(auth="{type: cookie, name: sid}"))
    env = clean_env(K=KEY, PROVIDERS_FILE=str(path), TELEGRAM_BOT_TOKEN="123456:" + "A" * 35)
    code, out, err = await run_cli(*command, env=env, cwd=tmp_path)
    assert code == 78, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "entry 1 (id 'acme')" in lines[0] and "auth.type" in lines[0]
    assert not (tmp_path / "data").exists()  # refused before touching any storage
