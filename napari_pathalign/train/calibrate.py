"""After training: the model's measurement errors fitted on validation slides of known composition.

``TrainConfig.calibration_data`` names a folder with ``slides.csv`` (slide, fractions); each slide is
analysed with the model just trained and its encoder, and ``reporting/calibration.py`` fits the
logit-normal error of each measurement method, as ``pathalign calibrate`` does. The result is stored
in the model folder (``claim_calibration.json``), which the claim checker reads before the shipped file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def calibrate_trained(cfg, model_dir: Path, log: Callable[[str], None] = print) -> Path:
    """Fit and store the claim calibration of the model in ``model_dir``; returns the file written."""
    from napari_pathalign.core.atomic import atomic_write_text
    from napari_pathalign.core.generators import run_to_end
    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.io import open_slide
    from napari_pathalign.models.encoders import load_patch_encoder
    from napari_pathalign.models.pathalign import PathAlign
    from napari_pathalign.reporting.analysis import SlideAnalysis
    from napari_pathalign.reporting.calibration import iter_calibrate

    model = PathAlign.load(model_dir, device=cfg.device)
    encoder = load_patch_encoder(cfg.encoder, cfg.encoder_weights, cfg.device)

    def analysis_of(path: Path):
        a = SlideAnalysis(
            open_slide(path),
            encoder=encoder,
            model=model,
            retrieval_model=None,
            grid=GridConfig(**cfg.grid),
            cache_dir=cfg.features_dir,
            device=cfg.device,
        )
        run_to_end(a.iter_prepare())
        return a

    doc = run_to_end(iter_calibrate(Path(cfg.calibration_data), analysis_of), lambda p: None)
    doc["provenance"]["command"] = "pathalign train (calibration_data)"
    out = Path(model_dir) / "claim_calibration.json"
    atomic_write_text(out, json.dumps(doc, indent=1) + "\n", overwrite=True)
    log(f"claim calibration on {doc['provenance']['slides']} validation slides: {out}")
    return out
