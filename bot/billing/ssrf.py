"""SSRF guard for user-supplied base URLs (docs/security.md §4).

Two layers, because either alone is bypassable:

* `validate_base_url` runs when a user adds or edits a URL: it rebuilds a canonical URL
  from validated parts, so odd spellings (`0x7f.1`, userinfo, `:22`) never get stored.
* `GuardedResolver` runs on every connection of the guarded HTTP client: it resolves the
  name once, refuses if *any* address is not public, and hands aiohttp exactly the
  addresses it checked. aiohttp connects to those, so there is no second lookup for a
  rebinding DNS server to answer differently.

Refusal reasons are codes (`UrlRefusal`) whose values are fixed English phrases (never the
URL itself), so they are safe to log; the UI translates the code.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from enum import StrEnum
from typing import Any

import httpx
from aiohttp.abc import AbstractResolver, ResolveResult

from bot.billing.errors import BillingError, ErrorKind
from bot.limits import MAX_BASE_URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Ranges `ipaddress.is_global` gets wrong for our purpose (docs/security.md §T9).
_ALWAYS_DENIED_NETS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "64:ff9b::/96",  # NAT64: embeds an IPv4 address, may reach 169.254.169.254
        "64:ff9b:1::/48",  # local-use NAT64
        "2002::/16",  # 6to4: embeds an IPv4 address
        "2001::/32",  # Teredo: embeds an IPv4 address
    )
)
#: Deprecated, returned or documentation-only ranges that `ipaddress` calls global (Python
#: 3.11): no relay lives there, and a network that still routes them is not the internet.
_RETIRED_NETS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "fec0::/10",  # site-local, deprecated (RFC 3879): the old IPv6 "private" range
        "3ffe::/16",  # 6bone, returned (RFC 3701)
        "3fff::/20",  # documentation (RFC 9637)
        "2001:db8::/32",  # documentation (RFC 3849)
        "5f00::/16",  # SRv6 SIDs (RFC 9602)
        "192.88.99.0/24",  # 6to4 relay anycast, deprecated (RFC 7526)
    )
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
#: Cloud metadata endpoints that live outside link-local; refused even when private is allowed.
#: What `allow_private` opens up: loopback, RFC 1918, CGNAT (Docker/Tailscale), ULA.
_LAN_NETS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "::1/128",
        "fc00::/7",
    )
)
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "192.0.0.192",  # Oracle Cloud
    )
)
_DENIED_SUFFIXES = (".local", ".internal", ".localhost", ".localdomain", ".home.arpa")
_DENIED_NAMES = frozenset({"localhost", "localhost.localdomain"})
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NUMERICISH = re.compile(r"^[0-9a-fx.]+$")
_DEFAULT_PORTS = {"https": 443, "http": 80}


class UrlRefusal(StrEnum):
    """Why the guard refused a URL: a code the UI translates (bot/handlers/add.py), never
    matched on its words. The value is the fixed English phrase logs show (not the URL)."""

    INVALID_URL = "not a valid URL"
    TOO_LONG = "the URL is too long"
    NOT_HTTPS = "only https URLs are allowed"
    USERINFO = "URLs with a user name or password are not allowed"
    QUERY_OR_FRAGMENT = "URLs with a query string or fragment are not allowed"
    INVALID_HOST = "not a valid host name"
    NO_HOST = "the URL has no host"
    NON_STANDARD_PORT = "only the standard https port 443 is allowed"
    INVALID_PORT = "not a valid port"
    DOT_SEGMENTS = "URL paths with dot segments are not allowed"
    INTERNAL_NAME = "local and internal host names are not allowed"
    SINGLE_LABEL = "single-label host names are not allowed"
    LINK_LOCAL = "address is link-local or a cloud metadata endpoint"
    UNSPECIFIED = "address is unspecified or multicast"
    EMBEDDED_IPV4 = "address embeds an IPv4 address (NAT64, 6to4 or Teredo)"
    RESERVED = "address is reserved"
    RETIRED = "address is site-local, deprecated or for documentation"
    PRIVATE = "address is private or reserved"
    CGNAT = "address is in the shared (CGNAT) range"
    LOOPBACK = "address is loopback"
    UNPARSABLE = "name resolved to an unparsable address"


def refuse(reason: UrlRefusal) -> BillingError:
    return BillingError(ErrorKind.URL_REFUSED, reason.value, reason=reason)


class AddressRefused(BillingError):
    """Raised from inside the resolver; not an OSError, so aiohttp lets it through as-is."""

    def __init__(self, reason: UrlRefusal) -> None:
        super().__init__(ErrorKind.URL_REFUSED, reason.value, reason=reason)


def address_refusal(ip: IPAddress, *, allow_private: bool) -> UrlRefusal | None:
    """Why this address may not be contacted, or None when it may.

    With `allow_private` (self-hosted relays on a LAN or in Docker) loopback, RFC 1918,
    ULA and CGNAT pass; link-local, metadata, multicast and unspecified never do.
    """
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA or ip.is_link_local:
        return UrlRefusal.LINK_LOCAL
    if ip.is_unspecified or ip.is_multicast:
        return UrlRefusal.UNSPECIFIED
    if any(ip in net for net in _ALWAYS_DENIED_NETS):
        return UrlRefusal.EMBEDDED_IPV4
    if any(ip in net for net in _RETIRED_NETS):
        return UrlRefusal.RETIRED
    if allow_private and any(ip in net for net in _LAN_NETS):
        return None
    if ip.is_reserved:
        return UrlRefusal.RESERVED
    if allow_private:
        return None if ip.is_global else "address is private or reserved"
    if ip in _CGNAT:
        return UrlRefusal.CGNAT
    if ip.is_loopback:
        return UrlRefusal.LOOPBACK
    if not ip.is_global:
        return UrlRefusal.PRIVATE
    return None


def parse_numeric_host(host: str) -> IPAddress | None:
    """An IP for every spelling `getaddrinfo` would accept: `127.1`, `0x7f.1`, `2130706433`."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        pass
    if _NUMERICISH.match(bare.lower()):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def validate_base_url(
    url: str, *, allow_private: bool, allowed_ports: frozenset[int] = frozenset()
) -> str:
    """The canonical form of a user's base URL, or BillingError(URL_REFUSED, reason).

    Canonical: lower-case scheme and IDNA host, numeric hosts normalised, default port
    dropped, no userinfo/query/fragment, no trailing slash, path prefix kept.
    Without `allow_private` only https on port 443 (plus `allowed_ports`) is accepted.
    """
    text = url.strip()
    if not text or any(c in text for c in "\\\r\n\t "):
        raise refuse(UrlRefusal.INVALID_URL)
    if len(text) > MAX_BASE_URL:  # the column's length too (bot/limits.py)
        raise refuse(UrlRefusal.TOO_LONG)
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, ValueError, UnicodeError):
        raise refuse(UrlRefusal.INVALID_URL) from None
    scheme = parsed.scheme.lower()
    if scheme not in ("https", "http"):
        raise refuse(UrlRefusal.NOT_HTTPS)
    if scheme == "http" and not allow_private:
        raise refuse(UrlRefusal.NOT_HTTPS)
    if parsed.userinfo:
        raise refuse(UrlRefusal.USERINFO)
    if parsed.query or parsed.fragment:
        raise refuse(UrlRefusal.QUERY_OR_FRAGMENT)
    try:
        raw_host = parsed.raw_host.decode("ascii").lower()
    except UnicodeDecodeError:
        raise refuse(UrlRefusal.INVALID_HOST) from None
    host = _canonical_host(raw_host, allow_private=allow_private)

    port = parsed.port
    if port is not None and port == _DEFAULT_PORTS[scheme]:
        port = None
    if port is not None and not allow_private and port not in allowed_ports:
        raise refuse(UrlRefusal.NON_STANDARD_PORT)
    if port is not None and not 0 < port < 65536:
        raise refuse(UrlRefusal.INVALID_PORT)

    path = parsed.raw_path.decode("ascii").split("?", 1)[0].rstrip("/")
    if any(seg in (".", "..") for seg in path.split("/")):
        raise refuse(UrlRefusal.DOT_SEGMENTS)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    canonical = f"{scheme}://{netloc}{path}"
    if len(canonical) > MAX_BASE_URL:  # IDNA can make the stored form longer than typed
        raise refuse(UrlRefusal.TOO_LONG)
    return canonical


