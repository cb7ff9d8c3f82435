"""Counts of configurations/inputs the hardening tests tried, printed in pytest's summary.

Tests call ``record("torch configurations", n)``; conftest.py's terminal-summary hook prints the
totals (and, when $CNNFAST_COUNTS_FILE is set, writes them there as JSON) so a closing note can
cite them.
"""

from __future__ import annotations

from collections import Counter

COUNTS: Counter[str] = Counter()


def record(kind: str, n: int = 1) -> None:
    COUNTS[kind] += int(n)
