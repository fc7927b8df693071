"""Helpers for the foundation tests: open a database + vault, raw SQL, snapshots, the CLI."""

from __future__ import annotations

import base64
import glob
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from bot.crypto.keyring import KeyRing
from bot.crypto.masterkey import open_vault
from bot.crypto.vault import KeyVault
from bot.services.keys import KeyService
from bot.settings import Settings
from bot.storage.db import Database, sqlite_path
from tests.conftest import IN_CI
from tests.e2e.procs import OWN_NAMES, OWN_PREFIXES
from tests.e2e.procs import clean_env as clean_env  # re-exported for the tests here

# Settings the tests control; everything else from the caller's environment is kept.
_OWN_PREFIXES = OWN_PREFIXES
_OWN_NAMES = OWN_NAMES


def run_cli(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def key_forms(material: bytes) -> list[bytes]:
    """Every way a master key could show up in output: raw, base64 (std/url, ±padding), hex."""
    forms = {material, material.hex().encode()}
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        b64 = enc(material)
        forms.update({b64, b64.rstrip(b"=")})
    return sorted(forms)


def ring_forms(ring: KeyRing) -> list[bytes]:
    return [form for key in ring.keys.values() for form in key_forms(key.material)]


async def sql(db: Database, statement: str, **params: Any) -> list[Any]:
    async with db.engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        return list(result.all()) if result.returns_rows else []


async def row_of(db: Database, key_id: str) -> Any:
    rows = await sql(db, "SELECT * FROM api_keys WHERE id = :id", id=key_id)
    assert len(rows) == 1
    return rows[0]


def pg_dump_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))
    return found[-1] if found else shutil.which("pg_dump")


def pg_dump(url: str) -> bytes | None:
    """A plain-text dump of the test database, or None if pg_dump is not installed."""
    binary = pg_dump_bin()
    if binary is None:
        if IN_CI:
            pytest.fail("CI=true but pg_dump is not installed")
        return None
    u = make_url(url)
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = u.password
    out = subprocess.run(
        [
            binary,
            "-h",
            u.host or "127.0.0.1",
            "-p",
            str(u.port or 5432),
            "-U",
            u.username or "",
            "--no-owner",
            "--no-privileges",
            u.database or "",
        ],
        capture_output=True,
        env=env,
        timeout=60,
        check=True,
    ).stdout
    # pg_dump ≥ 15.14 writes a random \restrict token on every run: not database content.
    lines = [ln for ln in out.splitlines() if not ln.startswith((b"\\restrict", b"\\unrestrict"))]
    return b"\n".join(lines)


async def table_digest(db: Database) -> str:
    """A checksum of every row of every table (a backend-neutral 'DB unchanged' check)."""

    def tables(conn: Any) -> list[str]:
        return sorted(inspect(conn).get_table_names())

    async with db.engine.connect() as conn:
        names = await conn.run_sync(tables)
    digest = hashlib.sha256()
    for table in names:
        rows = await sql(db, f"SELECT * FROM {table}")
        flat = sorted(
            repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)) for row in rows
        )
        digest.update(f"{table}:{len(flat)}:{flat!r}".encode())
    return digest.hexdigest()


def sqlite_files(url: str) -> list[Path]:
    path = sqlite_path(url)
    assert path is not None
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


async def snapshot(url: str) -> object:
    """Everything that would show a change to the database: file bytes or a dump + digest."""
    if url.startswith("sqlite"):
        return {
            str(p): p.read_bytes() if p.exists() and p.stat().st_size else b""
            for p in sqlite_files(url)
        }
    db = Database(url)
    try:
        digest = await table_digest(db)
    finally:
        await db.dispose()
    return (digest, pg_dump(url))


@dataclass
class Opened:
    settings: Settings
    db: Database
    vault: KeyVault
    keys: KeyService


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(database_url=database_url)


@pytest.fixture
async def opened(settings: Settings) -> AsyncIterator[Opened]:
    """A migrated database with a vault (first run: a key ring was generated)."""
    db = Database(settings.database_url)
    try:
        vault = await open_vault(settings, db)
        yield Opened(settings, db, vault, KeyService(db, vault))
    finally:
        await db.dispose()


@pytest.fixture
def canary() -> str:
    import uuid

    return f"sk-CANARY-{uuid.uuid4()}"
