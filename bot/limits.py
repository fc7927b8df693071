"""Lengths that must agree from user input to database column (docs/security.md §6).

One constant per value a user (or a provider) can make us store, used both by the code
that validates the input and by the column that stores it, so a value the check accepts
always fits: before, a 600-character base URL passed the URL check (2,048) and then
failed on PostgreSQL's String(512) with "Something went wrong". No imports: the billing,
service and storage layers all read it.
"""

from __future__ import annotations

#: A user's base URL (relay), in its canonical form — also what the raw text may be.
MAX_BASE_URL = 512
#: A key's label as the user types it (whitespace folded); the column keeps room for
#: labels the bot makes (`provider-2`).
MAX_LABEL = 32
LABEL_COLUMN = 64
#: An IANA time zone name as /tz accepts it.
MAX_TIMEZONE = 64
#: A figure as text (snapshots); `BalanceResult` bounds figures so `str()` fits (≤ 38).
FIGURE_TEXT = 48
#: A currency code (`bot.billing.models.CURRENCY_RE`: 3–8 letters or digits).
MAX_CURRENCY = 8
