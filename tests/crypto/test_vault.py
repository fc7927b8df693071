"""The vault: AES-GCM bound to its record; every tampering is a VaultError, never plaintext.

docs/security.md §7 "Crypto and storage" and §T6/§T7, plus the `Secret` wrapper (§T4).
"""

from __future__ import annotations

import pickle
import secrets
import uuid
from datetime import UTC, datetime

import pytest

from bot.billing.models import KeyRequest
from bot.crypto.keyring import KeyRing, RingKey, generate_key
from bot.crypto.vault import FORMAT_V1, KeyVault, RecordBinding, VaultError, parse_header
from bot.secret import Secret, mask
from bot.storage.models import ApiKey
from tests.foundation.conftest import Opened, row_of, sql

KEY = "sk-proj-" + "Ab3" * 15 + "wxyz"
BINDING = RecordBinding("a" * 32, 1001, "deepseek", None)


def ring_of(*keys: RingKey) -> KeyRing:
    active = next(k.kid for k in keys if k.state == "active")
    return KeyRing({k.kid: k for k in keys}, active, "test")


@pytest.fixture
def vault() -> KeyVault:
    return KeyVault(ring_of(generate_key(datetime.now(UTC))))


# -- the cipher on its own -------------------------------------------------------------------


def test_round_trip(vault: KeyVault) -> None:
    blob, kid = vault.encrypt(Secret(KEY), BINDING)
    assert kid == vault.active_kid
    assert parse_header(blob)[0] == kid
    assert blob[0] == FORMAT_V1
    assert KEY.encode() not in blob
    assert vault.decrypt(blob, BINDING).reveal() == KEY


def test_round_trip_unicode_and_long_key(vault: KeyVault) -> None:
    key = "sess-ключ-🔑-" + "x" * 400
    blob, _ = vault.encrypt(Secret(key), BINDING)
    assert vault.decrypt(blob, BINDING).reveal() == key


def test_same_plaintext_twice_gives_different_ciphertexts(vault: KeyVault) -> None:
    blobs = {vault.encrypt(Secret(KEY), BINDING)[0] for _ in range(20)}
    assert len(blobs) == 20
    kid_len = next(iter(blobs))[1]
    nonces = {b[2 + kid_len : 2 + kid_len + 12] for b in blobs}
    assert len(nonces) == 20


@pytest.mark.parametrize("mask_byte", [0x01, 0x80, 0xFF])
def test_flipping_any_single_byte_is_a_vault_error(vault: KeyVault, mask_byte: int) -> None:
    blob, _ = vault.encrypt(Secret(KEY), BINDING)
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= mask_byte
        with pytest.raises(VaultError) as info:  # any other exception fails the test
            vault.decrypt(bytes(bad), BINDING)
        assert KEY not in str(info.value)


def test_truncated_or_extended_ciphertext_is_a_vault_error(vault: KeyVault) -> None:
    blob, _ = vault.encrypt(Secret(KEY), BINDING)
    for n in range(len(blob)):
        with pytest.raises(VaultError):
            vault.decrypt(blob[:n], BINDING)
    with pytest.raises(VaultError):
        vault.decrypt(blob + b"\x00", BINDING)


@pytest.mark.parametrize(
    "other",
    [
        RecordBinding("b" * 32, 1001, "deepseek", None),  # another row
        RecordBinding("a" * 32, 1002, "deepseek", None),  # another owner
        RecordBinding("a" * 32, 1001, "openai", None),  # another provider
        RecordBinding("a" * 32, 1001, "deepseek", "https://evil.example"),  # base URL
    ],
    ids=["id", "owner", "provider", "base_url"],
)
def test_ciphertext_is_bound_to_its_record(vault: KeyVault, other: RecordBinding) -> None:
    blob, _ = vault.encrypt(Secret(KEY), BINDING)
    with pytest.raises(VaultError):
        vault.decrypt(blob, other)


def test_base_url_is_bound_both_ways(vault: KeyVault) -> None:
    relay = RecordBinding("a" * 32, 1001, "relay", "https://relay.example")
    blob, _ = vault.encrypt(Secret(KEY), relay)
    for url in ("https://relay.example/", "https://evil.example", None):
        with pytest.raises(VaultError):
            vault.decrypt(blob, RecordBinding("a" * 32, 1001, "relay", url))


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x01",
        KEY.encode(),  # a plaintext key in the ciphertext column
        b"sk-" + secrets.token_hex(40).encode(),
        bytes([0x02]) + b"\x05kabcd" + secrets.token_bytes(60),  # unknown format version
        bytes([0x00]) + b"\x05kabcd" + secrets.token_bytes(60),
    ],
    ids=["empty", "one-byte", "plaintext", "plaintext-random", "format-2", "format-0"],
)
def test_foreign_formats_are_rejected(vault: KeyVault, blob: bytes) -> None:
    with pytest.raises(VaultError):
        vault.decrypt(blob, BINDING)


