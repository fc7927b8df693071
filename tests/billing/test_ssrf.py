"""SSRF checklist (docs/security.md §7): add-time validation and connect-time enforcement."""

from __future__ import annotations

import gzip
import ipaddress
import tracemalloc

import pytest

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.http import HttpClients, ProviderHttpClient, _Decoder, _make_client
from bot.billing.models import KeyRequest
from bot.billing.ssrf import GuardedResolver, address_refusal, validate_base_url
from bot.secret import Secret
from tests.billing.conftest import FAST, make_service, settings
from tests.fakes.provider_server import FakeProviderServer

REFUSED_AT_ADD = [
    "http://relay.example.com",
    "ftp://relay.example.com",
    "file:///etc/passwd",
    "https://user:pw@relay.example.com",
    "https://relay.example.com:22",
    "https://localhost",
    "https://127.0.0.1",
    "https://[::1]",
    "https://0.0.0.0",
    "https://169.254.169.254",
    "https://[::ffff:169.254.169.254]",
    "https://100.100.100.200",
    "https://10.0.0.1",
    "https://[fd00::1]",
    "https://2130706433",
    "https://0x7f.1",
    "https://127.1",
    "https://0177.0.0.1",
    "https://metadata.google.internal",
    "https://printer.local",
    "https://intranet",
    "https://[64:ff9b::a9fe:a9fe]",
    "https://[2002:a9fe:a9fe::]",
    "https://224.0.0.1",
    "https://relay.example.com/v1?key=sk-abc",
    "https://relay.example.com/#frag",
    "",
    "not a url",
]


@pytest.mark.parametrize("url", REFUSED_AT_ADD)
def test_refused_at_add(url: str) -> None:
    with pytest.raises(BillingError) as info:
        validate_base_url(url, allow_private=False)
    assert info.value.kind is ErrorKind.URL_REFUSED
    assert "sk-abc" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTPS://Relay.Example.COM:443/v1/", "https://relay.example.com/v1"),
        ("https://relay.example.com", "https://relay.example.com"),
        ("https://relay.example.com/", "https://relay.example.com"),
        ("https://relay.example.com./api", "https://relay.example.com/api"),
        ("https://bücher.example/api/", "https://xn--bcher-kva.example/api"),
        ("  https://relay.example.com/openai/v1  ", "https://relay.example.com/openai/v1"),
        ("https://8.8.8.8/v1", "https://8.8.8.8/v1"),
        ("https://relay.example.com/a/../b", "https://relay.example.com/b"),
    ],
)
def test_canonical_form(url: str, canonical: str) -> None:
    assert validate_base_url(url, allow_private=False) == canonical


def test_extra_port_allowed_by_operator() -> None:
    url = "https://relay.example.com:8443/v1"
    assert validate_base_url(url, allow_private=False, allowed_ports=frozenset({8443})) == url


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("http://127.1:3000/", "http://127.0.0.1:3000"),
        ("http://2130706433:3000", "http://127.0.0.1:3000"),
        ("http://localhost:3000/api", "http://localhost:3000/api"),
        ("http://10.0.0.1", "http://10.0.0.1"),
        ("http://[fd00::1]:8080", "http://[fd00::1]:8080"),
        ("http://one-api:3000", "http://one-api:3000"),
        ("https://relay.internal:22", "https://relay.internal:22"),
    ],
)
def test_allow_private_accepts_lan(url: str, canonical: str) -> None:
    assert validate_base_url(url, allow_private=True) == canonical


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254",
        "http://[::ffff:169.254.169.254]",
        "http://100.100.100.200",
        "http://[fe80::1]",
        "http://0.0.0.0:3000",
        "http://[64:ff9b::a9fe:a9fe]",
        "ftp://127.0.0.1",
        "http://u:p@127.0.0.1",
    ],
)
def test_allow_private_still_refuses_metadata(url: str) -> None:
    with pytest.raises(BillingError) as info:
        validate_base_url(url, allow_private=True)
    assert info.value.kind is ErrorKind.URL_REFUSED


