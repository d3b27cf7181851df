"""The public labelled tile sets (PatchCamelyon, Kather 2016, LC25000 lung) and their splits by source image.

Shared by the demo slides (``demo/data.py``), the encoder's self-supervised training and the linear
probes (``eval/probe.py``): every tile of one source image lands in the same split, so no split leaks.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

PCAM_MPP = 0.972  # PatchCamelyon: 96 px tiles from 10x scans
KATHER_MPP = 0.495  # Kather 2016: 150 px tiles at 20x
KATHER_CLASSES = ["TUMOR", "STROMA", "COMPLEX", "LYMPHO", "DEBRIS", "MUCOSA", "ADIPOSE"]  # EMPTY is glass, not tissue
LUNG_MPP = 0.45  # LC25000: 768 px originals at about 0.15 µm/px, shipped resized to 224 px (about 0.4-0.5 µm/px)
LUNG_CLASSES = ["adenocarcinoma", "squamous_cell_carcinoma", "benign"]  # folder names = class-map labels
TEST_FRACTION = 1 / 3  # share of Kather source images / LC25000 clusters held out for the test split


@dataclass
class TileSource:
    """Tiles of one dataset and split, by class."""

    kind: str  # 'pcam', 'kather' or 'lung'
    split: str  # 'train' or 'test'
    mpp: float  # µm per tile pixel
    tiles: dict  # class -> list of tile paths


def kather_source_image(name: str) -> str:
    """'10009_CRC-Prim-HE-03_009.tif_Row_301_Col_151.tif' -> 'CRC-Prim-HE-03_009'."""
    stem = name.split(".tif_Row")[0]
    return re.sub(r"^[0-9A-Fa-f]+_", "", stem)


def held_out(key: str, seed: int) -> bool:
    """Whether a source image (``key``) lands in the test split for ``seed``: a fixed hash, never a random draw."""
    h = int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < TEST_FRACTION


def lung_clusters(folder: Path) -> dict[str, str]:
    """{file path relative to ``folder``: source-tile cluster} from LC25000's ``tiles.csv``.

    LC25000 holds ~20 rotated and flipped copies of each original; the cluster names the original, and
    a split by anything finer than the cluster leaks test tiles into training.
    """
    import csv

    table = folder / "tiles.csv"
    if not table.is_file():
        raise ValueError(
            f"{folder}: LC25000 lung tiles need tiles.csv (columns file, class, cluster) to split by source tile; "
            "without it a split leaks rotated copies between train and test"
        )
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = {"file", "cluster"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{table}: no column {sorted(missing)}; expected file, class, cluster")
    return {r["file"]: r["cluster"] for r in rows}


def lung_split(folder: Path, seed: int) -> dict[str, dict[str, list[Path]]]:
    """{'train' | 'test': {class: tile paths}} of an LC25000 folder, split by cluster (``held_out``)."""
    clusters = lung_clusters(folder)
    out = {"train": {c: [] for c in LUNG_CLASSES}, "test": {c: [] for c in LUNG_CLASSES}}
    for c in LUNG_CLASSES:
        for p in _images(folder / c):
            cluster = clusters.get(f"{c}/{p.name}")
            if cluster is None:
                raise ValueError(f"{p}: not in {folder / 'tiles.csv'}; every tile needs its source-tile cluster")
            out["test" if held_out(cluster, seed) else "train"][c].append(p)
    return out


def source_unit(kind: str, path: Path, clusters: dict[str, str] | None = None) -> str:
    """What a tile shares with its copies and neighbours: a Kather source image, an LC25000 cluster, a PCam tile."""
    if kind == "kather":
        return kather_source_image(path.name)
    if kind == "lung":
        return (clusters or lung_clusters(path.parents[1]))[f"{path.parent.name}/{path.name}"]
    return path.name


def keep_part(source: TileSource, part: tuple[int, int]) -> TileSource:
    """Only the ``part`` = (k, n)-th of n parts of a tile set, by source unit (``source_unit``, a fixed hash):
    two parts never share a source image or cluster, so a model fitted on one part meets unseen tissue in
    the other."""
    k, n = part
    if not (isinstance(n, int) and n >= 2 and isinstance(k, int) and 0 <= k < n):
        raise ValueError(f"part must be (k, n) with n >= 2 and 0 <= k < n, got {part!r}")
    clusters = None
    if source.kind == "lung":
        first = next(p for paths in source.tiles.values() for p in paths)
        clusters = lung_clusters(first.parents[1])

    def mine(path: Path) -> bool:
        key = source_unit(source.kind, path, clusters)
        return int(hashlib.sha256(f"part:{key}".encode()).hexdigest()[:8], 16) % n == k

    tiles = {c: [p for p in paths if mine(p)] for c, paths in source.tiles.items()}
    short = [c for c, v in tiles.items() if len(v) < 2]
    if short:
        raise ValueError(f"{source.kind} {source.split}: part {k} of {n} keeps fewer than 2 tiles of {short}")
    return TileSource(source.kind, source.split, source.mpp, tiles)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff"))


def find_sources(tiles: Path, seed: int = 0) -> list[TileSource]:
    """Every PCam / Kather tile set under ``tiles`` (the folder itself or its subfolders)."""
    tiles = Path(tiles)
    if not tiles.is_dir():
        raise FileNotFoundError(
            f"tiles folder {tiles} does not exist; expected PCam (0/, 1/) or Kather (01_TUMOR/ ...) layout folders"
        )
    found: list[TileSource] = []
    for folder in [tiles, *sorted(p for p in tiles.rglob("*") if p.is_dir())]:
        if (folder / "0").is_dir() and (folder / "1").is_dir():
            split = "test" if folder.name in ("valid", "test", "val") else "train"
            found.append(
                TileSource("pcam", split, PCAM_MPP, {"normal": _images(folder / "0"), "tumour": _images(folder / "1")})
            )
        classes = {
            p.name.split("_", 1)[1]: p for p in folder.iterdir() if p.is_dir() and re.match(r"^\d\d_[A-Z]+$", p.name)
        }
        if set(KATHER_CLASSES) <= set(classes):
            by_split = {"train": {c: [] for c in KATHER_CLASSES}, "test": {c: [] for c in KATHER_CLASSES}}
            for c in KATHER_CLASSES:
                for p in _images(classes[c]):
                    by_split["test" if held_out(kather_source_image(p.name), seed) else "train"][c].append(p)
            for split, t in by_split.items():
                short = [c for c, v in t.items() if len(v) < 2]
                if short:
                    raise ValueError(
                        (
                            f"{folder}: the {split} split has fewer than 2 tiles of {short} "
                            "after splitting by source image; "
                            "add tiles or change --seed"
                        )
                    )
                found.append(TileSource("kather", split, KATHER_MPP, t))
        if all((folder / c).is_dir() for c in LUNG_CLASSES):
            for split, t in lung_split(folder, seed).items():
                short = [c for c, v in t.items() if len(v) < 2]
                if short:
                    raise ValueError(f"{folder}: the {split} split has fewer than 2 lung tiles of {short}")
                found.append(TileSource("lung", split, LUNG_MPP, t))
    if not found:
        raise ValueError(
            f"no tile sets under {tiles}: expected PCam folders 0/ and 1/, Kather folders 01_TUMOR ... 07_ADIPOSE, "
            "or LC25000 folders adenocarcinoma/, squamous_cell_carcinoma/, benign/ with tiles.csv"
        )
    return found
