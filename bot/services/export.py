"""/export files: every stored reading of a user's keys as CSV or JSON.

One row per reading with `label,provider,taken_at,remaining,total,used,currency` first,
then `unit`, `kind` and `windows` (JSON text in CSV, objects in JSON). `taken_at` is UTC
ISO 8601 with a `Z`. No key material at all: not the key, not its masked hint, not its
id. In CSV, a cell a spreadsheet would run as a formula (starting with `=`, `+`, `-`,
`@`, a tab or a carriage return) gets a leading `'`, except plain numbers such as a
negative balance (OWASP "CSV injection"); JSON carries the exact text.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bot.services.balances import window_to_json
from bot.services.history import ExportRow

COLUMNS = (
    "label",
    "provider",
    "taken_at",
    "remaining",
    "total",
    "used",
    "currency",
    "unit",
    "kind",
    "windows",
)
FORMATS = ("csv", "json")

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")


def neutralise(cell: str) -> str:
    """A cell no spreadsheet runs as a formula (plain numbers are left alone)."""
    if cell.startswith(_FORMULA_START) and not _NUMBER.match(cell):
        return "'" + cell
    return cell


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _num(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def record(row: ExportRow) -> dict[str, Any]:
    r = row.reading
    return {
        "label": row.label,
        "provider": row.provider,
        "taken_at": _iso(r.taken_at),
        "remaining": _num(r.remaining),
        "total": _num(r.total),
        "used": _num(r.used),
        "currency": r.currency,
        "unit": r.unit,
        "kind": r.kind,
        "windows": [window_to_json(w) for w in r.windows],
    }


def to_csv(rows: Sequence[ExportRow]) -> bytes:
    """Comma-separated, UTF-8, a header row; empty cells for "not said"."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        data = record(row)
        windows = data["windows"]
        data["windows"] = json.dumps(windows, ensure_ascii=False) if windows else ""
        writer.writerow([neutralise("" if data[c] is None else str(data[c])) for c in COLUMNS])
    return buf.getvalue().encode("utf-8")


def to_json(rows: Sequence[ExportRow], exported_at: datetime) -> bytes:
    body = {
        "exported_at": _iso(exported_at),
        "columns": list(COLUMNS),
        "readings": [record(row) for row in rows],
    }
    return json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8")
