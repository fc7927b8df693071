"""Balance bot: remaining credit on LLM API keys, in Telegram."""

__version__ = "0.1.0"
