"""Alerts without Telegram: the rules (pure), what users chose, the leased sweep, the
daily digest, and the outbox that carries events to bot/delivery.py."""
