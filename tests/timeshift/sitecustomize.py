"""Moves the wall clock of test subprocesses (the bot run as a process, the CLI) by
TEST_TIME_SHIFT_DAYS, like tests/conftest.py does for the test process itself.

tests/conftest.py puts this directory on PYTHONPATH only when the shift is on; Python
imports `sitecustomize` at start-up. Monotonic clocks are not moved.
"""

import os

_days = os.environ.get("TEST_TIME_SHIFT_DAYS")
if _days:
    import datetime as _dt

    import time_machine

    time_machine.travel(
        _dt.datetime.now(_dt.UTC) + _dt.timedelta(days=float(_days)), tick=True
    ).start()