def _canonical_host(raw_host: str, *, allow_private: bool) -> str:
    if not raw_host:
        raise refuse(UrlRefusal.NO_HOST)
    ip = parse_numeric_host(raw_host)
    if ip is not None:
        reason = address_refusal(ip, allow_private=allow_private)
        if reason:
            raise refuse(reason)
        shown = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
        return str(shown)
    host = raw_host[:-1] if raw_host.endswith(".") else raw_host
    if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        raise refuse(UrlRefusal.INVALID_HOST)
    if host.split(".")[-1].isdigit():
        raise refuse(UrlRefusal.INVALID_HOST)
    if not allow_private:
        if host in _DENIED_NAMES or host.endswith(_DENIED_SUFFIXES):
            raise refuse(UrlRefusal.INTERNAL_NAME)
        if "." not in host:
            raise refuse(UrlRefusal.SINGLE_LABEL)
    return host


def check_request_url(url: httpx.URL, *, allow_private: bool) -> None:
    """Request-time check for what the resolver never sees: scheme and IP-literal hosts.

    aiohttp skips the resolver for IP literals, so they are checked here instead.
    """
    scheme = url.scheme.lower()
    if scheme not in ("https", "http") or (scheme == "http" and not allow_private):
        raise refuse(UrlRefusal.NOT_HTTPS)
    if url.userinfo:
        raise refuse(UrlRefusal.USERINFO)
    ip = parse_numeric_host(url.host)
    if ip is not None:
        reason = address_refusal(ip, allow_private=allow_private)
        if reason:
            raise refuse(reason)


async def getaddrinfo(host: str, port: int, family: int) -> list[tuple[Any, ...]]:
    """The one DNS lookup per connection; a module attribute so tests can script answers."""
    loop = asyncio.get_running_loop()
    return await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)


class GuardedResolver(AbstractResolver):
    """Resolve once, refuse if any address is not allowed, return exactly what was checked."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = host.rstrip(".").lower()
        if not self._allow_private and (name in _DENIED_NAMES or name.endswith(_DENIED_SUFFIXES)):
            raise AddressRefused(UrlRefusal.INTERNAL_NAME)
        infos = await getaddrinfo(host, port, family)
        results: list[ResolveResult] = []
        for fam, _type, proto, _canon, sockaddr in infos:
            if fam not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            except ValueError:
                raise AddressRefused(UrlRefusal.UNPARSABLE) from None
            reason = address_refusal(ip, allow_private=self._allow_private)
            if reason:
                raise AddressRefused(reason)
            results.append(
                ResolveResult(
                    hostname=host,
                    host=str(ip),
                    port=int(sockaddr[1]),
                    family=fam,
                    proto=proto,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        if not results:
            raise OSError("name did not resolve")
        return results

    async def close(self) -> None:
        return None
