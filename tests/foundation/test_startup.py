"""Start-up fails closed (docs/security.md §T14, §2.8, §7), in process and through
`python -m bot migrate`, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.crypto.keyring import (
    KeyRing,
    create_ring_file,
    from_env_key,
    generate_key,
    load_ring,
)
from bot.crypto.masterkey import KEYCHECK, open_vault
from bot.crypto.vault import KeyVault
from bot.errors import ConfigError, StartupRefused
from bot.secret import Secret
from bot.services.keys import KeyService
from bot.services.users import UserService
from bot.settings import Settings
from bot.storage.db import Database
from tests.foundation.conftest import (
    clean_env,
    key_forms,
    ring_forms,
    run_cli,
    snapshot,
    sql,
)


def b64key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


async def start(settings: Settings) -> KeyVault:
    """One start of the bot's storage side: open, check, close."""
    db = Database(settings.database_url)
    try:
        return await open_vault(settings, db)
    finally:
        await db.dispose()


async def add_key(settings: Settings, owner: int = 1, value: str | None = None) -> str:
    db = Database(settings.database_url)
    try:
        vault = await open_vault(settings, db)
        value = value or f"sk-START-{secrets.token_hex(16)}"
        return (await KeyService(db, vault).add(owner, Secret(value), "deepseek")).key.id
    finally:
        await db.dispose()


async def keycheck_of(url: str) -> bytes | None:
    db = Database(url)
    try:
        rows = await sql(db, "SELECT value FROM meta WHERE key = :k", k=KEYCHECK)
        return bytes(rows[0][0]) if rows else None
    finally:
        await db.dispose()


def file_state(path: Path) -> tuple[bytes, int, int, int]:
    st = path.stat()
    return path.read_bytes(), st.st_mtime_ns, st.st_ino, stat.S_IMODE(st.st_mode)


# -- in process -----------------------------------------------------------------------------------


