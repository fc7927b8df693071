"""Small helpers shared by the OpenAI-shaped providers (relay, openai, openai-session, -admin).

Upstream error text is read here only to *classify* a reply (exhausted? expired? wrong key
type?); it never leaves these modules, so nothing upstream reaches logs or users.
"""

from __future__ import annotations

from typing import Any

from bot.billing.providers.base import HttpReply

__all__ = ["error_code", "error_text", "has_error_body"]


def _payload(reply: HttpReply) -> Any:
    return None if reply.looks_html else reply.json_or_none()


def error_text(reply: HttpReply) -> str:
    """Lower-cased error message of an OpenAI/one-api/new-api style body, or ""."""
    data = _payload(reply)
    if not isinstance(data, dict):
        return ""
    parts: list[str] = []
    err = data.get("error")
    if isinstance(err, dict):
        parts += [str(err.get(k)) for k in ("message", "code", "type") if err.get(k)]
    elif isinstance(err, str):
        parts.append(err)
    for k in ("message", "msg", "detail"):
        if isinstance(data.get(k), str):
            parts.append(data[k])
    return " ".join(parts).lower()


def error_code(reply: HttpReply) -> str:
    """`error.code` (or `error.type` when there is no code), lower-cased, or ""."""
    data = _payload(reply)
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        for k in ("code", "type"):
            if isinstance(err.get(k), str) and err[k]:
                return err[k].lower()
    return ""


def has_error_body(data: Any) -> bool:
    """HTTP 200 carrying `{"error": {...}}` (one-api/new-api internal errors): not a balance."""
    return isinstance(data, dict) and bool(data.get("error"))
