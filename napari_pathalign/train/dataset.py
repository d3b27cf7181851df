"""Slide-report pairs for training: read the table, curate parts, find each slide's cached features.

Table format (JSONL, one object per line, or CSV with a header), paths relative to the table:

    slide     path of the slide file (or DICOM folder)                      required
    report    the full report text                                         required
    part      the slide's part label ("A", "2", "Part B"); empty: no part  optional
    prompt    text before the target in stage 2 (e.g. a question, for VQA) optional
    features  a ready .h5 feature file (TRIDENT layout) for this slide     optional

Features come from the patch-pipeline cache (``pathalign embed``), so training epochs never decode
images: an epoch reads a few hundred kB per slide.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_pathalign.train.reports import part_text

REQUIRED = ("slide", "report")


@dataclass
class Pair:
    """One slide and the text it is trained with."""

    slide: Path  # the slide file
    text: str  # its part of the report (or the target answer)
    part: str | None  # its part label
    prompt: str | None  # stage-2 prompt; None: the config's default
    features: Path | None  # explicit feature file, else looked up in the cache
    group: str | None = None  # the row's group (e.g. its organ): with grouped batches, batched only together


@dataclass
class Unmatched:
    """A row that was not used, and why."""

    slide: str
    reason: str


def read_table(path: str | Path) -> list[dict]:
    """Rows of a JSONL or CSV table; errors name the line and what is expected."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            (
                f"training table {path} does not exist; expected a .jsonl or .csv with columns slide, report[, "
                "part, prompt, features]"
            )
        )
    rows = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [dict(r) for r in csv.DictReader(fh)]
    else:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    (
                        f"{path}:{n}: not valid JSON ({exc.msg}); each line must be "
                        f'one object like {{"slide": ..., "report": ...}}'
                    )
                ) from exc
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    for n, row in enumerate(rows, 1):
        missing = [k for k in REQUIRED if not str(row.get(k) or "").strip()]
        if missing:
            raise ValueError(f"{path}: row {n} has no {', '.join(missing)}; every row needs slide and report")
    return rows


def load_pairs(path: str | Path) -> tuple[list[Pair], list[Unmatched]]:
    """Curated pairs (each slide with its own part of the report) and the rows left out."""
    path = Path(path)
    base = path.parent
    pairs, unmatched = [], []
    for row in read_table(path):
        part = str(row.get("part") or "").strip() or None
        text, why = part_text(str(row["report"]), part)
        if text is None:
            unmatched.append(Unmatched(str(row["slide"]), why))
            continue
        feats = row.get("features")
        pairs.append(
            Pair(
                base / str(row["slide"]),
                text,
                part,
                (str(row["prompt"]) if row.get("prompt") else None),
                base / str(feats) if feats else None,
                str(row["group"]) if row.get("group") else None,
            )
        )
    return pairs, unmatched


def cached_feature_path(slide: Path, features_dir: Path, grid, encoder) -> Path:
    """Where ``pathalign embed`` with this grid and encoder put (or will put) the slide's features."""
    from napari_pathalign.engine.features import cache_key
    from napari_pathalign.io import open_slide

    with open_slide(slide) as opened:  # metadata only: the key depends on how its pixels are read
        key = cache_key(opened, grid, encoder)
    return Path(features_dir) / f"{slide.stem}.{key}.h5"


class FeatureBank:
    """Features of the training slides, read from disk once and kept (a few hundred kB per slide)."""

    def __init__(self, paths: list[Path]):
        from napari_pathalign.io.features import read_features

        # a slide listed in several rows (reworded reports, questions) is read and held once
        loaded = {p: read_features(p) for p in dict.fromkeys(paths)}
        self.items = [loaded[p] for p in paths]
        empty = [str(p) for p, f in loaded.items() if len(f.features) == 0]
        if empty:
            raise ValueError(
                (
                    f"{len(empty)} feature files hold no patches (no tissue found): {empty[:3]}; remove those slides "
                    "from the table"
                )
            )

    def sample(self, index: int, max_patches: int | None, rng: np.random.Generator | None):
        """(features, xy_level0, mpp) of slide ``index``; above ``max_patches`` a random subset
        (``rng``) or, without one, an even deterministic one."""
        f = self.items[index]
        n = len(f.features)
        if max_patches is None or n <= max_patches:
            keep = slice(None)
        elif rng is None:
            keep = np.linspace(0, n - 1, max_patches).astype(int)
        else:
            keep = np.sort(rng.choice(n, max_patches, replace=False))
        return f.features[keep], f.xy_level0[keep], f.mpp
