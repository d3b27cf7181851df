"""What the ``pathalign`` commands share: the errors they report to the user, the slide and model
arguments, and preparing a ``SlideAnalysis`` with progress bars."""

from __future__ import annotations

import sys

from napari_pathalign.index import LibraryError
from napari_pathalign.io import SlideError
from napari_pathalign.models.checkpoint import CheckpointError
from napari_pathalign.models.spec import EncoderError

# a user's mistake (a bad path, model, encoder, library or value): one line on stderr and exit 1, never a traceback
USER_ERRORS = (LibraryError, SlideError, CheckpointError, EncoderError, ValueError, FileNotFoundError, FileExistsError)


def prepare_analysis(args, quiet: bool = False):
    """Open the slide and run ``SlideAnalysis.iter_prepare`` with progress bars (none when ``quiet``)."""
    from tqdm import tqdm

    from napari_pathalign.io import open_slide
    from napari_pathalign.reporting.analysis import SlideAnalysis

    slide = open_slide(args.slide)
    analysis = SlideAnalysis(
        slide,
        encoder=args.encoder,
        model=args.model,
        retrieval_model=args.retrieval_model or None,
        cache_dir=args.cache_dir,
        device=args.device,
        encoder_weights=args.encoder_weights,
        ontology=getattr(args, "ontology", None),
    )
    if quiet:
        for _ in analysis.iter_prepare():
            pass
        return analysis
    bar, stage = None, None
    for p in analysis.iter_prepare():
        if p.stage != stage and bar is not None:
            bar.close()
            bar = None
        stage = p.stage
        if p.stage in ("features", "regions"):
            bar = bar or tqdm(total=p.total, desc=p.stage, unit="patch", file=sys.stderr)
            bar.update(p.done - bar.n)
        elif p.stage != "ready":
            print(p.message, file=sys.stderr)
    if bar is not None:
        bar.close()
    return analysis


def add_slide_arguments(p) -> None:
    """The slide and model arguments every analysis command takes."""
    p.add_argument("slide", help="slide file or DICOM folder")
    p.add_argument("--model", default="embedded", help="generation model: 'embedded' or a PathAlign checkpoint folder")
    p.add_argument(
        "--retrieval-model",
        default="embedded-r",
        help="retrieval model ('embedded-r', a folder, or '' to use --model for both)",
    )
    p.add_argument("--encoder", default="embedded", help="patch encoder name (the models' own)")
    p.add_argument("--encoder-weights", help="local weights of the encoder (default: its shipped file)")
    p.add_argument("--cache-dir", help="feature cache folder (default: the user's cache folder)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
