"""Providers declared in a YAML file (`PROVIDERS_FILE`), no code (docs/providers.md §declared).

The operator lists extra balance endpoints; each becomes a provider like the built-in ones:
same HTTP layer (the SSRF-guarded client: timeouts, retries, size cap, no redirects),
same redaction (the key travels only where `auth` says), same results and errors. There is
no code execution and no template that runs: a declaration is data — a URL, where the key
goes, and dotted paths into the JSON answer. The schema (README, "Providers declared in a
file") is a public contract:

    providers:
      - id: acme                      # lower-case; provider=acme, --provider acme
        title: Acme AI
        base_url: https://api.acme.example
        method: GET                   # GET or POST
        path: /v1/wallet
        auth: {type: header, name: X-Acme-Key}   # bearer | header | query | body
        currency: USD                 # optional fixed currency when the answer has none
        response:                     # optional dotted paths, each optional
          remaining: data.wallet.left
          total: data.wallet.total
          used: data.wallet.spent
          currency: data.wallet.currency
          unit: data.wallet.unit
          expiry: data.wallet.expires_at   # unix seconds or ISO 8601
          error: error.message

Without `response` the answer is read in the cc-switch "usage script" shape
(`bot.billing.providers._usage_script`). A broken file stops start-up: `load_declared`
raises `ConfigError` (exit 78) with one line naming the file and the entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import BalanceResult, FigureKind, KeyState
from bot.billing.providers._parse import amount_or_none, from_iso, from_unix
from bot.billing.providers._usage_script import (
    read_usage_script,
    state_from_message,
    unit_of,
)
from bot.billing.providers.base import FetchContext, HttpReply, Match, Provider
from bot.billing.ssrf import validate_base_url
from bot.errors import ConfigError

MAX_FILE_BYTES = 256 * 1024
MAX_ENTRIES = 100
AUTH_TYPES = ("bearer", "header", "query", "body")
METHODS = ("GET", "POST")
RESPONSE_FIELDS = ("remaining", "total", "used", "currency", "unit", "expiry", "error")
_ENTRY_FIELDS = frozenset(
    {"id", "title", "base_url", "method", "path", "auth", "currency", "response", "hint"}
)
_ID = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,199}$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")  # an HTTP token
_FIELD = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # a query parameter or JSON field name
_DOTTED = re.compile(r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,15}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_FORBIDDEN_HEADERS = frozenset(
    {"host", "content-length", "content-type", "transfer-encoding", "connection", "cookie"}
)
_AUTH_WORDS = ("api key", "apikey", "token", "unauthori", "authenticat", "forbidden", "invalid")
_MAX_TITLE = 60


@dataclass(frozen=True, slots=True)
class Auth:
    type: str  # bearer | header | query | body
    name: str | None = None


class DeclaredProvider(Provider):
    """One entry of PROVIDERS_FILE; everything it does is decided by the declaration."""

    kind = FigureKind.BALANCE
    needs_base_url = False
    guarded = True  # an operator-written URL still goes through the SSRF guard
    order = 500

    def __init__(
        self,
        *,
        provider_id: str,
        title: str,
        base_url: str,
        method: str,
        path: str,
        auth: Auth,
        currency: str | None,
        response: Mapping[str, str] | None,
    ) -> None:
        self.id = provider_id  # type: ignore[misc]  # per instance, unlike built-ins
        self.title = title  # type: ignore[misc]
        self.hint = title  # type: ignore[misc]
        self.default_base_url = base_url  # type: ignore[misc]
        self.method = method
        self.path = path
        self.auth = auth
        self.currency = currency
        self.response = dict(response) if response is not None else None

    def detect(self, key: str) -> Match:
        return Match.NO  # a declaration says nothing about key shapes

    async def fetch(self, ctx: FetchContext) -> BalanceResult:
        url = ctx.base_url.rstrip("/") + self.path
        key = ctx.key.reveal()
        headers: dict[str, str] = {}
        params: dict[str, str] | None = None
        body: dict[str, str] | None = None
        if self.auth.type == "bearer":
            headers = ctx.bearer()
        elif self.auth.type == "header":
            headers = {str(self.auth.name): key}
        elif self.auth.type == "query":
            params = {str(self.auth.name): key}
        else:
            body = {str(self.auth.name): key}
        if self.method == "POST":
            reply = await ctx.http.post(url, headers=headers, json=body, params=params)
        else:
            reply = await ctx.http.get(url, headers=headers, params=params)
        if reply.status in (401, 403):
            raise BillingError(ErrorKind.KEY_REJECTED, f"HTTP {reply.status}", status=reply.status)
        reply.raise_for_common()
        if not 200 <= reply.status < 300:
            raise BillingError(
                ErrorKind.PROVIDER_ERROR, f"HTTP {reply.status}", status=reply.status
            )
        payload = reply.json()
        if self.response is None:
            return read_usage_script(
                payload, provider=self.id, now=ctx.now, default_currency=self.currency
            )
        if not isinstance(payload, (dict, list)):
            raise BillingError(ErrorKind.MALFORMED, "reply is not JSON data", status=reply.status)
        return self._read(ctx, payload, reply)

    def _read(self, ctx: FetchContext, payload: Any, reply: HttpReply) -> BalanceResult:
        paths = self.response or {}
        error = _at(payload, paths.get("error"))
        if error not in (None, "", False, 0):
            return self._refusal(ctx, error)
        remaining = amount_or_none(_scalar(_at(payload, paths.get("remaining"))))
        total = amount_or_none(_scalar(_at(payload, paths.get("total"))))
        used = amount_or_none(_scalar(_at(payload, paths.get("used"))))
        if remaining is None and total is None and used is None:
            raise BillingError(ErrorKind.MALFORMED, "no figure at the declared paths")
        if remaining is None and total is not None and used is not None:
            remaining = total - used
        currency = self.currency
        raw_currency = _at(payload, paths.get("currency"))
        extras: dict[str, Any] = {}
        if raw_currency is not None:
            if not isinstance(raw_currency, str) or not _CURRENCY.match(raw_currency.upper()):
                raise BillingError(ErrorKind.MALFORMED, "currency is not a currency code")
            currency = raw_currency.upper()
        raw_unit = _at(payload, paths.get("unit"))
        unit = None
        if raw_unit is not None:
            currency, unit, extras = unit_of(raw_unit, currency)
        expires_at = _expiry(_at(payload, paths.get("expiry")))
        state = KeyState.OK
        if expires_at is not None and expires_at <= ctx.now:
            state = KeyState.EXPIRED
        elif remaining is not None and remaining <= 0:
            state = KeyState.EXHAUSTED
        return BalanceResult(
            provider=self.id,
            kind=FigureKind.BALANCE,
            currency=currency,
            remaining=remaining,
            total=total,
            used=used,
            expires_at=expires_at,
            state=state,
            extras=extras,
            fetched_at=ctx.now,
            unit=unit,
        )

    def _refusal(self, ctx: FetchContext, error: Any) -> BalanceResult:
        """The answer's error field is set: an answer about the key, or an error."""
        text = error if isinstance(error, str) else ""
        state = state_from_message(text) if text else None
        if state is not None:
            return BalanceResult(
                provider=self.id,
                kind=FigureKind.BALANCE,
                currency=self.currency,
                remaining=Decimal(0) if state is KeyState.EXHAUSTED else None,
                state=state,
                extras={"source": "error_field"},
                fetched_at=ctx.now,
            )
        if any(word in text.lower() for word in _AUTH_WORDS):
            raise BillingError(ErrorKind.KEY_REJECTED, "auth error in reply body", status=200)
        raise BillingError(ErrorKind.PROVIDER_ERROR, "error in reply body", status=200)