def test_wrong_master_key_same_kid_is_a_vault_error(vault: KeyVault) -> None:
    blob, kid = vault.encrypt(Secret(KEY), BINDING)
    impostor = RingKey(kid, secrets.token_bytes(32), "active", "")
    with pytest.raises(VaultError):
        KeyVault(ring_of(impostor)).decrypt(blob, BINDING)
    with pytest.raises(VaultError):
        KeyVault(ring_of(generate_key(datetime.now(UTC)))).decrypt(blob, BINDING)  # unknown kid


def test_old_keys_decrypt_only_and_retired_keys_not_at_all() -> None:
    old = generate_key(datetime.now(UTC))
    blob, _ = KeyVault(ring_of(old)).encrypt(Secret(KEY), BINDING)
    new = generate_key(datetime.now(UTC), state="decrypt-only")
    rotated = ring_of(old, new).activate(new.kid)
    assert KeyVault(rotated).decrypt(blob, BINDING).reveal() == KEY
    assert KeyVault(rotated).encrypt(Secret(KEY), BINDING)[1] == new.kid
    with pytest.raises(VaultError):
        KeyVault(rotated.retire(old.kid)).decrypt(blob, BINDING)


def test_keycheck(vault: KeyVault) -> None:
    check = vault.make_keycheck()
    vault.verify_keycheck(check)
    with pytest.raises(VaultError):
        KeyVault(ring_of(generate_key(datetime.now(UTC)))).verify_keycheck(check)
    bad = bytearray(check)
    bad[-1] ^= 1
    with pytest.raises(VaultError):
        vault.verify_keycheck(bytes(bad))


def test_fingerprint_is_keyed_and_per_owner(vault: KeyVault) -> None:
    s = Secret(KEY)
    assert vault.fingerprint(1, s) == vault.fingerprint(1, Secret(KEY))
    assert vault.fingerprint(1, s) != vault.fingerprint(2, s)
    assert vault.fingerprint(1, s) != KeyVault(
        ring_of(generate_key(datetime.now(UTC)))
    ).fingerprint(1, s)
    assert KEY not in vault.fingerprint(1, s)


# -- the Secret wrapper -------------------------------------------------------------------------


def _longest_shared_run(key: str, shown: str) -> int:
    """The longest substring of `key` (outside its public type prefix) visible in `shown`."""
    best = 0
    for i in range(len(key)):
        for j in range(i + 1, len(key) + 1):
            if key[i:j] in shown:
                best = max(best, j - i)
    return best


@pytest.mark.parametrize(
    "key",
    [
        KEY,
        "sk-" + secrets.token_urlsafe(40),
        "sess-" + secrets.token_urlsafe(30),
        "gsk_" + secrets.token_hex(20),
        secrets.token_hex(24),  # no known prefix
        "shortkey1",  # shorter than 12: no tail at all
        f"sk-CANARY-{uuid.uuid4()}",
    ],
)
def test_secret_never_shows_more_than_four_characters(key: str) -> None:
    s = Secret(key)
    prefix = next((p for p in ("sk-", "sess-", "gsk_") if key.startswith(p)), "")
    secret_part = key[len(prefix) :]
    percent = ["%s" % s, "%r" % (s,)]  # noqa: UP031 - the logging module formats this way
    request = KeyRequest("id", "deepseek", s)
    outputs = [repr(s), str(s), f"{s}", f"{s!r}", f"{s:>80}", mask(key), *percent]
    outputs += [repr([s]), repr({"k": s}), format(s, ""), repr(request), str(request)]
    for shown in outputs:
        assert _longest_shared_run(secret_part, shown) <= 4, shown
        assert key not in shown
    assert s.reveal() == key


def test_secret_cannot_be_pickled_or_empty() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(Secret(KEY))
    with pytest.raises(ValueError):
        Secret("")


# -- tampering with stored rows (SQLite and PostgreSQL) -----------------------------------------


async def _two_users(opened: Opened) -> tuple[str, str, str, str]:
    key_a = "sk-AAAA" + secrets.token_hex(16)
    key_b = "sk-BBBB" + secrets.token_hex(16)
    a = (await opened.keys.add(1, Secret(key_a), "deepseek", label="of-a")).key.id
    b = (await opened.keys.add(2, Secret(key_b), "deepseek", label="of-b")).key.id
    return a, b, key_a, key_b


