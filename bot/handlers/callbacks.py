"""Compact callback data: `prefix:action:arg…`, at most 64 bytes (Telegram's limit).

Callback data comes from the client and can be forged (docs/security.md §T8): decoding only
checks the shape. Handlers must still load the key with the presser's user id.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_BYTES = 64
SEP = ":"


@dataclass(frozen=True, slots=True)
class Callback:
    prefix: str
    action: str
    args: tuple[str, ...] = ()

    def arg(self, index: int, default: str = "") -> str:
        return self.args[index] if index < len(self.args) else default


def encode(prefix: str, action: str, *args: str) -> str:
    parts = [prefix, action, *args]
    if any(SEP in p for p in parts):
        raise ValueError("callback parts must not contain ':'")
    data = SEP.join(parts)
    if len(data.encode()) > MAX_BYTES:
        raise ValueError(f"callback data over {MAX_BYTES} bytes")
    return data


def decode(data: str | None, prefix: str) -> Callback | None:
    """The parsed callback, or None if it is not ours or not well-formed."""
    if not data or len(data.encode()) > MAX_BYTES:
        return None
    parts = data.split(SEP)
    if len(parts) < 2 or parts[0] != prefix or not parts[1]:
        return None
    return Callback(parts[0], parts[1], tuple(parts[2:]))


def pattern(prefix: str) -> str:
    """Regex for CallbackQueryHandler(pattern=...)."""
    return f"^{prefix}{SEP}"
