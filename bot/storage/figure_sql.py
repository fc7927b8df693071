"""A figure stored as text (`balance_snapshots.remaining`), read as a number inside SQL.

Snapshot figures are a Decimal's `str()`. Rows written before figures were bounded
(bot/billing/models.py `figure_fault`) may hold anything: 'NaN', '9E+999999', garbage.
A query that computes with them must skip those rows exactly as the Python readers do
(`Decimal(text)` and `figure_fault(value) is None`), and must never fail on one:
PostgreSQL raises on a bad CAST, and a statement that raises would stop the whole batch.

`valid(dialect)` is a condition on the column `remaining` that holds exactly for a plain
bounded decimal: an optional sign, digits with at most one point, an optional exponent
(`E`/`e`, sign, at most 9 digits), at most 28 significant digits, |value| < 10^16, and
|value| >= 10^-30 unless it is zero. It reads the text only, so it cannot raise. It is
stricter than `Decimal()` in forms no writer ever produced: surrounding spaces,
underscores between digits, non-ASCII digits and zeros with an exponent beyond 9 digits
are skipped. `value(dialect)` is the number of a valid row: PostgreSQL `numeric`
(exact), SQLite `REAL` (a float: 15–17 significant digits, see SnapshotRepo.burns).

Most rows are short plain decimals ('45.123456'); a cheap test accepts those first (at
most 16 characters, digits and one point after an optional '-': 16 integer digits are
< 10^16, 16 fraction digits are >= 10^-16), and only other rows get the full analysis.
"""

from __future__ import annotations

import re

#: SQLite: no regular expressions, so GLOB patterns (case-sensitive) and instr/substr.
_SQLITE = {
    "e": "instr(upper(remaining), 'E')",
    "mantissa": "CASE WHEN {e} > 0 THEN substr(remaining, 1, {e} - 1) ELSE remaining END",
    "exponent": "CASE WHEN {e} > 0 THEN substr(remaining, {e} + 1) ELSE '0' END",
    "m": "CASE WHEN substr({mantissa}, 1, 1) IN ('+', '-') THEN substr({mantissa}, 2) "
    "ELSE {mantissa} END",
    "x": "CASE WHEN substr({exponent}, 1, 1) IN ('+', '-') THEN substr({exponent}, 2) "
    "ELSE {exponent} END",
    "point": "instr({m}, '.')",
    "grammar": "{m} GLOB '*[0-9]*' AND {m} NOT GLOB '*[^0-9.]*' AND {m} NOT GLOB '*.*.*' "
    "AND {x} GLOB '[0-9]*' AND {x} NOT GLOB '*[^0-9]*' AND length(ltrim({x}, '0')) <= 9",
    "exp_int": "CAST({exponent} AS INTEGER)",
    "significant": "trim({digits}, '0')",
    "fast": "length(remaining) <= 16 AND (remaining GLOB '[0-9]*' OR remaining GLOB '-[0-9]*') "
    "AND substr(remaining, 2) NOT GLOB '*[^0-9.]*' AND remaining NOT GLOB '*.*.*'",
}

#: PostgreSQL: one regular expression for the form, split_part/strpos for the parts. The
#: column is VARCHAR(48), so a valid figure's exponent stays far inside numeric's range.
_POSTGRES = {
    "m": "ltrim(split_part(upper(remaining), 'E', 1), '+-')",
    "exponent": "split_part(upper(remaining), 'E', 2)",
    "point": "strpos({m}, '.')",
    "grammar": r"remaining ~ '^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?0*[0-9]{1,9})?$' "
    "AND length(remaining) <= 100",
    "exp_int": "CASE WHEN {exponent} = '' THEN 0 ELSE CAST({exponent} AS integer) END",
    "significant": "btrim({digits}, '0')",
    "fast": r"length(remaining) <= 16 AND remaining ~ '^-?[0-9]+\.?[0-9]*$'",
}

#: {name} in a part: another part (a regex's {1,9} is not a name)
_PART = re.compile(r"\{([a-z_]+)\}")

_COMMON = {
    "digits": "replace({m}, '.', '')",
    "int_len": "CASE WHEN {point} > 0 THEN {point} - 1 ELSE length({m}) END",
    # the exponent of the leading digit (Decimal.adjusted())
    "adjusted": "{int_len} - (length({digits}) - length(ltrim({digits}, '0'))) - 1 + {exp_int}",
    "zero": "{significant} = ''",
    "bounded": "{zero} OR (length({significant}) <= 28 AND {adjusted} BETWEEN -30 AND 15)",
    "valid": "CASE WHEN {fast} THEN 1 WHEN {grammar} AND ({bounded}) THEN 1 ELSE 0 END = 1",
}


def _expand(name: str, parts: dict[str, str]) -> str:
    """`name`'s expression with every {part} replaced by its own, parenthesised."""
    return _PART.sub(lambda m: f"({_expand(m[1], parts)})", parts[name])


def _parts(dialect: str) -> dict[str, str]:
    return {**_COMMON, **(_POSTGRES if dialect == "postgresql" else _SQLITE)}


def valid(dialect: str) -> str:
    """SQL: `remaining` is a plain bounded decimal (never raises)."""
    return _expand("valid", _parts(dialect))


def value(dialect: str) -> str:
    """SQL: the number of `remaining`, NULL unless `valid` (a CAST guarded by it)."""
    if dialect == "postgresql":
        zero = _expand("zero", _parts(dialect))
        return (
            f"CASE WHEN {valid(dialect)} THEN "
            f"CASE WHEN {zero} THEN 0 ELSE CAST(remaining AS numeric) END END"
        )
    return "CAST(remaining AS REAL)"  # SQLite's CAST never raises; callers filter on valid
