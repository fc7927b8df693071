"""Start-up: find the master key, check it against the database, fail closed.

The rules (docs/security.md §2.8), checked before anything is written:
- no key configured, but the database holds ciphertexts or a key check → refuse;
- the key check does not verify with the configured key → refuse;
- a row uses a key id the ring does not have (or has retired) → refuse;
- no key configured and an empty database → first run: generate a key ring file
  (exclusive create, 0600) and store a key check value.
Refusals raise `StartupRefused` with one line saying what is wrong and how to fix it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from bot.crypto.keyring import KeyRing, create_ring_file, from_env_key, generate_key, load_ring
from bot.crypto.vault import KeyVault, RecordBinding, VaultError
from bot.errors import ConfigError, StartupRefused
from bot.settings import Settings
from bot.storage import migrate
from bot.storage.db import Database
from bot.storage.models import ApiKey
from bot.storage.repositories import KeyRepo, MetaRepo

log = logging.getLogger(__name__)
KEYCHECK = "keycheck"


@dataclass(frozen=True, slots=True)
class StoredKeys:
    rows: int
    kids: dict[str, int]
    keycheck: bytes | None

    @property
    def empty(self) -> bool:
        return self.rows == 0 and self.keycheck is None


def configured_ring(settings: Settings) -> KeyRing | None:
    """The ring the operator configured, or None if there is none yet."""
    path = settings.keyring_path
    if settings.encryption_key is not None:
        if path.exists():
            raise ConfigError(
                f"both ENCRYPTION_KEY and a key ring file ({path}) are present; "
                "keep one: unset ENCRYPTION_KEY or move the file away"
            )
        return from_env_key(settings.encryption_key.get_secret_value())
    if path.exists():
        return load_ring(path)
    if settings.keyring_file is not None:
        raise ConfigError(f"KEYRING_FILE points to {path}, which does not exist")
    return None


async def stored_keys(db: Database) -> StoredKeys:
    async with db.session() as s:
        kids = await KeyRepo(s).kid_counts()
        return StoredKeys(sum(kids.values()), kids, await MetaRepo(s).get(KEYCHECK))


async def _sample_row(db: Database) -> ApiKey | None:
    async with db.session() as s:
        rows = await KeyRepo(s).all_batches("", 1)
        return rows[0] if rows else None


def _where(settings: Settings) -> str:
    return f"ENCRYPTION_KEY or the key ring file {settings.keyring_path}"


async def check(settings: Settings, db: Database, ring: KeyRing | None) -> None:
    """Refuse to go on if the key and the database do not fit. Read-only."""
    state = await stored_keys(db)
    if ring is None:
        if not state.empty:
            kids = ", ".join(sorted(state.kids)) or "unknown"
            raise StartupRefused(
                f"master key not found (expected {_where(settings)}); {state.rows} stored "
                f"API keys are encrypted with key(s) {kids}; restore the key ring from your "
                "backup. Refusing to start, and refusing to generate a new key."
            )
        return
    vault = KeyVault(ring)
    if state.keycheck is not None:
        try:
            vault.verify_keycheck(state.keycheck)
        except VaultError:
            raise StartupRefused(
                f"the configured master key ({ring.source}) does not match this database; "
                "restore the key that was used with it. Refusing to start."
            ) from None
    missing = sorted(set(state.kids) - vault.kids)
    if missing:
        raise StartupRefused(
            f"stored API keys use master key(s) {', '.join(missing)}, which are missing or "
            f"retired in {ring.source}; restore them. Refusing to start."
        )
    if state.keycheck is None and state.rows:
        row = await _sample_row(db)
        if row is not None:
            try:
                vault.decrypt(
                    row.ciphertext, RecordBinding(row.id, row.owner_id, row.provider, row.base_url)
                )
            except VaultError:
                raise StartupRefused(
                    f"the configured master key ({ring.source}) cannot read the stored API "
                    "keys. Refusing to start."
                ) from None


async def open_vault(settings: Settings, db: Database) -> KeyVault:
    """Check, migrate, then (first run only) create the key ring. Returns the vault."""
    ring = configured_ring(settings)
    if await migrate.has_schema(db):
        await check(settings, db, ring)  # before any write: a refusal changes nothing
    if not await migrate.is_current(db):
        await migrate.upgrade(db)
        await check(settings, db, ring)
    state = await stored_keys(db)
    if ring is None:
        ring = _first_run(settings, db.clock())
    vault = KeyVault(ring)
    if state.keycheck is None:
        async with db.session() as s:
            await MetaRepo(s).set(KEYCHECK, vault.make_keycheck())
    if settings.encryption_key is not None:
        log.info("master key from ENCRYPTION_KEY; a key ring file is safer (see README)")
    return vault


def _first_run(settings: Settings, now: datetime) -> KeyRing:
    path = settings.keyring_path
    key = generate_key(now)
    ring = KeyRing({key.kid: key}, key.kid, str(path))
    try:
        create_ring_file(path, ring)
    except FileExistsError:  # another process won the race: use its key
        return load_ring(path)
    log.warning(
        "generated a new master key %s at %s; back it up separately from the database: "
        "losing it makes the stored API keys unrecoverable",
        key.kid,
        path,
    )
    return ring
