"""Settings and a seeded database for the benchmark.

Keys are encrypted with the real vault (AES-GCM bound to the row), so a sweep decrypts
real ciphertexts; rows go in with bulk `INSERT ... VALUES` batches, not one ORM object
per key, so seeding 100,000 keys takes seconds.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bot.billing.ssrf import validate_base_url
from bot.crypto.vault import KeyVault, RecordBinding
from bot.secret import Secret
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.models import ApiKey, User

#: Out of every 10 keys: 4 DeepSeek, 2 Moonshot (one request each), 4 relay keys (one-api:
#: /api/usage/token 404, then subscription + usage = three requests).
MIX = ("deepseek",) * 4 + ("moonshot",) * 2 + ("relay",) * 4
#: Users whose 10 keys are all single-request providers: /balance latency subjects.
BALANCE_USER_BASE = 9_000_000_000
BALANCE_MIX = ("deepseek",) * 6 + ("moonshot",) * 4
_CHUNK = 2_000


@dataclass(frozen=True)
class BenchConfig:
    """Everything a phase process needs to rebuild settings and services (picklable)."""

    database_url: str
    data_dir: str
    encryption_key: str
    deepseek_url: str
    moonshot_url: str
    relay_urls: tuple[str, ...]
    telegram_api_url: str = "http://127.0.0.1:9"
    bot_token: str = "1:unused"  # noqa: S105 - the fake Bot API's token
    latency: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> Settings:
        return Settings(  # type: ignore[call-arg]
            _env_file=None,
            telegram_bot_token=self.bot_token,
            telegram_api_url=self.telegram_api_url,
            database_url=self.database_url,
            data_dir=Path(self.data_dir),
            encryption_key=self.encryption_key,
            allow_private_base_urls=True,
            provider_base_urls={"DEEPSEEK": self.deepseek_url, "MOONSHOT": self.moonshot_url},
            log_level="WARNING",
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_encryption_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _fake_key() -> str:
    return "sk-bench" + secrets.token_hex(20)


async def seed(
    db: Database,
    vault: KeyVault,
    cfg: BenchConfig,
    *,
    n_keys: int,
    n_users: int,
    balance_users: int,
) -> tuple[int, list[int]]:
    """Insert `n_keys` keys over `n_users` users, plus `balance_users` users with 10 keys."""
    relay_urls = [validate_base_url(u, allow_private=True) for u in cfg.relay_urls]
    n_users = max(1, min(n_users, n_keys))
    async with db.session() as s:
        for start in range(0, n_users, _CHUNK * 5):
            ids = range(1 + start, 1 + min(n_users, start + _CHUNK * 5))
            await s.execute(insert(User), [{"id": i, "timezone": "UTC"} for i in ids])
        extra = [BALANCE_USER_BASE + i for i in range(balance_users)]
        if extra:
            await s.execute(insert(User), [{"id": i, "timezone": "UTC"} for i in extra])

    def row(owner: int, index: int, provider: str, relay: int) -> dict[str, Any]:
        key_id = secrets.token_hex(16)
        base_url = relay_urls[relay % len(relay_urls)] if provider == "relay" else None
        secret = Secret(_fake_key())
        ciphertext, kid = vault.encrypt(secret, RecordBinding(key_id, owner, provider, base_url))
        return {
            "id": key_id,
            "owner_id": owner,
            "label": f"{provider}-{index}",
            "provider": provider,
            "base_url": base_url,
            "ciphertext": ciphertext,
            "kid": kid,
            "hint": secret.hint,
            "fingerprint": vault.fingerprint(owner, secret, kid),
            "options": {},
        }

    batch: list[dict[str, Any]] = []
    relay_seq = 0

    async def flush() -> None:
        if batch:
            async with db.session() as s:
                await s.execute(insert(ApiKey), batch)
            batch.clear()

    for i in range(n_keys):
        provider = MIX[i % len(MIX)]
        batch.append(row(1 + i % n_users, i, provider, relay_seq))
        relay_seq += provider == "relay"
        if len(batch) >= _CHUNK:
            await flush()
    for uid in extra:
        for j, provider in enumerate(BALANCE_MIX):
            batch.append(row(uid, j, provider, 0))
    await flush()
    return n_keys + len(extra) * len(BALANCE_MIX), extra
