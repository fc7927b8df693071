"""Benchmarks for the balance bot: `balance-bot bench` or `python -m bench` (see PERFORMANCE.md)."""
