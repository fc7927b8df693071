"""Errors that end the process with one clear line instead of a traceback."""


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and how to fix it."""

    exit_code = 78  # EX_CONFIG


class StartupRefused(ConfigError):
    """The database and the master key do not fit together; nothing was changed."""