async def test_first_run_creates_a_private_ring_and_a_keycheck(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = settings.keyring_path
    assert not path.exists()
    vault = await start(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    ring = load_ring(path)
    assert ring.active == vault.active_kid and list(ring.keys) == [vault.active_kid]
    check = await keycheck_of(settings.database_url)
    assert check is not None
    KeyVault(ring).verify_keycheck(check)
    assert vault.active_kid in caplog.text  # the operator is told which key was generated
    logged = caplog.text.encode() + b"".join(repr((r.msg, r.args)).encode() for r in caplog.records)
    for form in ring_forms(ring):
        assert form not in logged


async def test_restart_keeps_users_and_keys(settings: Settings) -> None:
    values = {1: f"sk-ONE-{secrets.token_hex(16)}", 2: f"sk-TWO-{secrets.token_hex(16)}"}
    for owner, value in values.items():
        await add_key(settings, owner, value)
    db = Database(settings.database_url)
    try:
        await UserService(db).set_language(1, "zh")
    finally:
        await db.dispose()

    ring_before = file_state(settings.keyring_path)
    db = Database(settings.database_url)  # a new process, in effect
    try:
        vault = await open_vault(settings, db)
        keys = KeyService(db, vault)
        for owner, value in values.items():
            [(_, req)] = await keys.requests(owner)
            assert req is not None and req.secret.reveal() == value
        assert (await UserService(db).touch(1)).language == "zh"
    finally:
        await db.dispose()
    assert file_state(settings.keyring_path) == ring_before


async def test_ring_removed_with_ciphertexts_refuses_and_generates_nothing(
    settings: Settings,
) -> None:
    await add_key(settings)
    kid = load_ring(settings.keyring_path).active
    settings.keyring_path.unlink()
    with pytest.raises(StartupRefused) as info:
        await start(settings)
    assert "master key not found" in str(info.value)
    assert kid in str(info.value) and "1 stored API keys" in str(info.value)
    assert info.value.exit_code == 78
    assert not settings.keyring_path.exists()


async def test_ring_removed_with_only_a_keycheck_refuses(settings: Settings) -> None:
    await start(settings)  # no keys stored, but the database has met a master key
    settings.keyring_path.unlink()
    with pytest.raises(StartupRefused, match="master key not found"):
        await start(settings)
    assert not settings.keyring_path.exists()


async def test_wrong_encryption_key_refuses_and_changes_nothing(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    right = make_settings(database_url=database_url, encryption_key=b64key())
    await add_key(right)
    assert not right.keyring_path.exists()  # ENCRYPTION_KEY: no ring file is written
    before = await snapshot(database_url)
    wrong = make_settings(database_url=database_url, encryption_key=b64key())
    with pytest.raises(StartupRefused, match="does not match this database"):
        await start(wrong)
    assert await snapshot(database_url) == before
    assert not wrong.keyring_path.exists()
    await start(right)  # the right key still works


async def test_wrong_ring_file_refuses(settings: Settings) -> None:
    await add_key(settings)
    path = settings.keyring_path
    path.unlink()
    key = generate_key(datetime.now(UTC))
    create_ring_file(path, KeyRing({key.kid: key}, key.kid, str(path)))
    before = await snapshot(settings.database_url)
    with pytest.raises(StartupRefused, match="does not match this database"):
        await start(settings)
    assert await snapshot(settings.database_url) == before


async def test_wrong_key_without_keycheck_is_caught_by_a_row(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    right = make_settings(database_url=database_url, encryption_key=b64key())
    await add_key(right)
    db = Database(database_url)
    try:
        await sql(db, "DELETE FROM meta WHERE key = :k", k=KEYCHECK)
        # same kid, different material: only a real decryption can tell
        vault = KeyVault(from_env_key(right.encryption_key.get_secret_value()))  # type: ignore[union-attr]
        await sql(db, "UPDATE api_keys SET kid = :k", k=vault.active_kid)
    finally:
        await db.dispose()
    wrong = make_settings(database_url=database_url, encryption_key=b64key())
    with pytest.raises(StartupRefused):
        await start(wrong)
    await start(right)
    assert await keycheck_of(database_url) is not None  # written again by the right key


async def test_ring_file_readable_by_others_is_refused(settings: Settings) -> None:
    await start(settings)
    path = settings.keyring_path
    for mode in (0o644, 0o640, 0o604):
        path.chmod(mode)
        content = path.read_bytes()
        with pytest.raises(ConfigError, match="chmod 600"):
            await start(settings)
        assert path.read_bytes() == content
        assert stat.S_IMODE(path.stat().st_mode) == mode  # refused, not silently "fixed"
    path.chmod(0o600)
    await start(settings)


async def test_existing_ring_file_is_never_rewritten(settings: Settings) -> None:
    await start(settings)
    before = file_state(settings.keyring_path)
    for _ in range(3):
        await start(settings)
    assert file_state(settings.keyring_path) == before


async def test_encryption_key_plus_ring_file_is_a_clear_error(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    plain = make_settings(database_url=database_url)
    await start(plain)
    before = file_state(plain.keyring_path)
    key = b64key()
    both = make_settings(database_url=database_url, encryption_key=key)
    with pytest.raises(ConfigError) as info:
        await start(both)
    message = str(info.value)
    assert "ENCRYPTION_KEY" in message and str(plain.keyring_path) in message
    assert "\n" not in message and key not in message
    assert file_state(plain.keyring_path) == before


@pytest.mark.parametrize(
    "bad", ["not base64!!", "c2hvcnQ=", base64.b64encode(b"x" * 31).decode(), "é" * 44]
)
async def test_invalid_encryption_key_is_one_clear_line(
    make_settings: Callable[..., Settings], bad: str
) -> None:
    settings = make_settings(encryption_key=bad)
    with pytest.raises(ConfigError) as info:
        await start(settings)
    message = str(info.value)
    assert "ENCRYPTION_KEY" in message and "\n" not in message and bad not in message


async def test_row_with_a_kid_missing_from_the_ring_is_refused(settings: Settings) -> None:
    await add_key(settings)
    db = Database(settings.database_url)
    try:
        await sql(db, "UPDATE api_keys SET kid = 'kmissing01'")
    finally:
        await db.dispose()
    with pytest.raises(StartupRefused, match="kmissing01"):
        await start(settings)


async def test_keyring_file_setting_pointing_nowhere_is_refused(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> None:
    missing = tmp_path / "elsewhere" / "ring.json"
    settings = make_settings(database_url=database_url, keyring_file=missing)
    with pytest.raises(ConfigError, match="does not exist"):
        await start(settings)
    assert not missing.exists()


async def test_first_run_with_encryption_key_writes_no_file(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    key = b64key()
    settings = make_settings(database_url=database_url, encryption_key=key)
    vault = await start(settings)
    assert not settings.keyring_path.exists()
    check = await keycheck_of(database_url)
    assert check is not None
    vault.verify_keycheck(check)
    assert (await start(settings)).active_kid == vault.active_kid


async def add_key_at_0001(db: Database, vault: KeyVault, owner: int, value: str) -> None:
    """A key as the first schema stored it: Core inserts naming only 0001's columns (today's
    ORM models carry later columns, e.g. users.currency, that 0001 does not have)."""
    from sqlalchemy import insert

    from bot.crypto.vault import RecordBinding
    from bot.storage.models import ApiKey, User

    secret = Secret(value)
    key_id = secrets.token_hex(16)
    ciphertext, kid = vault.encrypt(secret, RecordBinding(key_id, owner, "deepseek", None))
    now = datetime.now(UTC)
    async with db.session() as s:
        await s.execute(insert(User.__table__).values(id=owner, timezone="UTC", created_at=now))
        await s.execute(
            insert(ApiKey.__table__).values(
                id=key_id, owner_id=owner, label="deepseek", provider="deepseek",
                base_url=None, ciphertext=ciphertext, kid=kid, hint=secret.hint,
                fingerprint=vault.fingerprint(owner, secret, kid), options={},
                created_at=now, updated_at=now,
            )
        )  # fmt: skip


async def test_upgrade_from_the_first_schema_checks_the_key_before_migrating(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    from alembic import command

    from bot.storage import migrate
    from bot.storage.repositories import MetaRepo

    def to_0001(connection: object) -> None:
        config = migrate.alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")

    right = make_settings(database_url=database_url, encryption_key=b64key())
    vault = KeyVault(from_env_key(right.encryption_key.get_secret_value()))  # type: ignore[union-attr]
    db = Database(database_url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(to_0001)
        async with db.session() as s:
            await MetaRepo(s).set(KEYCHECK, vault.make_keycheck())
        value = f"sk-OLD-{secrets.token_hex(16)}"
        await add_key_at_0001(db, vault, 1, value)
    finally:
        await db.dispose()

    wrong = make_settings(database_url=database_url, encryption_key=b64key())
    before = await snapshot(database_url)
    with pytest.raises(StartupRefused, match="does not match"):
        await start(wrong)
    assert await snapshot(database_url) == before  # not even migrated

    db = Database(database_url)
    try:
        assert not await migrate.is_current(db)
        opened = await open_vault(right, db)
        assert await migrate.is_current(db)
        [(_, req)] = await KeyService(db, opened).requests(1)
        assert req is not None and req.secret.reveal() == value
    finally:
        await db.dispose()


# -- end to end: python -m bot migrate ---------------------------------------------------------


def cli_env(url: str, **extra: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=url, **extra)


def assert_one_line(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


async def test_cli_first_run_then_three_restarts(database_url: str, tmp_path: Path) -> None:
    env = cli_env(database_url)
    first = run_cli("migrate", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    path = tmp_path / "data" / "keyring.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring = load_ring(path)
    check = await keycheck_of(database_url)
    assert check is not None
    KeyVault(ring).verify_keycheck(check)
    output = (first.stdout + first.stderr).encode()
    assert ring.active.encode() in output
    for form in ring_forms(ring):
        assert form not in output
    before = file_state(path)
    for _ in range(3):
        again = run_cli("migrate", cwd=tmp_path, env=env)
        assert again.returncode == 0, again.stderr
        for form in ring_forms(ring):
            assert form not in (again.stdout + again.stderr).encode()
    assert file_state(path) == before


async def test_cli_ring_removed_exits_78_and_creates_nothing(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url=database_url)
    await add_key(settings)
    settings.keyring_path.unlink()
    before = await snapshot(database_url)
    result = run_cli("migrate", cwd=tmp_path, env=cli_env(database_url))
    assert result.returncode == 78
    assert "master key not found" in result.stderr
    assert_one_line(result.stderr)
    assert not settings.keyring_path.exists()
    assert not list(settings.keyring_path.parent.glob("*keyring*"))
    assert await snapshot(database_url) == before


async def test_cli_wrong_encryption_key_exits_and_leaves_the_database_identical(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> None:
    right = b64key()
    await add_key(make_settings(database_url=database_url, encryption_key=right))
    before = await snapshot(database_url)
    wrong = b64key()
    result = run_cli("migrate", cwd=tmp_path, env=cli_env(database_url, ENCRYPTION_KEY=wrong))
    assert result.returncode != 0
    assert "does not match" in result.stderr
    assert_one_line(result.stderr)
    assert wrong not in result.stderr + result.stdout
    for form in key_forms(base64.b64decode(wrong)) + key_forms(base64.b64decode(right)):
        assert form not in (result.stdout + result.stderr).encode()
    assert await snapshot(database_url) == before


def test_cli_invalid_encryption_key_is_one_line(tmp_path: Path) -> None:
    env = clean_env(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/data/bot.db", ENCRYPTION_KEY="not-base64!"
    )
    result = run_cli("migrate", cwd=tmp_path, env=env)
    assert result.returncode == 78
    assert "ENCRYPTION_KEY" in result.stderr
    assert_one_line(result.stderr)
    assert not (tmp_path / "data" / "keyring.json").exists()


async def test_cli_ring_file_0644_is_refused(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()  # SQLite under tmp_path/data, ring at tmp_path/data/keyring.json
    await start(settings)
    path = tmp_path / "data" / "keyring.json"
    assert settings.keyring_path.resolve() == path.resolve()
    os.chmod(path, 0o644)
    env = clean_env(DATABASE_URL=settings.database_url)
    result = run_cli("migrate", cwd=tmp_path, env=env)
    assert result.returncode == 78
    assert "chmod 600" in result.stderr
    assert_one_line(result.stderr)