# -- reading the answer ---------------------------------------------------------------------


def _at(payload: Any, dotted: str | None) -> Any:
    """The value at a dotted path (`data.items.0.left`); None when any step is missing."""
    if not dotted:
        return None
    node = payload
    for part in dotted.split("."):
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is None:
            return None
    return node


def _scalar(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        raise BillingError(ErrorKind.MALFORMED, "a figure is not a number")
    return value


def _expiry(value: Any) -> datetime | None:
    """Unix seconds (number or digits) or ISO 8601; 0 / absent = not said."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and not value.strip().lstrip("-").replace(".", "", 1).isdigit():
        return from_iso(value)
    return from_unix(value)


# -- loading the file -----------------------------------------------------------------------


def load_declared(
    path: Path,
    *,
    builtin_ids: Iterable[str],
    allow_private: bool,
    allowed_ports: frozenset[int] = frozenset(),
) -> list[DeclaredProvider]:
    """Every provider in the file, or ConfigError with one line naming what is wrong."""
    where = f"PROVIDERS_FILE {path}"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it ({exc.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: not valid YAML{line}") from None
    if not isinstance(document, dict) or not isinstance(document.get("providers"), list):
        raise ConfigError(f"{where}: expected a top-level 'providers:' list")
    entries = document["providers"]
    if len(entries) > MAX_ENTRIES:
        raise ConfigError(f"{where}: more than {MAX_ENTRIES} providers")
    builtins = set(builtin_ids)
    out: list[DeclaredProvider] = []
    for index, entry in enumerate(entries, start=1):
        label = f"{where}: entry {index}"
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            label += f" (id {entry['id'][:40]!r})"
        try:
            provider = _entry(entry, allow_private=allow_private, allowed_ports=allowed_ports)
        except _Bad as bad:
            raise ConfigError(f"{label}: {bad}") from None
        if provider.id in builtins:
            raise ConfigError(f"{label}: the id is a built-in provider's")
        if any(p.id == provider.id for p in out):
            raise ConfigError(f"{label}: the id is declared twice")
        out.append(provider)
    return out


class _Bad(Exception):
    """One problem in one entry; the message is safe to print (no values but the id)."""


def _entry(entry: Any, *, allow_private: bool, allowed_ports: frozenset[int]) -> DeclaredProvider:
    if not isinstance(entry, dict):
        raise _Bad("each provider must be a mapping of fields")
    unknown = sorted(str(k) for k in entry if k not in _ENTRY_FIELDS)
    if unknown:
        raise _Bad(f"unknown field {unknown[0]!r}")
    provider_id = _text(entry, "id")
    if not _ID.match(provider_id):
        raise _Bad("id must be 1-32 lower-case letters, digits, '-' or '_', starting with a letter")
    title = _text(entry, "title")
    if len(title) > _MAX_TITLE or not title.isprintable():
        raise _Bad(f"title must be printable and at most {_MAX_TITLE} characters")
    try:
        base_url = validate_base_url(
            _text(entry, "base_url"), allow_private=allow_private, allowed_ports=allowed_ports
        )
    except BillingError as exc:
        raise _Bad(f"base_url refused: {exc.detail}") from None
    method = str(entry.get("method", "GET")).upper()
    if method not in METHODS:
        raise _Bad("method must be GET or POST")
    path = _text(entry, "path")
    if not _PATH.match(path) or any(seg in (".", "..") for seg in path.split("/")):
        raise _Bad("path must start with '/' and hold no query string, fragment or dot segments")
    auth = _auth(entry.get("auth"), method)
    currency = entry.get("currency")
    if currency is not None:
        if not isinstance(currency, str) or not _CURRENCY.match(currency.strip().upper()):
            raise _Bad("currency must be a 3-letter code such as USD")
        currency = currency.strip().upper()
    response = entry.get("response")
    if response is not None:
        response = _response(response)
    return DeclaredProvider(
        provider_id=provider_id,
        title=title,
        base_url=base_url,
        method=method,
        path=path,
        auth=auth,
        currency=currency,
        response=response,
    )


def _text(entry: Mapping[str, Any], name: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"{name} is missing")
    return value.strip()


def _auth(raw: Any, method: str) -> Auth:
    if not isinstance(raw, dict):
        raise _Bad("auth is missing (type: bearer, header, query or body)")
    unknown = sorted(str(k) for k in raw if k not in ("type", "name"))
    if unknown:
        raise _Bad(f"unknown auth field {unknown[0]!r}")
    kind = str(raw.get("type", "")).strip().lower()
    if kind not in AUTH_TYPES:
        raise _Bad("auth.type must be bearer, header, query or body")
    if kind == "bearer":
        if raw.get("name") is not None:
            raise _Bad("auth.name is not used with bearer")
        return Auth(kind)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _Bad(f"auth.name is required with auth.type {kind}")
    name = name.strip()
    if kind == "header":
        if not _HEADER.match(name) or name.lower() in _FORBIDDEN_HEADERS:
            raise _Bad("auth.name is not a usable HTTP header name")
    elif not _FIELD.match(name):
        raise _Bad("auth.name must be letters, digits, '_', '.' or '-'")
    if kind == "body" and method != "POST":
        raise _Bad("auth.type body needs method POST")
    return Auth(kind, name)


def _response(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise _Bad("response must map fields to dotted paths")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if name not in RESPONSE_FIELDS:
            raise _Bad(f"unknown response field {str(name)!r}")
        if value is None:
            continue
        if not isinstance(value, str) or not _DOTTED.match(value.strip()):
            raise _Bad(f"response.{name} must be a dotted path such as data.balance")
        out[str(name)] = value.strip()
    if not any(k in out for k in ("remaining", "total", "used")):
        raise _Bad("response needs at least one of remaining, total, used")
    return out
