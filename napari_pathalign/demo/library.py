"""The demo's similar-case library: the recipe's 40 held-out test slides with their reports.

Built on first use from the real tiles in ``../shared/data/tiles`` (about a minute on 2 CPUs), not
shipped: 40 slides are 81 MB, and a library whose hits cannot be opened would demo nothing. The
slides are the recipe's own test split (seed 0), so the embedded models never trained on them.
Built in a temporary folder and renamed, so an interrupted first run leaves nothing half-made.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from napari_pathalign.eval.truth import organ_of

SEED = 0  # the embedded model's recipe seed: its test split
TEST_SLIDES = 40


def _built_with(library: Path, model, encoder) -> bool:
    """Whether the library at ``library`` holds vectors of exactly this model and encoder."""
    from napari_pathalign.engine.library_build import model_identity
    from napari_pathalign.index import Library, LibraryError

    try:
        lib = Library.open(library)
    except LibraryError:
        return False
    try:
        lib.check_model(**model_identity(model, encoder))
        return True
    except LibraryError:
        return False
    finally:
        lib.close()


def iter_demo_library(tiles: Path, folder: Path, model, encoder, exclude_files: tuple = ()) -> Iterator[str]:
    """Generator of progress messages; afterwards ``folder`` holds ``slides/`` (demo data) and ``library/``.

    Labels are the tumour call ("tumour" / "no tumour"), sites the organ ("lymph node" / "colon"),
    reports each slide's own part of its case report. Slides with the same bytes as one of
    ``exclude_files`` (the slide on screen) are left out: their own hit would teach nothing.
    """
    import filecmp

    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.demo.data import make_demo_data
    from napari_pathalign.engine.library_build import model_identity, slide_record
    from napari_pathalign.eval.evaluate import read_truth
    from napari_pathalign.index import Library

    folder = Path(folder)
    if (folder / "library").is_dir():
        if _built_with(folder / "library", model, encoder):
            return
        # the demo's own library of an earlier embedded model (an upgrade): rebuilt, its slides reused
        yield "The demo library was built with an earlier embedded model; rebuilding it for this one ..."
        shutil.rmtree(folder / "library")
    data_root = folder / "data"
    if not (data_root / "test" / "slides.csv").is_file():
        yield f"Assembling {TEST_SLIDES} demo slides from the real tiles in {tiles} ..."
        partial = folder / "data.partial"
        shutil.rmtree(partial, ignore_errors=True)
        make_demo_data(
            Path(tiles), partial, slides=0, seed=SEED, splits=("test",), test_slides=TEST_SLIDES, progress=False
        )
        shutil.rmtree(data_root, ignore_errors=True)
        partial.rename(data_root)
    data = data_root / "test"
    rows, truths, texts = read_truth(data)
    partial = folder / "library.partial"  # renamed when complete: the records point at data/, which stays put
    shutil.rmtree(partial, ignore_errors=True)
    lib = Library.create(partial, index_type="auto", **model_identity(model, encoder))
    with lib, lib.batch():
        for i, (r, t, text) in enumerate(zip(rows, truths, texts)):
            path = data / r["slide"]
            if any(filecmp.cmp(path, f, shallow=False) for f in exclude_files):
                continue
            yield f"Adding demo slide {i + 1}/{len(rows)} to the library ..."
            meta = {
                "report": text,
                "label": "tumour" if t.tumour_fraction > 0 else "no tumour",
                "site": organ_of(t).name,
                "dominant": r["dominant"],
            }
            record, _ = slide_record(path, model, encoder, GridConfig(), data / "features", meta)
            lib.add([record])
    partial.rename(folder / "library")
    yield "Demo library ready."
