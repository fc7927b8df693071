"""Business logic with no Telegram imports: users' API keys, /add, dialogues, balances,
users and /forget (the master key is bot/crypto/, alerts are bot/alerts/)."""
