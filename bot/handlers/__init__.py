"""Telegram handlers: thin — parse the update, call a service, render the reply."""

from __future__ import annotations

from telegram.ext import Application

from bot.handlers import (
    account,
    add,
    alerts,
    balance,
    currency,
    export,
    fallback,
    guard,
    history,
    keys,
    on_error,
    start,
)

# fallback stays last: it answers whatever no feature took
FEATURES = (start, balance, keys, add, account, alerts, history, currency, export, fallback)


def register(app: Application) -> None:  # type: ignore[type-arg]
    guard.register(app)
    for feature in FEATURES:
        feature.register(app)
    app.add_error_handler(on_error.on_error)  # type: ignore[arg-type]
