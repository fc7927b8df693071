"""Retries, timeouts and error text of the provider HTTP client, against a real local server."""

from __future__ import annotations

import gc
import socket
import time
import weakref
from dataclasses import replace

import pytest

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.http import HttpClients
from bot.billing.models import KeyRequest
from bot.secret import Secret
from tests.billing.conftest import FAST, make_service, settings
from tests.fakes.provider_server import Reply


async def _get(server, path: str, options=FAST, **kwargs):
    clients = HttpClients(options)
    try:
        return await clients.trusted.get(f"{server.url}{path}", headers={}, **kwargs)
    finally:
        await clients.aclose()


async def test_5xx_retried_until_success(server) -> None:
    server.script("/b", [Reply(500), Reply(503), Reply(200, json={"ok": True})])
    reply = await _get(server, "/b")
    assert reply.status == 200 and reply.json() == {"ok": True}
    assert server.count("/b") == 3


async def test_5xx_gives_up_after_three_attempts(server) -> None:
    server.reply("/b", status=500, body="boom")
    reply = await _get(server, "/b")
    assert reply.status == 500  # the provider maps it (PROVIDER_ERROR)
    assert server.count("/b") == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_4xx_never_retried(server, status: int) -> None:
    server.reply("/b", status=status, json={"error": "nope"})
    reply = await _get(server, "/b")
    assert reply.status == status
    assert server.count("/b") == 1


async def test_429_retry_after_honoured(server) -> None:
    server.script(
        "/b", [Reply(429, json={}, headers={"Retry-After": "1"}), Reply(200, json={"ok": 1})]
    )
    started = time.monotonic()
    reply = await _get(server, "/b")
    elapsed = time.monotonic() - started
    assert reply.status == 200
    assert server.count("/b") == 2
    assert elapsed >= 0.95, "Retry-After: 1 was not waited for"


async def test_429_with_long_retry_after_returned_not_waited(server) -> None:
    server.reply("/b", status=429, json={}, headers={"Retry-After": "120"})
    started = time.monotonic()
    reply = await _get(server, "/b")
    assert time.monotonic() - started < 1.0
    assert reply.status == 429 and reply.headers["retry-after"] == "120"
    assert server.count("/b") == 1


async def test_read_timeout_retried(server) -> None:
    server.script("/b", [Reply(200, json={"slow": 1}, delay=2.0), Reply(200, json={"fast": 1})])
    reply = await _get(server, "/b", options=replace(FAST, read_timeout=0.3))
    assert reply.json() == {"fast": 1}
    assert server.count("/b") == 2


async def test_persistent_timeout_is_network_error_with_fixed_text(server) -> None:
    server.reply("/b", json={}, delay=3.0)
    with pytest.raises(BillingError) as info:
        await _get(server, "/b?token=sk-query-secret", options=replace(FAST, read_timeout=0.2))
    assert info.value.kind is ErrorKind.NETWORK
    assert info.value.detail == "timed out"
    assert server.count("/b") == 3


async def test_connection_refused_is_network_error_without_url() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    clients = HttpClients(FAST)
    try:
        with pytest.raises(BillingError) as info:
            await clients.trusted.get(
                f"http://127.0.0.1:{port}/b", headers={"Authorization": "Bearer sk-hdr-secret"}
            )
    finally:
        await clients.aclose()
    assert info.value.kind is ErrorKind.NETWORK
    text = str(info.value)
    assert str(port) not in text and "127.0.0.1" not in text and "sk-hdr" not in text


async def test_key_only_in_header(server) -> None:
    server.reply("/balance", json={"remaining": "1"})
    service = make_service(settings(test_echo=server.url))
    try:
        outcome = await service.fetch(KeyRequest("k", "test-echo", Secret("echo-hdr-only-001")))
    finally:
        await service.aclose()
    assert outcome.ok
    seen = server.requests[0]
    assert seen.authorization == "Bearer echo-hdr-only-001"
    assert "echo-hdr-only-001" not in str(seen.query)


async def test_cookies_not_carried_between_requests(server) -> None:
    server.reply("/b", json={}, headers={"Set-Cookie": "sid=user-a; Path=/"})
    clients = HttpClients(FAST)
    try:
        await clients.trusted.get(f"{server.url}/b", headers={})
        await clients.trusted.get(f"{server.url}/b", headers={})
    finally:
        await clients.aclose()
    assert all("Cookie" not in r.headers for r in server.requests)


