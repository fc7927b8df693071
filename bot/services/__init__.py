"""Business logic with no Telegram imports: key vault, key management, alerts."""
