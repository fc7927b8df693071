"""Encryption of API keys at rest: AES-256-GCM bound to the record it belongs to.

Stored format (docs/security.md §2.3):
    0x01 | len(kid) | kid | 12-byte nonce | ciphertext+tag
The associated data binds each ciphertext to its row: record id, owner, provider and
canonical base URL. A ciphertext copied to another user's row, or a row whose base URL
was edited in SQL, no longer decrypts — so a key is never sent to a host its owner
did not choose. Anything that is not in this format is an error, never a plaintext key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from functools import cached_property

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bot.crypto.keyring import KeyRing, RingKey
from bot.secret import Secret

FORMAT_V1 = 0x01
NONCE_BYTES = 12
_INFO_APIKEY = b"balancebot/apikey/v1"
_INFO_KEYCHECK = b"balancebot/keycheck/v1"
_INFO_FINGERPRINT = b"balancebot/fingerprint/v1"
_KEYCHECK_PLAINTEXT = b"balancebot-keycheck"


class VaultError(Exception):
    """A ciphertext could not be read. The message names no secret."""


class UnknownKeyId(VaultError):
    def __init__(self, kid: str) -> None:
        self.kid = kid
        super().__init__(f"master key {kid!r} is not in the key ring")


@dataclass(frozen=True, slots=True)
class RecordBinding:
    """What a ciphertext is bound to; all of it goes into the AEAD associated data."""

    record_id: str
    owner_id: int
    provider: str
    base_url: str | None

    def encode(self) -> bytes:
        parts = (
            _INFO_APIKEY,
            self.record_id,
            str(self.owner_id),
            self.provider,
            self.base_url or "",
        )
        return b"".join(_lp(p if isinstance(p, bytes) else p.encode()) for p in parts)


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _subkey(material: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)


def _header(kid: str) -> bytes:
    raw = kid.encode("ascii")
    return bytes([FORMAT_V1, len(raw)]) + raw


def parse_header(blob: bytes) -> tuple[str, bytes, bytes]:
    """Split a stored value into (kid, header, rest) or raise VaultError."""
    if len(blob) < 2 or blob[0] != FORMAT_V1:
        raise VaultError("not a ciphertext in a known format")
    kid_len = blob[1]
    end = 2 + kid_len
    if not 1 <= kid_len <= 16 or len(blob) < end + NONCE_BYTES + 16:
        raise VaultError("truncated ciphertext")
    try:
        kid = blob[2:end].decode("ascii")
    except UnicodeDecodeError:
        raise VaultError("corrupt key id") from None
    return kid, blob[:end], blob[end:]


class _KeyMaterial:
    """Per-ring-key derived sub-keys, derived once (decryption happens in hot loops)."""

    def __init__(self, key: RingKey) -> None:
        self.kid = key.kid
        self.aead = AESGCM(_subkey(key.material, _INFO_APIKEY))
        self.keycheck = AESGCM(_subkey(key.material, _INFO_KEYCHECK))
        self.fingerprint_key = _subkey(key.material, _INFO_FINGERPRINT)


class KeyVault:
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._keys = {kid: _KeyMaterial(k) for kid, k in ring.usable.items()}

    @property
    def active_kid(self) -> str:
        return self.ring.active

    @cached_property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def _material(self, kid: str) -> _KeyMaterial:
        try:
            return self._keys[kid]
        except KeyError:
            raise UnknownKeyId(kid) from None

    # -- API keys -------------------------------------------------------------------

    def encrypt(self, secret: Secret, binding: RecordBinding) -> tuple[bytes, str]:
        """Encrypt under the active key; returns (stored value, kid)."""
        material = self._material(self.active_kid)
        header = _header(material.kid)
        nonce = os.urandom(NONCE_BYTES)
        sealed = material.aead.encrypt(nonce, secret.reveal().encode(), header + binding.encode())
        return header + nonce + sealed, material.kid

    def decrypt(self, blob: bytes, binding: RecordBinding) -> Secret:
        kid, header, rest = parse_header(bytes(blob))
        material = self._material(kid)
        nonce, sealed = rest[:NONCE_BYTES], rest[NONCE_BYTES:]
        try:
            plain = material.aead.decrypt(nonce, sealed, header + binding.encode())
        except InvalidTag:
            raise VaultError("ciphertext does not match its record or key") from None
        return Secret(plain.decode())

    def fingerprint(self, owner_id: int, secret: Secret, kid: str | None = None) -> str:
        """Keyed, per-owner hash used to notice the same key added twice."""
        material = self._material(kid or self.active_kid)
        msg = _lp(str(owner_id).encode()) + _lp(secret.reveal().encode())
        return hmac.new(material.fingerprint_key, msg, hashlib.sha256).hexdigest()[:32]

    def fingerprints(self, owner_id: int, secret: Secret) -> list[str]:
        """The fingerprint under every usable key (rows may still carry an older kid)."""
        return [self.fingerprint(owner_id, secret, kid) for kid in sorted(self._keys)]

    # -- key check value ------------------------------------------------------------------

    def make_keycheck(self) -> bytes:
        material = self._material(self.active_kid)
        header = _header(material.kid)
        nonce = os.urandom(NONCE_BYTES)
        aad = header + _INFO_KEYCHECK
        return header + nonce + material.keycheck.encrypt(nonce, _KEYCHECK_PLAINTEXT, aad)

    def verify_keycheck(self, blob: bytes) -> None:
        kid, header, rest = parse_header(bytes(blob))
        material = self._material(kid)
        try:
            plain = material.keycheck.decrypt(
                rest[:NONCE_BYTES], rest[NONCE_BYTES:], header + _INFO_KEYCHECK
            )
        except InvalidTag:
            raise VaultError(f"master key {kid} does not match this database") from None
        if plain != _KEYCHECK_PLAINTEXT:
            raise VaultError("key check value is corrupt")