@pytest.mark.parametrize(
    ("ip", "allowed_public", "allowed_private"),
    [
        ("8.8.8.8", True, True),
        ("2606:4700:4700::1111", True, True),
        ("127.0.0.1", False, True),
        ("::1", False, True),
        ("::ffff:127.0.0.1", False, True),
        ("10.1.2.3", False, True),
        ("192.168.1.1", False, True),
        ("100.64.0.1", False, True),
        ("fd00::1", False, True),
        ("169.254.169.254", False, False),
        ("::ffff:169.254.169.254", False, False),
        ("100.100.100.200", False, False),
        ("fd00:ec2::254", False, False),
        ("fe80::1", False, False),
        ("0.0.0.0", False, False),
        ("::", False, False),
        ("224.0.0.1", False, False),
        ("ff02::1", False, False),
        ("64:ff9b::a9fe:a9fe", False, False),
        ("64:ff9b:1::1", False, False),
        ("2002:a9fe:a9fe::", False, False),
        ("240.0.0.1", False, False),
        # issue 11: deprecated and special IPv6 ranges `ipaddress` calls global
        ("fec0::1", False, False),  # site-local (RFC 3879)
        ("feff:ffff::1", False, False),  # top of fec0::/10
        ("3ffe:1::1", False, False),  # 6bone
        ("3fff::1", False, False),  # documentation (RFC 9637)
        ("2001:db8::1", False, False),  # documentation
        ("5f00::1", False, False),  # SRv6 SIDs
        ("192.88.99.1", False, False),  # 6to4 relay anycast
        ("::7f00:1", False, False),  # IPv4-compatible ::127.0.0.1 (deprecated)
        ("::a9fe:a9fe", False, False),  # IPv4-compatible ::169.254.169.254
        ("::ffff:0:a9fe:a9fe", False, False),  # SIIT IPv4-translated
        ("100::1", False, False),  # discard-only
        ("2001:10::1", False, False),  # ORCHID (deprecated)
        ("2001:2::1", False, False),  # benchmarking
        ("0.1.2.3", False, False),  # "this network"
        ("198.18.0.1", False, False),  # benchmarking
        ("255.255.255.255", False, False),  # broadcast
    ],
)
def test_address_policy(ip: str, allowed_public: bool, allowed_private: bool) -> None:
    addr = ipaddress.ip_address(ip)
    assert (address_refusal(addr, allow_private=False) is None) is allowed_public
    assert (address_refusal(addr, allow_private=True) is None) is allowed_private


@pytest.mark.parametrize(
    "answers",
    [
        ["8.8.8.8", "127.0.0.1"],  # any bad address rejects the name
        ["127.0.0.1"],
        ["169.254.169.254"],
        ["::ffff:169.254.169.254"],
        ["100.100.100.200"],
        ["10.0.0.1"],
        ["fd00::1"],
        ["64:ff9b::a9fe:a9fe"],  # NAT64 AAAA
        ["2002:a9fe:a9fe::"],  # 6to4 AAAA
        ["8.8.8.8", "64:ff9b::a9fe:a9fe"],
    ],
)
async def test_resolver_rejects_any_bad_address(dns, answers: list[str]) -> None:
    dns(answers)
    with pytest.raises(BillingError) as info:
        await GuardedResolver(allow_private=False).resolve("relay.example.com", 443)
    assert info.value.kind is ErrorKind.URL_REFUSED


async def test_resolver_returns_exactly_the_checked_addresses(dns) -> None:
    dns(["8.8.8.8", "2606:4700:4700::1111"])
    got = await GuardedResolver(allow_private=False).resolve("relay.example.com", 443)
    assert [r["host"] for r in got] == ["8.8.8.8", "2606:4700:4700::1111"]
    assert all(r["port"] == 443 for r in got)


async def test_resolver_private_mode_passes_loopback_but_not_metadata(dns) -> None:
    dns(["127.0.0.1"])
    assert await GuardedResolver(allow_private=True).resolve("one-api", 3000)
    dns(["127.0.0.1", "169.254.169.254"])
    with pytest.raises(BillingError):
        await GuardedResolver(allow_private=True).resolve("one-api", 3000)


