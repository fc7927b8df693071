"""The stored-key fixtures shared with tests/foundation (a migrated database, its vault)."""

from tests.foundation.conftest import canary, opened, settings

__all__ = ["canary", "opened", "settings"]
