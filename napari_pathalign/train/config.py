"""Training configuration: one JSON file, read into a dataclass (unknown keys are refused)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


@dataclass
class TrainConfig:
    """Paths in the JSON are relative to the JSON file."""

    data: str  # table of slide, report[, part, prompt, features] (JSONL or CSV); see train/dataset.py
    out: str  # output folder: model/ (the checkpoint) and train_state/ (to resume)
    val_data: str | None = None  # held-out table; retrieval top-1 on it after every epoch
    features_dir: str = "features"  # feature cache of `pathalign embed`; missing slides are embedded there
    encoder: str = "embedded"  # patch encoder the features come from
    encoder_weights: str | None = None  # its local weights (file or folder)
    grid: dict = field(default_factory=dict)  # GridConfig fields: patch_size, target_mpp, max_patches, ...
    model: dict = field(default_factory=dict)  # PathAlignConfig fields (qformer, embed_dim, lm, losses, ...)
    stage: int = 1  # 1: Q-Former (ITC/ITM/ITG); 2: projection into the frozen LM ("lm" loss)
    init_from: str | None = None  # stage 2: the stage-1 checkpoint folder to start from
    # stage 2: also tune the Q-Former, as BLIP-2 does (else only the projection trains); the embedded recipe does, at lr
    # 5e-4
    train_qformer: bool = False
    prompt: str = "Final diagnosis:"  # stage 2: text before the target when a row has no prompt
    # stage 2: LM loss weight of the tokens that state a clinical fact (the ontology's claims, an answer's
    # yes / no; train/fact_spans.py) against 1 for the other tokens; 1.0: every token alike
    fact_weight: float = 1.0
    epochs: int = 10  # passes over the training pairs
    batch_size: int = 16  # slides per step (ITC negatives come from the batch)
    # each batch draws its slides from one 'group' of the data rows (e.g. the organ), so the contrastive
    # negatives are slides of the same organ: retrieval must tell them apart by more than the organ
    grouped_batches: bool = False
    grad_accum: int = 1  # steps accumulated per optimizer update
    lr: float = 1e-4  # peak AdamW learning rate (linear warm-up over 5% of updates, cosine decay)
    weight_decay: float = 0.05  # AdamW weight decay
    max_patches: int | None = 2048  # patches drawn at random per slide per step (None: all)
    seed: int = 0  # shuffling, patch sampling, hard negatives and initialisation
    device: str = "auto"  # 'auto' (CUDA with bf16 autocast when present), 'cpu', 'cuda[:N]'
    embed_missing: bool = True  # embed slides whose features are not cached yet (else: error)
    # the report ontology of the training reports (docs/your-own-reports.md), stored with the model as
    # ontology.json; None: a stage-2 model keeps its stage-1 model's, otherwise the embedded demo one applies
    ontology: str | None = None
    # a folder with slides.csv (slide, fractions: class label -> share of the tissue) of validation slides:
    # after the last epoch, the model's measurement errors are fitted on them (as `pathalign calibrate`) and
    # stored with it as claim_calibration.json; None: the shipped calibration applies until you calibrate
    calibration_data: str | None = None

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"training config {path} does not exist; "
                "see examples/train_config_g.json and examples/train_config_r.json"
            ) from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; expected {sorted(names)}")
        missing = [k for k in ("data", "out") if k not in raw]
        if missing:
            raise ValueError(f"{path}: missing {missing}; a config needs at least 'data' and 'out'")
        cfg = cls(**raw)
        base = path.parent
        for key in (
            "data",
            "out",
            "val_data",
            "features_dir",
            "encoder_weights",
            "init_from",
            "ontology",
            "calibration_data",
        ):
            value = getattr(cfg, key)
            if value is not None and not Path(value).is_absolute():
                setattr(cfg, key, str(base / value))
        lm = cfg.model.get("lm")
        if lm and not Path(lm).is_absolute():
            cfg.model = {**cfg.model, "lm": str(base / lm)}
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.ontology is not None:
            from napari_pathalign.reporting.ontology import load_ontology

            load_ontology(self.ontology)  # an OntologyError (a ValueError) names the field, before any training
        if self.calibration_data is not None and not (Path(self.calibration_data) / "slides.csv").is_file():
            raise ValueError(
                f"calibration_data {self.calibration_data} has no slides.csv (columns slide, fractions: a JSON object "
                "of class label -> share of the tissue); see docs/your-own-reports.md"
            )
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {self.stage!r}")
        if self.stage == 2 and not self.init_from:
            raise ValueError(
                (
                    "stage 2 trains the projection into the LM on top of a stage-1 model: set init_from to its "
                    "checkpoint folder"
                )
            )
        for key in ("epochs", "batch_size", "grad_accum"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)!r}")
        if not (isinstance(self.fact_weight, (int, float)) and 1.0 <= float(self.fact_weight) <= 100.0):
            raise ValueError(f"fact_weight must be from 1 (every token alike) to 100, got {self.fact_weight!r}")
        if self.max_patches is not None and self.max_patches < 1:
            raise ValueError(f"max_patches must be >= 1 or null, got {self.max_patches!r}")

    def to_dict(self) -> dict:
        return asdict(self)