async def test_resolver_refuses_internal_names_without_lookup(dns) -> None:
    scripted = dns(["8.8.8.8"])
    with pytest.raises(BillingError):
        await GuardedResolver(allow_private=False).resolve("metadata.google.internal", 443)
    assert scripted.calls == []


# -- through the real guarded HTTP client ---------------------------------------------


async def test_name_resolving_to_loopback_never_connects(server, dns, connects) -> None:
    """https://evil.example → [8.8.8.8, 127.0.0.1]: refused before any socket is opened."""
    server.reply("/balance", json={"remaining": 1})
    dns(["8.8.8.8", "127.0.0.1"])
    service = make_service(settings())
    try:
        outcome = await service.fetch(
            KeyRequest("k", "test-echo", Secret("sk-canary-ssrf-0001"), "https://evil.example")
        )
    finally:
        await service.aclose()
    assert outcome.error is not None and outcome.error.kind is ErrorKind.URL_REFUSED
    assert connects.targets == []
    assert server.count() == 0


async def test_dns_rebinding_second_answer_is_never_used(server, dns, connects) -> None:
    """First lookup public, later ones 127.0.0.1: only the validated IP is ever dialled.

    The public answer (8.8.8.8) is routed to the local fake server at socket level, so the
    first request succeeds; the connection that would need a fresh lookup is refused.
    """
    server.reply("/balance", json={"remaining": 1})
    scripted = dns(["8.8.8.8"], ["127.0.0.1"])
    connects.redirect["8.8.8.8"] = ("127.0.0.1", server.port)
    raw = _make_client(FAST, GuardedResolver, allow_private=False)
    # guard_allow_private=None skips the scheme check so plain http can reach the fake;
    # what is under test here is the connector + resolver pair.
    client = ProviderHttpClient(raw, FAST)
    url = f"http://rebind.example:{server.port}/balance"
    try:
        first = await client.get(url, headers={"Connection": "close"})
        assert first.status == 200
        assert scripted.calls == ["rebind.example"]  # one lookup for one connection
        with pytest.raises(BillingError) as info:
            await client.get(url, headers={"Connection": "close"})
        assert info.value.kind is ErrorKind.URL_REFUSED
    finally:
        await raw.aclose()
    assert "127.0.0.1" not in connects.targets
    assert set(connects.targets) == {"8.8.8.8"}
    assert server.count() == 1


async def test_literal_ip_checked_even_though_aiohttp_skips_resolver(server, connects) -> None:
    clients = HttpClients(FAST, allow_private=False)
    try:
        for url in (
            f"https://127.0.0.1:{server.port}/balance",
            "https://[::ffff:169.254.169.254]/latest/meta-data",
            "https://169.254.169.254/latest/meta-data",
        ):
            with pytest.raises(BillingError) as info:
                await clients.guarded.get(url, headers={})
            assert info.value.kind is ErrorKind.URL_REFUSED
    finally:
        await clients.aclose()
    assert connects.targets == []


async def test_allow_private_loopback_passes_metadata_refused(server, dns) -> None:
    server.reply("/balance", json={"remaining": "2.5"})
    service = make_service(settings(allow_private=True))
    try:
        ok = await service.fetch(KeyRequest("a", "relay", Secret("sk-relay-key-1"), server.url))
        dns(["169.254.169.254"])
        meta = await service.fetch(
            KeyRequest("b", "relay", Secret("sk-relay-key-2"), "http://metadata.example")
        )
        literal = await service.fetch(
            KeyRequest("c", "relay", Secret("sk-relay-key-3"), "http://169.254.169.254")
        )
    finally:
        await service.aclose()
    assert ok.ok and ok.result is not None and str(ok.result.remaining) == "2.5"
    assert meta.error is not None and meta.error.kind is ErrorKind.URL_REFUSED
    assert literal.error is not None and literal.error.kind is ErrorKind.URL_REFUSED
    assert server.count() == 1


