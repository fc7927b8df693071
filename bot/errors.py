"""Errors that end the process with one clear line instead of a traceback."""


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and how to fix it."""

    exit_code = 78  # EX_CONFIG


class Busy(Exception):
    """A shared resource stayed busy past the time we wait for it; nothing was changed.

    Raised by the storage layer (SQLite's write lock held by another writer, perhaps
    outside the bot); the error handler answers "busy, try again", not "went wrong".
    """


class StartupRefused(ConfigError):
    """The database and the master key do not fit together; nothing was changed."""