async def test_reply_headers_are_lower_case(server) -> None:
    server.reply("/b", json={}, headers={"X-RateLimit-Remaining": "7"})
    reply = await _get(server, "/b")
    assert reply.headers["x-ratelimit-remaining"] == "7"
    assert reply.headers["content-type"].startswith("application/json")


# -- POST (read-only balance endpoints such as NanoGPT's and claude-relay-service's) ------


async def _post(server, path: str, json, options=FAST, **kwargs):
    clients = HttpClients(options)
    try:
        return await clients.trusted.post(
            f"{server.url}{path}", headers={"x-api-key": "sk-post-hdr-001"}, json=json, **kwargs
        )
    finally:
        await clients.aclose()


async def test_post_sends_json_body_and_headers(server) -> None:
    server.reply("/p", json={"usd_balance": "1.5"})
    reply = await _post(server, "/p", {"apiKey": "cr_secret_in_body", "n": 1})
    assert reply.status == 200 and reply.json() == {"usd_balance": "1.5"}
    seen = server.requests[0]
    assert seen.method == "POST"
    assert seen.json() == {"apiKey": "cr_secret_in_body", "n": 1}
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["x-api-key"] == "sk-post-hdr-001"
    assert "cr_secret_in_body" not in str(seen.query)


async def test_post_retried_with_the_same_body_on_5xx(server) -> None:
    server.script("/p", [Reply(502), Reply(500), Reply(200, json={"ok": True})])
    reply = await _post(server, "/p", {"apiKey": "k"})
    assert reply.status == 200
    assert [r.json() for r in server.requests] == [{"apiKey": "k"}] * 3
    assert all(r.method == "POST" for r in server.requests)


async def test_post_4xx_not_retried(server) -> None:
    server.reply("/p", status=401, json={"error": "Invalid API key"})
    reply = await _post(server, "/p", {"apiKey": "k"})
    assert reply.status == 401 and server.count("/p") == 1


async def test_post_timeout_is_network_error_without_body_or_url(server) -> None:
    server.reply("/p", json={}, delay=3.0)
    with pytest.raises(BillingError) as info:
        await _post(server, "/p", {"apiKey": "cr_timeout_secret"}, replace(FAST, read_timeout=0.2))
    assert info.value.kind is ErrorKind.NETWORK and info.value.detail == "timed out"
    assert "cr_timeout_secret" not in str(info.value) and str(server.port) not in str(info.value)
    assert server.count("/p") == 3


async def test_post_reply_capped_like_get(server) -> None:
    server.reply("/p", body=b"x" * (300 * 1024), headers={"Content-Type": "application/json"})
    with pytest.raises(BillingError) as info:
        await _post(server, "/p", {})
    assert info.value.kind is ErrorKind.MALFORMED and info.value.detail == "response too large"


async def test_post_guarded_refuses_private_address_before_sending(server) -> None:
    server.reply("/p", json={})
    clients = HttpClients(FAST, allow_private=False)
    try:
        with pytest.raises(BillingError) as info:
            await clients.guarded.post(f"https://127.0.0.1:{server.port}/p", headers={}, json={})
    finally:
        await clients.aclose()
    assert info.value.kind is ErrorKind.URL_REFUSED
    assert server.count() == 0


async def test_post_request_body_is_bounded(server) -> None:
    with pytest.raises(BillingError) as info:
        await _post(server, "/p", {"apiKey": "k" * (20 * 1024)})
    assert info.value.kind is ErrorKind.MALFORMED
    assert server.count() == 0


async def test_a_read_response_is_freed_without_the_garbage_collector(server) -> None:
    # httpx ties a response to its stream (a reference cycle per request): every request's
    # objects waited for a GC pass, and those passes stalled the event loop during a sweep
    # (issue 17 item 1). Once the body is read, nothing of the response may outlive it.
    server.reply("/b", json={"ok": True})
    clients = HttpClients(FAST)
    client = clients.trusted._client
    send, responses = client.send, []

    async def kept(request, **kw):
        response = await send(request, **kw)
        responses.append(weakref.ref(response))
        return response

    client.send = kept
    gc.disable()
    try:
        for _ in range(3):
            assert (await clients.trusted.get(f"{server.url}/b", headers={})).status == 200
        alive = [ref for ref in responses if ref() is not None]
    finally:
        gc.enable()
        await clients.aclose()
    assert len(responses) == 3 and alive == []
