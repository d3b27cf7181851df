"""Timestamps as every store writes them: UTC, ISO 8601, so they sort as text and read back anywhere."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now(timespec: str = "seconds") -> str:
    """Now in UTC as ISO 8601 (``timespec``: 'seconds' for records, 'microseconds' to order quick saves)."""
    return datetime.now(timezone.utc).isoformat(timespec=timespec)
