"""Master-key rotation (docs/security.md §T15, §2.9, §7): add → activate → rewrap →
retire, interrupted rewraps, two instances mid-rotation, verify, and the `keys` CLI."""

from __future__ import annotations

import base64
import secrets
import shutil
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.crypto import rotation
from bot.crypto.keyring import KeyRing, load_ring
from bot.crypto.masterkey import KEYCHECK, open_vault
from bot.crypto.vault import KeyVault, parse_header
from bot.errors import ConfigError, StartupRefused
from bot.secret import Secret
from bot.services.keys import KeyService
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.repositories import KeyRepo
from tests.foundation.conftest import (
    Opened,
    clean_env,
    ring_forms,
    run_cli,
    sql,
    table_digest,
)


class Echo(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


def ring_of(settings: Settings) -> KeyRing:
    return load_ring(settings.keyring_path)


async def add_keys(keys: KeyService, n: int, owner: int = 1) -> dict[str, str]:
    out = {}
    for _ in range(n):
        value = f"sk-ROT-{secrets.token_hex(16)}"
        out[(await keys.add(owner, Secret(value), "deepseek")).key.id] = value
    return out


async def kid_counts(db: Database) -> dict[str, int]:
    async with db.session() as s:
        return await KeyRepo(s).kid_counts()


async def readable(keys: KeyService, owner: int = 1) -> dict[str, str | None]:
    return {v.id: (r.secret.reveal() if r else None) for v, r in await keys.requests(owner)}


async def add_and_activate(o: Opened, echo: Echo) -> tuple[str, str, KeyVault]:
    old = o.vault.active_kid
    ring = rotation.add(ring_of(o.settings), o.settings, echo, datetime.now(UTC))
    [new] = set(ring.keys) - {old}
    assert ring_of(o.settings).keys[new].state == "decrypt-only"
    assert ring_of(o.settings).active == old
    await rotation.activate(ring_of(o.settings), new, o.settings, o.db, echo)
    return old, new, KeyVault(ring_of(o.settings))


async def test_add_and_activate(opened: Opened) -> None:
    echo = Echo()
    stored = await add_keys(opened.keys, 3)
    old, new, vault = await add_and_activate(opened, echo)
    ring = ring_of(opened.settings)
    assert ring.active == new
    assert (ring.keys[new].state, ring.keys[old].state) == ("active", "decrypt-only")
    keys = KeyService(opened.db, vault)
    fresh = await add_keys(keys, 2)
    assert await kid_counts(opened.db) == {old: 3, new: 2}
    for key_id in fresh:
        row = (await sql(opened.db, "SELECT kid, ciphertext FROM api_keys WHERE id=:i", i=key_id))[
            0
        ]
        assert row[0] == new and parse_header(bytes(row[1]))[0] == new
    assert await readable(keys) == {**stored, **fresh}
    check = (await sql(opened.db, "SELECT value FROM meta WHERE key=:k", k=KEYCHECK))[0][0]
    assert parse_header(bytes(check))[0] == new
    # a restart with the rotated ring passes the start-up checks
    restarted = await open_vault(opened.settings, opened.db)
    assert restarted.active_kid == new
    # duplicates are still recognised across kids
    value = next(iter(stored.values()))
    assert (await keys.add(1, Secret(value), "deepseek")).duplicate is True
    for line in echo:
        for form in ring_forms(ring):
            assert form.decode("latin-1") not in line


async def test_rewrap_leaves_no_old_kid_and_is_idempotent(opened: Opened) -> None:
    echo = Echo()
    stored = await add_keys(opened.keys, 5)
    _, new, vault = await add_and_activate(opened, echo)
    report = await rotation.rewrap(ring_of(opened.settings), opened.db, echo, batch=2)
    assert (report.rewrapped, report.failed) == (5, [])
    assert await kid_counts(opened.db) == {new: 5}
    keys = KeyService(opened.db, vault)
    assert await readable(keys) == stored
    digest = await table_digest(opened.db)
    again = await rotation.rewrap(ring_of(opened.settings), opened.db, echo)
    assert (again.rewrapped, again.failed) == (0, [])
    assert await table_digest(opened.db) == digest  # a no-op: nothing rewritten
    value = next(iter(stored.values()))
    assert (await keys.add(1, Secret(value), "deepseek")).duplicate is True  # new fingerprints


async def test_rewrap_stopped_midway_and_rerun_completes(opened: Opened) -> None:
    echo = Echo()
    stored = await add_keys(opened.keys, 5)
    old, new, vault = await add_and_activate(opened, echo)
    part = await rotation.rewrap(ring_of(opened.settings), opened.db, echo, batch=2, max_rows=2)
    assert part.rewrapped == 2
    assert await kid_counts(opened.db) == {old: 3, new: 2}
    assert await readable(KeyService(opened.db, vault)) == stored  # a mixed state is fine
    rest = await rotation.rewrap(ring_of(opened.settings), opened.db, echo, batch=2)
    assert rest.rewrapped == 3
    assert await kid_counts(opened.db) == {new: 5}
    assert await readable(KeyService(opened.db, vault)) == stored


async def test_rewrap_crashing_midway_and_rerun_completes(
    opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    echo = Echo()
    stored = await add_keys(opened.keys, 5)
    old, new, vault = await add_and_activate(opened, echo)
    real = KeyRepo.rewrap
    calls = 0

    async def crash_on_third(self: KeyRepo, *args: object, **kwargs: object) -> bool:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("killed")
        return await real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(KeyRepo, "rewrap", crash_on_third)
    with pytest.raises(RuntimeError, match="killed"):
        await rotation.rewrap(ring_of(opened.settings), opened.db, echo, batch=2)
    monkeypatch.setattr(KeyRepo, "rewrap", real)
    counts = await kid_counts(opened.db)
    assert counts == {old: 3, new: 2}  # the first batch committed, the second rolled back
    assert await readable(KeyService(opened.db, vault)) == stored
    rest = await rotation.rewrap(ring_of(opened.settings), opened.db, echo, batch=2)
    assert rest.rewrapped == 3
    assert await kid_counts(opened.db) == {new: 5}
    assert await readable(KeyService(opened.db, vault)) == stored


async def test_rewrap_reports_unreadable_rows_and_terminates(opened: Opened) -> None:
    echo = Echo()
    stored = await add_keys(opened.keys, 3)
    bad_id = sorted(stored)[1]
    await sql(
        opened.db, "UPDATE api_keys SET base_url = 'https://evil.example' WHERE id=:i", i=bad_id
    )
    old, new, _ = await add_and_activate(opened, echo)
    report = await rotation.rewrap(ring_of(opened.settings), opened.db, echo, batch=1)
    assert (report.rewrapped, report.failed) == (2, [bad_id])
    assert await kid_counts(opened.db) == {old: 1, new: 2}
    assert any(bad_id in line for line in echo)


async def test_retire_refused_while_in_use_then_allowed_and_old_rows_fail_closed(
    opened: Opened,
) -> None:
    echo = Echo()
    stored = await add_keys(opened.keys, 2)
    victim = next(iter(stored))
    saved = (await sql(opened.db, "SELECT ciphertext, kid FROM api_keys WHERE id=:i", i=victim))[0]
    old, new, _ = await add_and_activate(opened, echo)
    with pytest.raises(ConfigError, match="activate another"):
        await rotation.retire(ring_of(opened.settings), new, opened.settings, opened.db, echo)
    before = opened.settings.keyring_path.read_bytes()
    with pytest.raises(ConfigError, match="rewrap"):
        await rotation.retire(ring_of(opened.settings), old, opened.settings, opened.db, echo)
    assert opened.settings.keyring_path.read_bytes() == before
    await rotation.rewrap(ring_of(opened.settings), opened.db, echo)
    await rotation.retire(ring_of(opened.settings), old, opened.settings, opened.db, echo)
    assert ring_of(opened.settings).keys[old].state == "retired"
    with pytest.raises(ConfigError, match="retired"):
        ring_of(opened.settings).activate(old)
    await open_vault(opened.settings, opened.db)  # a normal start is fine
    # A backup restore brings back a row under the retired key: fail closed.
    await sql(
        opened.db,
        "UPDATE api_keys SET ciphertext=:c, kid=:k WHERE id=:i",
        c=bytes(saved[0]),
        k=saved[1],
        i=victim,
    )
    with pytest.raises(StartupRefused, match=old):
        await open_vault(opened.settings, opened.db)
    current = KeyService(opened.db, KeyVault(ring_of(opened.settings)))
    assert (await readable(current))[victim] is None  # a running instance cannot read it
    failed = await rotation.verify(ring_of(opened.settings), opened.db, echo)
    assert failed == [victim]


async def test_two_instances_during_rotation(
    opened: Opened, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    echo = Echo()
    a = opened  # instance A runs the rotation
    old_ring_copy = tmp_path / "old" / "keyring.json"
    old_ring_copy.parent.mkdir(mode=0o700)
    shutil.copy2(a.settings.keyring_path, old_ring_copy)
    stored = await add_keys(a.keys, 2)

    rotation.add(
        ring_of(a.settings), a.settings, echo, datetime.now(UTC)
    )  # phase 1: new key, decrypt-only
    b_ring = tmp_path / "b" / "keyring.json"
    b_ring.parent.mkdir(mode=0o700)
    shutil.copy2(a.settings.keyring_path, b_ring)  # distributed to instance B
    b_settings = make_settings(database_url=a.settings.database_url, keyring_file=b_ring)
    b_db = Database(b_settings.database_url)
    try:
        b_vault = await open_vault(b_settings, b_db)
        b_keys = KeyService(b_db, b_vault)
        [new] = set(b_vault.ring.keys) - {b_vault.active_kid}

        await rotation.activate(ring_of(a.settings), new, a.settings, a.db, echo)  # phase 2
        a_keys = KeyService(a.db, KeyVault(ring_of(a.settings)))
        from_a = await add_keys(a_keys, 2)  # written under the new key
        from_b = await add_keys(b_keys, 1)  # B still writes under the old one
        assert await kid_counts(a.db) == {b_vault.active_kid: 3, new: 2}
        everything = {**stored, **from_a, **from_b}
        assert await readable(b_keys) == everything  # B reads A's new rows
        assert await readable(a_keys) == everything  # and A reads B's
        b_restarted = await open_vault(b_settings, b_db)  # B restarts: still accepted
        assert b_restarted.active_kid != new
    finally:
        await b_db.dispose()

    # An instance that never got the new key is refused rather than misreading.
    c_settings = make_settings(database_url=a.settings.database_url, keyring_file=old_ring_copy)
    with pytest.raises(StartupRefused, match="does not match"):
        await open_vault(c_settings, a.db)


async def test_verify_reports_failing_ids(opened: Opened, canary: str) -> None:
    echo = Echo()
    stored = await add_keys(opened.keys, 3)
    await opened.keys.add(1, Secret(canary), "deepseek", label="canary")
    assert await rotation.verify(ring_of(opened.settings), opened.db, echo) == []
    ids = sorted(stored)
    blob = bytes(
        (await sql(opened.db, "SELECT ciphertext FROM api_keys WHERE id=:i", i=ids[0]))[0][0]
    )
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    await sql(opened.db, "UPDATE api_keys SET ciphertext=:c WHERE id=:i", c=flipped, i=ids[0])
    await sql(opened.db, "UPDATE api_keys SET provider='openai' WHERE id=:i", i=ids[2])
    echo.clear()
    failed = await rotation.verify(ring_of(opened.settings), opened.db, echo, batch=2)
    assert sorted(failed) == sorted([ids[0], ids[2]])
    text = "\n".join(echo)
    assert ids[0] in text and ids[2] in text and ids[1] not in text
    assert canary not in text and stored[ids[1]] not in text


async def test_status_prints_no_key_material(opened: Opened, canary: str) -> None:
    echo = Echo()
    await add_keys(opened.keys, 2)
    await opened.keys.add(1, Secret(canary), "deepseek", label="canary")
    await sql(opened.db, "UPDATE api_keys SET kid='kgone' WHERE label='canary'")
    ring = ring_of(opened.settings)
    await rotation.status(ring, opened.db, echo)
    text = "\n".join(echo)
    assert ring.active in text and "rows=2" in text and "(key check)" in text
    assert "kgone" in text and "MISSING" in text
    assert canary not in text
    for form in ring_forms(ring):
        assert form.decode("latin-1") not in text


async def test_add_from_encryption_key_writes_a_ring_and_needs_the_variable_gone(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    env_key = base64.b64encode(secrets.token_bytes(32)).decode()
    with_env = make_settings(database_url=database_url, encryption_key=env_key)
    db = Database(database_url)
    try:
        vault = await open_vault(with_env, db)
        stored = await add_keys(KeyService(db, vault), 2)
        echo = Echo()
        with pytest.raises(ConfigError, match="key ring file"):
            await rotation.activate(vault.ring, vault.active_kid, with_env, db, echo)
        rotation.add(vault.ring, with_env, echo, datetime.now(UTC))
        assert any("remove ENCRYPTION_KEY" in line for line in echo)
        assert env_key not in "\n".join(echo)
        with pytest.raises(ConfigError, match="both ENCRYPTION_KEY"):
            await open_vault(with_env, db)
        file_only = make_settings(database_url=database_url)
        vault2 = await open_vault(file_only, db)
        assert vault2.active_kid == vault.active_kid
        assert await readable(KeyService(db, vault2)) == stored
    finally:
        await db.dispose()


# -- the CLI: python -m bot keys ... ---------------------------------------------------------


async def test_cli_rotation_flow(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path, canary: str
) -> None:
    settings = make_settings(database_url=database_url)  # ring at tmp_path/data/keyring.json
    db = Database(database_url)
    try:
        vault = await open_vault(settings, db)
        stored = await add_keys(KeyService(db, vault), 2)
        await KeyService(db, vault).add(1, Secret(canary), "deepseek", label="canary")
    finally:
        await db.dispose()
    old = vault.active_kid
    env = clean_env(DATABASE_URL=database_url)

    def keys(*args: str, code: int = 0) -> str:
        result = run_cli("keys", *args, cwd=tmp_path, env=env)
        assert result.returncode == code, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        out = result.stdout + result.stderr
        assert canary not in out
        for form in ring_forms(ring_of(settings)):
            assert form.decode("latin-1") not in out
        return out

    out = keys("status")
    assert old in out and "rows=3" in out
    keys("add")
    [new] = set(ring_of(settings).keys) - {old}
    keys("activate", new)
    assert ring_of(settings).active == new
    assert stat.S_IMODE(settings.keyring_path.stat().st_mode) == 0o600
    keys("rewrap", "--batch", "2")
    db = Database(database_url)
    try:
        assert await kid_counts(db) == {new: 3}
    finally:
        await db.dispose()
    keys("retire", old)
    assert ring_of(settings).keys[old].state == "retired"

    db = Database(database_url)
    try:
        victim = sorted(stored)[0]
        await sql(db, "UPDATE api_keys SET provider='openai' WHERE id=:i", i=victim)
    finally:
        await db.dispose()
    out = keys("verify", code=1)
    assert victim in out and "1 failed" in out
