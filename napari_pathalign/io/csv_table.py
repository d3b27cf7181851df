"""Rows of a result dataclass as a CSV file (measurements, region statistics), written atomically."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from pathlib import Path

from napari_pathalign.core.atomic import atomic_write_text


def write_csv(rows, path, overwrite: bool = False) -> Path:
    """One line per dataclass in ``rows``, its fields as columns; NaN is written as an empty cell.

    An existing file is kept unless ``overwrite=True`` (FileExistsError otherwise).
    """
    rows = list(rows)
    if not rows or not all(dataclasses.is_dataclass(r) for r in rows):
        raise ValueError(
            f"expected a non-empty list of result dataclasses, got {type(rows[0]).__name__ if rows else 'none'}"
        )
    names = [f.name for f in dataclasses.fields(rows[0])]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        values = [getattr(row, n) for n in names]
        writer.writerow(["" if isinstance(v, float) and math.isnan(v) else _cell(v) for v in values])
    return atomic_write_text(path, buffer.getvalue(), overwrite=overwrite)


def _cell(value):
    return f"{value:.6g}" if isinstance(value, float) else value
