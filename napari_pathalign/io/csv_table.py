"""Rows of a result dataclass as a CSV file (measurements, region statistics), written atomically."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from pathlib import Path

from napari_pathalign.core.atomic import atomic_write_text


def write_csv(rows, path, overwrite: bool = False) -> Path:
    """One line per dataclass in ``rows``, its fields as columns; NaN and None are written as empty cells.

    A dict field (e.g. class -> fraction) becomes one column per key, ``field:key``, over the keys of all rows.

    An existing file is kept unless ``overwrite=True`` (FileExistsError otherwise).
    """
    rows = list(rows)
    if not rows or not all(dataclasses.is_dataclass(r) for r in rows):
        raise ValueError(
            f"expected a non-empty list of result dataclasses, got {type(rows[0]).__name__ if rows else 'none'}"
        )
    columns = []  # (field, key or None)
    for f in dataclasses.fields(rows[0]):
        if any(isinstance(getattr(r, f.name), dict) for r in rows):
            keys = dict.fromkeys(k for r in rows for k in (getattr(r, f.name) or {}))
            columns += [(f.name, k) for k in keys]
        else:
            columns.append((f.name, None))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([name if key is None else f"{name}:{key}" for name, key in columns])
    for row in rows:
        values = [getattr(row, n) if k is None else (getattr(row, n) or {}).get(k) for n, k in columns]
        writer.writerow(["" if v is None or (isinstance(v, float) and math.isnan(v)) else _cell(v) for v in values])
    return atomic_write_text(path, buffer.getvalue(), overwrite=overwrite)


def _cell(value):
    return f"{value:.6g}" if isinstance(value, float) else value
