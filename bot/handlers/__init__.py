"""Telegram handlers: thin — parse the update, call a service, render the reply."""

from __future__ import annotations

from telegram.ext import Application

from bot.handlers import (
    account,
    add,
    alerts,
    balance,
    fallback,
    guard,
    history,
    keys,
    on_error,
    start,
)

FEATURES = (start, balance, keys, add, account, alerts, history, fallback)  # fallback last


def register(app: Application) -> None:  # type: ignore[type-arg]
    guard.register(app)
    for feature in FEATURES:
        feature.register(app)
    app.add_error_handler(on_error.on_error)  # type: ignore[arg-type]
