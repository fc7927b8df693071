"""Master keys: a key-ring file (for rotation) or one `ENCRYPTION_KEY` (simple setups).

Format of the ring file (docs/security.md §2.6):
    {"format": 1, "active": "k20261123a",
     "keys": {"k20261123a": {"key": "<base64url 32 bytes>", "created": "...", "state": "active"}}}
State is one of `active`, `decrypt-only`, `retired`. Exactly one key is active.
The file is created exclusively with mode 0600 and never rewritten in place: updates
go to a temporary file that atomically replaces it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import stat
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from bot.errors import ConfigError

State = Literal["active", "decrypt-only", "retired"]
STATES: tuple[State, ...] = ("active", "decrypt-only", "retired")
KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class RingKey:
    kid: str
    material: bytes = field(repr=False)
    state: State
    created: str

    def __post_init__(self) -> None:
        if len(self.material) != KEY_BYTES:
            raise ConfigError(f"master key {self.kid} must be {KEY_BYTES} bytes")
        if not (1 <= len(self.kid) <= 16) or not self.kid.isascii():
            raise ConfigError(f"master key id {self.kid!r} must be 1-16 ASCII characters")


@dataclass(frozen=True, slots=True)
class KeyRing:
    keys: dict[str, RingKey]
    active: str
    source: str  # where it came from, for messages ("ENCRYPTION_KEY" or a path)

    def __post_init__(self) -> None:
        if self.active not in self.keys or self.keys[self.active].state != "active":
            raise ConfigError(f"key ring {self.source}: the active key {self.active!r} is missing")
        actives = [k.kid for k in self.keys.values() if k.state == "active"]
        if len(actives) != 1:
            raise ConfigError(f"key ring {self.source}: exactly one key must be active")

    @property
    def usable(self) -> dict[str, RingKey]:
        """Keys that may decrypt (retired ones may not)."""
        return {kid: k for kid, k in self.keys.items() if k.state != "retired"}

    def with_key(self, key: RingKey) -> KeyRing:
        return replace(self, keys={**self.keys, key.kid: key})

    def activate(self, kid: str) -> KeyRing:
        if kid not in self.keys:
            raise ConfigError(f"no key {kid!r} in the key ring")
        if self.keys[kid].state == "retired":
            raise ConfigError(f"key {kid} is retired and cannot be activated")
        keys = {
            k: replace(v, state="decrypt-only") if v.state == "active" else v
            for k, v in self.keys.items()
        }
        keys[kid] = replace(keys[kid], state="active")
        return replace(self, keys=keys, active=kid)

    def retire(self, kid: str) -> KeyRing:
        if kid == self.active:
            raise ConfigError(f"key {kid} is the active key; activate another one first")
        if kid not in self.keys:
            raise ConfigError(f"no key {kid!r} in the key ring")
        return replace(self, keys={**self.keys, kid: replace(self.keys[kid], state="retired")})


def new_kid(now: datetime) -> str:
    return f"k{now:%Y%m%d}{secrets.token_hex(3)}"


def generate_key(now: datetime, state: State = "active") -> RingKey:
    return RingKey(new_kid(now), secrets.token_bytes(KEY_BYTES), state, now.isoformat())


def from_env_key(encoded: str) -> KeyRing:
    """A ring of one key from `ENCRYPTION_KEY` (base64 of 32 random bytes)."""
    material = _decode_key(encoded.strip(), "ENCRYPTION_KEY")
    # A stable, non-secret id derived from the key: a different key gets a different id,
    # so the start-up check reports "does not match" rather than failing to decrypt.
    kid = "e" + hashlib.sha256(b"balancebot/kid/v1" + material).hexdigest()[:10]
    key = RingKey(kid, material, "active", "")
    return KeyRing({kid: key}, kid, "ENCRYPTION_KEY")


def _decode_key(encoded: str, where: str) -> bytes:
    try:
        padded = encoded + "=" * (-len(encoded) % 4)
        material = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError):
        material = b""
    if len(material) != KEY_BYTES:
        raise ConfigError(
            f"{where} must be base64 of {KEY_BYTES} random bytes; generate one with: "
            "openssl rand -base64 32"
        )
    return material


def load_ring(path: Path) -> KeyRing:
    """Read and check a key-ring file; refuse group/other-readable files."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"key ring {path} not found") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"key ring {path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != 1:
            raise ValueError("unknown format")
        keys = {
            kid: RingKey(
                kid,
                _decode_key(entry["key"], f"key {kid} in {path}"),
                entry["state"],
                entry.get("created", ""),
            )
            for kid, entry in data["keys"].items()
        }
        for key in keys.values():
            if key.state not in STATES:
                raise ValueError(f"key {key.kid} has unknown state {key.state!r}")
        return KeyRing(keys, data["active"], str(path))
    except ConfigError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"key ring {path} is not valid ({exc})") from None


def _serialise(ring: KeyRing) -> bytes:
    data = {
        "format": 1,
        "active": ring.active,
        "keys": {
            k.kid: {
                "key": base64.urlsafe_b64encode(k.material).decode().rstrip("="),
                "created": k.created,
                "state": k.state,
            }
            for k in ring.keys.values()
        },
    }
    return (json.dumps(data, indent=2) + "\n").encode()


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_ring_file(path: Path, ring: KeyRing) -> None:
    """Write a new ring file; fails if the file exists (never overwrite a master key)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(_serialise(ring))
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(path.parent)


def replace_ring_file(path: Path, ring: KeyRing) -> None:
    """Atomically replace a ring file (rotation); the old content is never truncated."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    create_ring_file(tmp, ring)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
