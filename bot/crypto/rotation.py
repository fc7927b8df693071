"""Master-key rotation without downtime (docs/security.md §2.9), driven by `balance-bot keys`.

add       new key, decrypt-only: deploy the ring everywhere first
activate  new writes use it (old keys stay decrypt-only)
rewrap    re-encrypt rows under the active key, in resumable, idempotent batches
retire    the old key, once no row uses it
verify    decrypt every row; report failing ids (never key material)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from bot.crypto.keyring import (
    KeyRing,
    create_ring_file,
    generate_key,
    replace_ring_file,
)
from bot.crypto.masterkey import KEYCHECK, stored_keys
from bot.crypto.vault import KeyVault, RecordBinding, VaultError, parse_header
from bot.errors import ConfigError
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.repositories import KeyRepo, MetaRepo

Echo = Callable[[str], None]


@dataclass
class RewrapReport:
    rewrapped: int = 0
    failed: list[str] = field(default_factory=list)


def _binding(row: object) -> RecordBinding:
    return RecordBinding(row.id, row.owner_id, row.provider, row.base_url)  # type: ignore[attr-defined]


async def status(ring: KeyRing, db: Database, echo: Echo) -> None:
    state = await stored_keys(db)
    keycheck_kid = parse_header(state.keycheck)[0] if state.keycheck else None
    echo(f"key ring: {ring.source}")
    for key in sorted(ring.keys.values(), key=lambda k: k.created):
        rows = state.kids.get(key.kid, 0)
        mark = " (key check)" if key.kid == keycheck_kid else ""
        echo(f"  {key.kid:<16} {key.state:<13} rows={rows:<7} created={key.created or '-'}{mark}")
    for kid in sorted(set(state.kids) - set(ring.keys)):
        echo(f"  {kid:<16} MISSING       rows={state.kids[kid]}")


def add(ring: KeyRing, settings: Settings, echo: Echo, now: datetime) -> KeyRing:
    key = generate_key(now, state="decrypt-only")
    path = settings.keyring_path
    new_ring = KeyRing({**ring.keys, key.kid: key}, ring.active, str(path))
    if settings.encryption_key is not None:
        create_ring_file(path, new_ring)
        echo(f"wrote key ring {path} holding the ENCRYPTION_KEY key and new key {key.kid}.")
        echo(
            "Now remove ENCRYPTION_KEY from the environment and .env, back up the ring "
            "file, restart every instance, then run: balance-bot keys activate " + key.kid
        )
    else:
        replace_ring_file(path, new_ring)
        echo(
            f"added key {key.kid} (decrypt-only). Back up {path}, restart every instance, "
            f"then run: balance-bot keys activate {key.kid}"
        )
    return new_ring


def _require_file(settings: Settings) -> None:
    if settings.encryption_key is not None:
        raise ConfigError(
            "this step needs a key ring file, not ENCRYPTION_KEY: run "
            "`balance-bot keys add` first and follow its instructions"
        )


async def activate(
    ring: KeyRing, kid: str, settings: Settings, db: Database, echo: Echo
) -> KeyRing:
    _require_file(settings)
    new_ring = ring.activate(kid)
    replace_ring_file(settings.keyring_path, new_ring)
    async with db.session() as s:
        await MetaRepo(s).set(KEYCHECK, KeyVault(new_ring).make_keycheck())
    echo(
        f"{kid} is now the active key; new keys are encrypted with it. "
        "Run `balance-bot keys rewrap` to re-encrypt the stored ones."
    )
    return new_ring


async def rewrap(
    ring: KeyRing, db: Database, echo: Echo, *, batch: int = 500, max_rows: int | None = None
) -> RewrapReport:
    """Re-encrypt rows not under the active key. Safe to kill and rerun at any point."""
    vault = KeyVault(ring)
    report = RewrapReport()
    skip: set[str] = set()
    while max_rows is None or report.rewrapped < max_rows:
        async with db.session() as s:
            keys = KeyRepo(s)
            rows = [
                r
                for r in await keys.batch_not_kid(vault.active_kid, batch + len(skip))
                if r.id not in skip
            ]
            if not rows:
                break
            for row in rows[:batch]:
                if max_rows is not None and report.rewrapped >= max_rows:
                    break
                try:
                    secret = vault.decrypt(row.ciphertext, _binding(row))
                except VaultError:
                    skip.add(row.id)
                    report.failed.append(row.id)
                    continue
                blob, kid = vault.encrypt(secret, _binding(row))
                if await keys.rewrap(
                    row.id, row.kid, blob, kid, vault.fingerprint(row.owner_id, secret, kid)
                ):
                    report.rewrapped += 1
        echo(f"rewrapped {report.rewrapped} so far")
    if report.failed:
        echo(f"could not decrypt {len(report.failed)} rows: {', '.join(report.failed)}")
    echo(f"done: {report.rewrapped} rows now use {vault.active_kid}")
    return report


async def retire(ring: KeyRing, kid: str, settings: Settings, db: Database, echo: Echo) -> KeyRing:
    _require_file(settings)
    state = await stored_keys(db)
    in_use = state.kids.get(kid, 0)
    if in_use:
        raise ConfigError(
            f"key {kid} still encrypts {in_use} stored keys; run `balance-bot keys rewrap` first"
        )
    if state.keycheck and parse_header(state.keycheck)[0] == kid:
        raise ConfigError(f"key {kid} still signs the key check; activate another key first")
    new_ring = ring.retire(kid)
    replace_ring_file(settings.keyring_path, new_ring)
    echo(
        f"retired {kid}; keep the old ring in your backups as long as old database "
        "backups may need restoring"
    )
    return new_ring


async def verify(ring: KeyRing, db: Database, echo: Echo, *, batch: int = 1000) -> list[str]:
    vault = KeyVault(ring)
    ok, failed, after = 0, [], ""
    while True:
        async with db.session() as s:
            rows = await KeyRepo(s).all_batches(after, batch)
        if not rows:
            break
        for row in rows:
            try:
                vault.decrypt(row.ciphertext, _binding(row))
                ok += 1
            except VaultError:
                failed.append(row.id)
        after = rows[-1].id
    state = await stored_keys(db)
    if state.keycheck is not None:
        try:
            vault.verify_keycheck(state.keycheck)
        except VaultError:
            echo("key check: FAILED (the ring does not match this database)")
            failed.append("keycheck")
    echo(f"verified {ok} stored keys, {len(failed)} failed")
    for key_id in failed:
        echo(f"  unreadable: {key_id}")
    return failed
