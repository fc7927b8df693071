"""A wrapper for decrypted API keys that cannot leak through repr, str or logs.

Every plaintext key lives inside a `Secret` from the moment it is read from a chat
message or decrypted, until it is put into an Authorization header. Creating one also
registers the value with the log redaction filter, so that even a stray log line that
contains it is masked.
"""

from __future__ import annotations

import weakref
from typing import Final

_MASK: Final = "…"


def mask(value: str) -> str:
    """`sk-proj-abc…1234` → `sk-…1234`: a recognisable, non-secret hint."""
    tail = value[-4:] if len(value) >= 12 else ""
    head = ""
    for prefix in ("sk-", "sess-", "xai-", "gsk_", "pplx-", "hf_", "r8_", "fw_"):
        if value.startswith(prefix):
            head = prefix
            break
    return f"{head}{_MASK}{tail}"


class Secret:
    """Holds a plaintext credential; `str()`/`repr()` show only a masked hint."""

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError("empty secret")
        self._value = value
        _registry.add(self)

    def reveal(self) -> str:
        """The plaintext. Call it only where the key leaves the process (an HTTP header)."""
        return self._value

    @property
    def hint(self) -> str:
        return mask(self._value)

    def __repr__(self) -> str:
        return f"Secret({self.hint!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> object:
        raise TypeError("Secret cannot be pickled")


class _Registry:
    """Weak set of live secrets; the log filter asks it for values to redact."""

    def __init__(self) -> None:
        self._items: weakref.WeakSet[Secret] = weakref.WeakSet()
        self._static: set[str] = set()

    def add(self, secret: Secret) -> None:
        self._items.add(secret)

    def add_static(self, value: str) -> None:
        """Register a long-lived secret such as the bot token."""
        if value:
            self._static.add(value)

    def values(self) -> list[str]:
        live = [s._value for s in list(self._items)]
        return [*self._static, *live]


_registry = _Registry()


def registered_values() -> list[str]:
    return _registry.values()


def register_static(value: str) -> None:
    _registry.add_static(value)