async def test_redirect_to_metadata_not_followed(server) -> None:
    server.reply("/balance", status=302, headers={"Location": "http://169.254.169.254/"})
    clients = HttpClients(FAST, allow_private=True)
    try:
        with pytest.raises(BillingError) as info:
            await clients.guarded.get(f"{server.url}/balance", headers={})
    finally:
        await clients.aclose()
    assert info.value.kind is ErrorKind.PROVIDER_ERROR
    assert info.value.detail == "unexpected redirect"
    assert "169.254" not in str(info.value)
    assert server.count() == 1


async def test_https_proxy_env_ignored(server, monkeypatch) -> None:
    proxy = await FakeProviderServer().start()
    try:
        proxy.reply("/balance", json={"remaining": 999})
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        server.reply("/balance", json={"remaining": 1})
        clients = HttpClients(FAST, allow_private=True)
        try:
            for client in (clients.trusted, clients.guarded):
                reply = await client.get(f"{server.url}/balance", headers={})
                assert reply.json() == {"remaining": 1}
        finally:
            await clients.aclose()
        assert proxy.count() == 0
        assert server.count() == 2
    finally:
        await proxy.stop()


async def test_ten_megabyte_body_aborted(server) -> None:
    server.reply("/big", body=b"x" * (10 * 1024 * 1024))
    clients = HttpClients(FAST)
    try:
        with pytest.raises(BillingError) as info:
            await clients.trusted.get(f"{server.url}/big", headers={})
    finally:
        await clients.aclose()
    assert info.value.kind is ErrorKind.MALFORMED
    assert info.value.detail == "response too large"


async def test_chunked_body_without_length_aborted_at_cap(server) -> None:
    """No Content-Length to trust: the streaming counter must stop it."""
    from aiohttp import web

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(200):  # 200 × 64 KiB = 12.5 MiB if nobody stops reading
            await resp.write(b"y" * 65536)
        return resp

    app = web.Application()
    app.router.add_get("/stream", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    clients = HttpClients(FAST)
    try:
        with pytest.raises(BillingError) as info:
            await clients.trusted.get(f"http://127.0.0.1:{port}/stream", headers={})
    finally:
        await clients.aclose()
        await runner.cleanup()
    assert info.value.detail == "response too large"


async def test_gzip_bomb_aborted(server) -> None:
    bomb = gzip.compress(b"\0" * (10 * 1024 * 1024))
    assert len(bomb) < 64 * 1024
    server.reply(
        "/bomb",
        body=bomb,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    clients = HttpClients(FAST)
    try:
        with pytest.raises(BillingError) as info:
            await clients.trusted.get(f"{server.url}/bomb", headers={})
    finally:
        await clients.aclose()
    assert info.value.kind is ErrorKind.MALFORMED
    assert info.value.detail == "response too large"


async def test_small_gzip_body_decoded(server) -> None:
    server.reply(
        "/gz",
        body=gzip.compress(b'{"remaining": "3.00"}'),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    clients = HttpClients(FAST)
    try:
        reply = await clients.trusted.get(f"{server.url}/gz", headers={})
    finally:
        await clients.aclose()
    assert reply.json() == {"remaining": "3.00"}


def test_decoder_memory_stays_bounded() -> None:
    """A 50 MB bomb fed in one chunk never expands much past the cap in memory."""
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    decoder = _Decoder("gzip", 256 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(BillingError):
            decoder.feed(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024


def test_decoder_raw_deflate_fallback() -> None:
    import zlib

    comp = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = comp.compress(b"hello") + comp.flush()
    decoder = _Decoder("deflate", 1024)
    assert decoder.feed(raw) + decoder.flush() == b"hello"


def test_unknown_encoding_refused() -> None:
    with pytest.raises(BillingError) as info:
        _Decoder("br", 1024)
    assert info.value.kind is ErrorKind.MALFORMED


async def test_html_error_page_never_in_error_text(server) -> None:
    server.reply("/balance", status=502, body="<html>internal secret page 10.0.0.7</html>")
    service = make_service(settings(test_echo=server.url))
    try:
        outcome = await service.fetch(KeyRequest("k", "test-echo", Secret("echo-key-000001")))
    finally:
        await service.aclose()
    assert outcome.error is not None
    assert "internal" not in str(outcome.error) and "10.0.0.7" not in str(outcome.error)
