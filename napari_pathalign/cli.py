"""``pathalign`` command line: inspect slides and run the demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _info(args) -> int:
    from PIL import Image

    from napari_pathalign.io import SlideError, open_slide

    try:
        slide = open_slide(args.slide)
    except SlideError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with slide:
        h, w = slide.shape_level0
        print(f"file:        {slide.path}")
        print(f"format:      {slide.format}")
        print(f"size:        {w} x {h} px (level 0)")
        print(f"mpp:         {slide.mpp if slide.mpp else 'unknown (pixel units)'}  [{slide.mpp_source}]")
        print(f"tile:        {slide.tile_size[1]} x {slide.tile_size[0]} px")
        for k, ((lh, lw), ds) in enumerate(zip(slide.level_shapes, slide.downsamples)):
            kind = "stored" if k < slide.n_stored_levels else "derived"
            print(f"level {k}:     {lw} x {lh} px, downsample {ds:.4g} ({kind})")
        print(f"associated:  {', '.join(slide.associated) or 'none'} (label/macro may identify the patient)")
        if args.associated:
            if args.associated not in slide.associated:
                print(f"error: no {args.associated!r} image in this slide; it has {sorted(slide.associated) or 'none'}", file=sys.stderr)
                return 2
            out = Path(args.out or f"{slide.path.stem}.{args.associated}.png")
            Image.fromarray(slide.associated[args.associated].compute()).save(out)
            print(f"wrote {args.associated} image to {out}")
    return 0


def _demo(args) -> int:
    from napari_pathalign._napari.demo import run_demo

    shot = run_demo(Path(args.screenshot) if args.screenshot else None)
    if shot:
        print(f"demo screenshot written to {shot.resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pathalign", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print a slide's metadata; optionally save its label/macro image")
    info.add_argument("slide", help="slide file or DICOM folder")
    info.add_argument("--associated", choices=["label", "macro", "thumbnail"], help="save this associated image (shown only on request: it may identify the patient)")
    info.add_argument("--out", help="where to save the associated image (PNG)")
    info.set_defaults(run=_info)
    demo = sub.add_parser("demo", help="open napari with the plugin and the sample slide")
    demo.add_argument("--screenshot", help="save a screenshot of the window here and exit (for headless runs)")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
