"""Embedding many slides: locally with progress bars, or as tasks on a dask.distributed cluster.

A slide that fails (unreadable, no tissue, ...) is reported and skipped; the others finish.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from napari_pathalign.core.grid_config import GridConfig

SLIDE_SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".dcm", ".scn", ".mrxs", ".bif"}


@dataclass
class EmbedResult:
    """What happened to one slide."""

    slide: Path
    n_patches: int = 0
    error: str = ""  # empty on success


def expand_slides(inputs: list[str | Path]) -> list[Path | str]:
    """Files as given; a DICOM folder as one slide; other folders: the slide files inside them; a
    ``dicomweb+https://`` address (a series on a server) as written."""
    from napari_pathalign.io.open import DICOMWEB_SCHEMES

    found: list[Path | str] = []
    for given in inputs:
        if isinstance(given, str) and given.lower().startswith(DICOMWEB_SCHEMES):
            found.append(given)  # Path() would fold its '//'
            continue
        item = Path(given)
        if item.is_dir() and any(item.glob("*.dcm")):
            found.append(item)
        elif item.is_dir():
            found.extend(
                sorted(
                    p
                    for p in item.iterdir()
                    if p.suffix.lower() in SLIDE_SUFFIXES or (p.is_dir() and any(p.glob("*.dcm")))
                )
            )
        else:
            found.append(item)
    return found


def embed_one(
    path: Path,
    encoder_name: str,
    weights: str | None,
    out: Path,
    grid: GridConfig,
    batch_size: int = 64,
    device: str = "auto",
    encoder=None,
    progress=None,
) -> EmbedResult:
    """Embed one slide into ``out`` (cached); never raises for a bad slide, says why instead."""
    from napari_pathalign.engine.features import embed_slide
    from napari_pathalign.io import open_slide
    from napari_pathalign.models.encoders import load_patch_encoder

    try:
        encoder = encoder or load_patch_encoder(encoder_name, weights, device)
        with open_slide(path) as slide:
            feats = embed_slide(slide, encoder, grid, cache_dir=out, progress=progress, batch_size=batch_size)
        if len(feats.features) == 0:
            return EmbedResult(path, 0, "no tissue patches found (check the slide, or lower --min-tissue)")
        return EmbedResult(path, len(feats.features))
    except Exception as exc:  # one bad slide must not stop a batch of thousands
        return EmbedResult(path, 0, f"{type(exc).__name__}: {exc}")


def embed_many(
    slides: list[Path],
    encoder_name: str,
    weights: str | None,
    out: Path,
    grid: GridConfig,
    batch_size: int = 64,
    device: str = "auto",
    scheduler: str | None = None,
    workers: int | None = None,
    encoder=None,
) -> list[EmbedResult]:
    """All slides, with a progress bar per slide and overall (local), or one task per slide on dask.

    ``encoder``: an already loaded encoder for the local run (dask workers load their own).
    """
    from tqdm import tqdm

    if scheduler or workers:
        return _embed_distributed(slides, encoder_name, weights, out, grid, batch_size, device, scheduler, workers)
    from napari_pathalign.models.encoders import load_patch_encoder

    encoder = encoder or load_patch_encoder(encoder_name, weights, device)  # once, errors before any slide
    results = []
    with tqdm(total=len(slides), desc="slides", unit="slide", position=0) as overall:
        for path in slides:
            name = str(path).rstrip("/").rsplit("/", 1)[-1]  # a file's name, or a series UID
            with tqdm(desc=name[:30], unit="patch", position=1, leave=False) as bar:

                def progress(done, total, bar=bar):
                    bar.total = total
                    bar.n = done
                    bar.refresh()

                results.append(
                    embed_one(
                        path, encoder_name, weights, out, grid, batch_size, device, encoder=encoder, progress=progress
                    )
                )
            if results[-1].error:
                tqdm.write(f"skipped {path}: {results[-1].error}")
            overall.update(1)
    return results


def _embed_distributed(
    slides, encoder_name, weights, out, grid, batch_size, device, scheduler, workers
) -> list[EmbedResult]:
    from distributed import Client, LocalCluster, as_completed
    from tqdm import tqdm

    cluster = (
        None
        if scheduler
        else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    )
    with Client(scheduler or cluster) as client:
        futures = [
            client.submit(embed_one, p, encoder_name, weights, out, grid, batch_size, device, pure=False)
            for p in slides
        ]
        results = []
        with tqdm(total=len(futures), desc="slides", unit="slide") as bar:
            for fut in as_completed(futures):
                res = fut.result()
                if res.error:
                    tqdm.write(f"skipped {res.slide}: {res.error}")
                results.append(res)
                bar.update(1)
    if cluster is not None:
        cluster.close()
    order = {p: i for i, p in enumerate(slides)}
    return sorted(results, key=lambda r: order[r.slide])
