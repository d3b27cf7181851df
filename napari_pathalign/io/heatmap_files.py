"""Heatmap files: QuPath GeoJSON tiles, TRIDENT-style HDF5 scores, and a PNG picture with a colour bar.

The suffix picks the format. Writes are atomic and replace an existing file only when asked, so an
interrupted export never leaves a half-written file that QuPath or a later script would trust.
GeoJSON measurements hold finite numbers only: QuPath reads them as a name -> number map and JSON has
no NaN, so a patch without a finite value keeps its tile with the measurement left out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from napari_pathalign.core.atomic import atomic_write
from napari_pathalign.core.heatmap import Heatmap
from napari_pathalign.io.features import magnification

WRITABLE = (".geojson", ".h5", ".png")
READABLE = (".geojson", ".h5")
META_KEY = "pathalign"  # GeoJSON foreign member with what QuPath has no field for (kind, label, mpp, ...)
# viridis at nine evenly spaced stops: perceptually even and readable by colour-blind viewers
_VIRIDIS = np.array(
    [
        [68, 1, 84],
        [71, 44, 122],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [92, 200, 99],
        [170, 220, 50],
        [253, 231, 37],
    ],
    np.float32,
)


def write_heatmap(heatmap: Heatmap, path, overwrite: bool = False) -> Path:
    """Write ``heatmap`` as .geojson (QuPath), .h5 (TRIDENT layout) or .png (picture), atomically."""
    path = Path(path)
    writers = {".geojson": _write_geojson, ".h5": _write_h5, ".png": _write_png}
    suffix = path.suffix.lower()
    if suffix not in writers:
        raise ValueError(
            f"cannot write a heatmap to {path.name!r}: unknown suffix {path.suffix!r}; expected one of {WRITABLE}"
        )
    if len(heatmap) == 0:
        raise ValueError("the heatmap has no patches (no tissue?); nothing to write")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it, or choose another name")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, overwrite=overwrite) as tmp:  # 0o644: an export is meant to be shared
        writers[suffix](heatmap, tmp)
    return path


def read_heatmap(path) -> Heatmap:
    """Read a heatmap from .geojson (ours or QuPath's re-export of our tiles) or .h5."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".geojson":
        return _read_geojson(path)
    if suffix == ".h5":
        return _read_h5(path)
    raise ValueError(
        (
            f"cannot read a heatmap from {path.name!r}: suffix {path.suffix!r}; expected one of {READABLE} "
            "(a .png is a picture only)"
        )
    )


def _meta(hm: Heatmap) -> dict:
    """What a heatmap is, beyond its numbers, as JSON-safe values."""
    return {
        "kind": hm.kind,
        "label": hm.label,
        "normalisation": hm.normalisation,
        "title": hm.title,
        "mpp": None if hm.mpp is None else float(hm.mpp),
        "size_level0": int(hm.size_level0),
        "params": _jsonable(hm.params),
        "writer": "napari-pathalign",
    }


def _raw_if_normalised(hm: Heatmap) -> np.ndarray | None:
    """The raw values when they differ from ``values``; they let a reader renormalise."""
    return None if hm.raw is None or hm.normalisation == "raw" else np.asarray(hm.raw, np.float32)


def _jsonable(obj):
    """A JSON-safe copy: numpy to Python, non-finite floats to None, unknown objects to their str."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj if obj is None or isinstance(obj, (str, int, bool)) else str(obj)


def _write_geojson(hm: Heatmap, tmp: Path) -> None:
    """One QuPath tile per patch, a square in level-0 pixels, its value under the measurement ``kind``."""
    s, name = int(hm.size_level0), hm.kind
    raw = _raw_if_normalised(hm)
    features = []
    for i, ((x, y), v) in enumerate(zip(hm.xy_level0.tolist(), hm.values.tolist())):
        measurements = {name: v} if math.isfinite(v) else {}
        if raw is not None and math.isfinite(raw[i]):
            measurements[f"{name} raw"] = float(raw[i])
        ring = [[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]
        properties = {"objectType": "tile", "name": f"patch {i}", "measurements": measurements}
        features.append(
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": properties}
        )
    meta = _meta(hm) | {"measurement": name, "raw_measurement": None if raw is None else f"{name} raw"}
    doc = {"type": "FeatureCollection", META_KEY: meta, "features": features}
    tmp.write_text(json.dumps(doc, allow_nan=False, ensure_ascii=False), encoding="utf-8")


def _read_geojson(path: Path) -> Heatmap:
    """Tiles back to a heatmap; without our metadata the tile size and measurement come from the tiles."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ValueError(
            (
                f"{path}: not a GeoJSON FeatureCollection; expected square tiles as written by write_heatmap "
                "or exported by QuPath"
            )
        )
    meta = doc.get(META_KEY) or {}
    feats = [f for f in doc.get("features") or [] if (f.get("geometry") or {}).get("type") == "Polygon"]
    if not feats:
        raise ValueError(f"{path}: no Polygon features; expected one square tile per patch")
    tables = [_measurements(f) for f in feats]
    name = meta.get("measurement") or next((k for t in tables for k in t), None)
    if name is None:
        raise ValueError(
            f"{path}: the tiles have no measurements; expected one number per tile (e.g. exported from write_heatmap)"
        )
    rings = [np.asarray(f["geometry"]["coordinates"][0], np.float64) for f in feats]  # each (5, 2)
    lo = np.array([r.min(0) for r in rings])  # (N, 2) top-left (x, y)
    sides = np.array([r.max(0) - r.min(0) for r in rings])  # (N, 2)
    size = int(meta.get("size_level0") or round(sides[0, 0]))
    if np.abs(sides - size).max() > 0.5:
        raise ValueError(
            f"{path}: tiles are not all squares of side {size} level-0 pixels; expected one patch size per heatmap"
        )
    values = np.array([t.get(name, np.nan) for t in tables], np.float32)
    raw_name = meta.get("raw_measurement")
    raw = np.array([t.get(raw_name, np.nan) for t in tables], np.float32) if raw_name else None
    return Heatmap(
        values,
        np.rint(lo).astype(np.int64),
        size,
        meta.get("mpp"),
        meta.get("kind", name),
        meta.get("label", name),
        meta.get("normalisation", "raw"),
        meta.get("params") or {},
        raw,
    )