async def _readable(opened: Opened, owner: int) -> dict[str, str | None]:
    return {
        view.id: (req.secret.reveal() if req else None)
        for view, req in await opened.keys.requests(owner)
    }


async def test_swapped_ciphertext_is_unreadable(opened: Opened) -> None:
    a, b, key_a, _ = await _two_users(opened)
    await sql(
        opened.db,
        "UPDATE api_keys SET ciphertext = (SELECT ciphertext FROM api_keys WHERE id = :a) "
        "WHERE id = :b",
        a=a,
        b=b,
    )
    assert await _readable(opened, 2) == {b: None}  # B never gets A's key
    assert await _readable(opened, 1) == {a: key_a}  # A is unaffected


async def test_swapped_ciphertext_within_one_owner_is_unreadable(opened: Opened) -> None:
    k1 = "sk-ONE" + secrets.token_hex(16)
    k2 = "sk-TWO" + secrets.token_hex(16)
    one = (await opened.keys.add(1, Secret(k1), "deepseek")).key.id
    two = (await opened.keys.add(1, Secret(k2), "deepseek")).key.id
    await sql(
        opened.db,
        "UPDATE api_keys SET ciphertext = (SELECT ciphertext FROM api_keys WHERE id = :one) "
        "WHERE id = :two",
        one=one,
        two=two,
    )
    assert await _readable(opened, 1) == {one: k1, two: None}


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("base_url", "https://evil.example"),
        ("provider", "openai"),
        ("owner_id", 2),
    ],
)
async def test_changed_binding_column_is_unreadable(
    opened: Opened, column: str, value: object
) -> None:
    a, b, _, key_b = await _two_users(opened)
    await sql(opened.db, f"UPDATE api_keys SET {column} = :v WHERE id = :a", v=value, a=a)
    owner = 2 if column == "owner_id" else 1
    readable = await _readable(opened, owner)
    assert readable[a] is None
    if column == "owner_id":
        assert readable[b] == key_b
        assert await _readable(opened, 1) == {}


async def test_relay_base_url_change_is_unreadable(opened: Opened) -> None:
    key = "sk-RELAY" + secrets.token_hex(16)
    added = await opened.keys.add(1, Secret(key), "relay", base_url="https://relay.example")
    [(_, req)] = await opened.keys.requests(1)
    assert req is not None and req.base_url == "https://relay.example"
    for url in ("https://evil.example", None):
        await sql(
            opened.db, "UPDATE api_keys SET base_url = :u WHERE id = :i", u=url, i=added.key.id
        )
        assert await _readable(opened, 1) == {added.key.id: None}


async def test_foreign_stored_values_are_never_used(opened: Opened) -> None:
    key = "sk-REAL" + secrets.token_hex(16)
    added = await opened.keys.add(1, Secret(key), "deepseek")
    blob = bytes((await row_of(opened.db, added.key.id)).ciphertext)
    plaintext = "sk-PLAIN" + secrets.token_hex(16)
    for value in (plaintext.encode(), bytes([0x02]) + blob[1:], bytes([0x00]) + blob[1:], b""):
        await sql(
            opened.db, "UPDATE api_keys SET ciphertext = :c WHERE id = :i", c=value, i=added.key.id
        )
        [(view, req)] = await opened.keys.requests(1)
        assert view.id == added.key.id
        assert req is None  # rejected, never "used as is"


async def test_every_single_byte_flip_of_a_stored_row_is_unreadable(opened: Opened) -> None:
    key = "sk-FLIP" + secrets.token_hex(16)
    added = await opened.keys.add(1, Secret(key), "deepseek")
    row = await row_of(opened.db, added.key.id)
    blob = bytes(row.ciphertext)
    # Every position through the service's own read path (no exception may escape) ...
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        detached = ApiKey(
            id=row.id,
            owner_id=row.owner_id,
            label=row.label,
            provider=row.provider,
            base_url=row.base_url,
            ciphertext=bytes(bad),
            kid=row.kid,
            hint=row.hint,
            fingerprint=row.fingerprint,
            options={},
        )
        assert opened.keys.request_for(detached) is None
    # ... and a few of them really written to the database and read back.
    for i in (0, 1, 2, len(blob) // 2, len(blob) - 1):
        bad = bytearray(blob)
        bad[i] ^= 0xFF
        await sql(
            opened.db,
            "UPDATE api_keys SET ciphertext = :c WHERE id = :i",
            c=bytes(bad),
            i=added.key.id,
        )
        assert await _readable(opened, 1) == {added.key.id: None}
    await sql(
        opened.db, "UPDATE api_keys SET ciphertext = :c WHERE id = :i", c=blob, i=added.key.id
    )
    assert await _readable(opened, 1) == {added.key.id: key}