def _measurements(feature: dict) -> dict:
    """A tile's measurements as name -> float; QuPath before v0.4 wrote a list of {name, value}."""
    m = (feature.get("properties") or {}).get("measurements") or {}
    if isinstance(m, list):
        m = {d.get("name"): d.get("value") for d in m if isinstance(d, dict)}
    return {k: float(v) for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _write_h5(hm: Heatmap, tmp: Path) -> None:
    """TRIDENT's layout: ``coords`` (N, 2) level-0 corners with the patching attributes, ``scores`` (N,)."""
    import h5py

    raw = _raw_if_normalised(hm)
    with h5py.File(tmp, "w") as f:
        coords = f.create_dataset("coords", data=hm.xy_level0.astype(np.int64))
        mag0 = magnification(hm.mpp)
        coords.attrs.update(
            patch_size_level0=int(hm.size_level0), level0_magnification=-1 if mag0 is None else mag0, overlap=0
        )
        f.create_dataset("scores", data=hm.values.astype(np.float32))
        if raw is not None:
            f.create_dataset("raw_scores", data=raw)
        f.attrs.update(
            kind=hm.kind,
            label=hm.label,
            normalisation=hm.normalisation,
            title=hm.title,
            mpp=-1.0 if hm.mpp is None else float(hm.mpp),
            params=json.dumps(_jsonable(hm.params), allow_nan=False),
            writer="napari-pathalign",
        )


def _read_h5(path: Path) -> Heatmap:
    """Ours or any file with ``coords`` and ``scores``; missing attributes read as unknown."""
    import h5py

    with h5py.File(path, "r") as f:
        if "coords" not in f or "scores" not in f:
            raise ValueError(
                (
                    f"{path}: not a heatmap file; expected 'coords' and 'scores' datasets (patch features go through "
                    "read_features)"
                )
            )
        if "patch_size_level0" not in f["coords"].attrs:
            raise ValueError(
                f"{path}: 'coords' has no patch_size_level0 attribute; expected TRIDENT's patching attributes"
            )
        xy = np.asarray(f["coords"], np.int64)
        size = int(f["coords"].attrs["patch_size_level0"])
        values = np.asarray(f["scores"], np.float32)
        raw = np.asarray(f["raw_scores"], np.float32) if "raw_scores" in f else None
        a = dict(f.attrs)
    mpp = float(a.get("mpp", -1))
    kind = str(a.get("kind", "scores"))
    params = json.loads(a["params"]) if "params" in a else {}
    return Heatmap(
        values,
        xy,
        size,
        mpp if mpp > 0 else None,
        kind,
        str(a.get("label", kind)),
        str(a.get("normalisation", "raw")),
        params,
        raw,
    )


def _colours(t: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 viridis colours of ``t`` in [0, 1]."""
    pos = np.clip(t, 0, 1) * (len(_VIRIDIS) - 1)
    i = np.minimum(pos.astype(np.int64), len(_VIRIDIS) - 2)
    w = (pos - i)[..., None]
    return np.rint(_VIRIDIS[i] * (1 - w) + _VIRIDIS[i + 1] * w).astype(np.uint8)


def _write_png(hm: Heatmap, tmp: Path) -> None:
    """The raster (NaN transparent), enlarged so each patch is at least 4 pixels, with title and colour bar."""
    from PIL import Image, ImageDraw, ImageFont
    from PIL.PngImagePlugin import PngInfo

    img = hm.raster().image  # (rows, cols) float32, NaN off the patches
    finite = np.isfinite(img)
    lo, hi = (float(img[finite].min()), float(img[finite].max())) if finite.any() else (0.0, 1.0)
    t = np.clip((img - lo) / (hi - lo), 0, 1) if hi > lo else np.full(img.shape, 0.5, np.float32)
    rgba = np.zeros((*img.shape, 4), np.uint8)  # (rows, cols, 4)
    rgba[..., :3] = _colours(np.where(finite, t, 0))
    rgba[..., 3] = np.where(finite, 255, 0)
    k = max(4, math.ceil(512 / max(img.shape)))  # pixels per patch: small maps still readable
    heat = Image.fromarray(rgba).resize((img.shape[1] * k, img.shape[0] * k), Image.Resampling.NEAREST)

    font = ImageFont.load_default(size=14)
    pad, bar_w, tick = 10, 18, 5
    draw = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    subtitle = (
        f"{len(hm)} patches, values {lo:.4g} to {hi:.4g}" if finite.any() else f"{len(hm)} patches, no finite values"
    )
    labels = [f"{v:.3g}" for v in (hi, (lo + hi) / 2, lo)] if finite.any() else []

    def text_w(s: str) -> int:
        return int(math.ceil(draw.textlength(s, font=font)))

    line_h = font.getbbox("Ag")[3] + 4
    bar_h = max(heat.height, 150)
    bar_x = pad + heat.width + 2 * pad
    label_x = bar_x + bar_w + tick + 4
    width = max(
        label_x + max(map(text_w, labels), default=0) + pad, pad + max(text_w(hm.title), text_w(subtitle)) + pad
    )
    top = pad + 2 * line_h + pad
    canvas = Image.new("RGBA", (width, top + max(heat.height, bar_h) + pad), (0, 0, 0, 0))
    canvas.paste(heat, (pad, top))
    bar = np.repeat(_colours(np.linspace(1, 0, bar_h, dtype=np.float32))[:, None], bar_w, axis=1)  # (bar_h, bar_w, 3)
    canvas.paste(Image.fromarray(bar).convert("RGBA"), (bar_x, top))
    draw = ImageDraw.Draw(canvas)
    ink = (0, 0, 0, 255)
    draw.text((pad, pad), hm.title, font=font, fill=ink)
    draw.text((pad, pad + line_h), subtitle, font=font, fill=ink)
    draw.rectangle([bar_x - 1, top - 1, bar_x + bar_w, top + bar_h], outline=ink)
    for frac, s in zip((0.0, 0.5, 1.0), labels):
        y = top + round(frac * (bar_h - 1))
        draw.line([bar_x + bar_w, y, bar_x + bar_w + tick, y], fill=ink)
        box = draw.textbbox((0, 0), s, font=font)
        draw.text((label_x, y - (box[1] + box[3]) / 2), s, font=font, fill=ink)
    info = PngInfo()
    info.add_itxt("Title", hm.title)
    info.add_itxt(META_KEY, json.dumps(_meta(hm), allow_nan=False, ensure_ascii=False))
    canvas.save(tmp, format="PNG", pnginfo=info)
