"""The training loop, top to bottom: pairs -> cached features -> model -> epochs -> checkpoint.

Stage 1 trains the Q-Former with ITC (+ ITM, ITG for PathAlign-G); stage 2 starts from a stage-1
checkpoint and trains the projection into a frozen causal LM. After every epoch: retrieval top-1 on
the validation pairs and a checkpoint (model/ for use, train_state/ to resume).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from napari_pathalign.core.atomic import atomic_write, atomic_write_text
from napari_pathalign.models.checkpoint import CheckpointError, load_weights, read_config
from napari_pathalign.models.pathalign import PathAlign, PathAlignConfig, collate_slides
from napari_pathalign.train.config import TrainConfig
from napari_pathalign.train.dataset import FeatureBank, Pair, cached_feature_path, load_pairs


@dataclass
class TrainResult:
    checkpoint: Path  # the model folder PathAlign.load reads
    history: list[dict] = field(default_factory=list)  # per epoch: losses and validation top-1
    unmatched: list = field(default_factory=list)  # rows left out by part curation, with reasons


def _feature_paths(pairs: list[Pair], cfg: TrainConfig, log: Callable[[str], None]) -> tuple[list[Path], object]:
    """Each pair's feature file; slides not yet cached are embedded first (or named in an error)."""
    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.engine.batch import embed_many
    from napari_pathalign.models.encoders import load_patch_encoder

    grid = GridConfig(**cfg.grid)
    encoder = load_patch_encoder(cfg.encoder, cfg.encoder_weights, cfg.device)
    paths = [p.features or cached_feature_path(p.slide, Path(cfg.features_dir), grid, encoder) for p in pairs]
    todo = sorted({p.slide for p, f in zip(pairs, paths) if not f.exists() and p.features is None})
    missing_explicit = [str(p.features) for p in pairs if p.features is not None and not p.features.exists()]
    if missing_explicit:
        raise FileNotFoundError(f"feature files named in the table do not exist: {missing_explicit[:3]}")
    if todo and not cfg.embed_missing:
        raise FileNotFoundError(
            (
                f"{len(todo)} slides have no cached features in {cfg.features_dir} (e.g. {todo[0]}); run `pathalign "
                f"embed ... --encoder {cfg.encoder} --out {cfg.features_dir}` or set embed_missing"
            )
        )
    if todo:
        log(f"embedding {len(todo)} slides not yet in {cfg.features_dir} with {cfg.encoder}")
        failed = [
            r
            for r in embed_many(todo, cfg.encoder, cfg.encoder_weights, Path(cfg.features_dir), grid, encoder=encoder)
            if r.error
        ]
        if failed:
            raise ValueError(
                (
                    f"{len(failed)} slides could not be embedded, e.g. {failed[0].path}: {failed[0].error}; fix "
                    "or remove them from the table"
                )
            )
    return paths, encoder


def _build_model(cfg: TrainConfig, encoder, feature_dim: int) -> PathAlign:
    if cfg.stage == 2:
        meta = read_config(Path(cfg.init_from))
        mcfg = dict(meta["model"], lm=cfg.model.get("lm", meta["model"].get("lm")), losses=["lm"])
        mcfg["draft_qformer"] = cfg.model.get("draft_qformer", meta["model"].get("draft_qformer", False))
        extra = set(cfg.model) - {"lm", "losses", "draft_qformer"}
        if extra:
            raise ValueError(
                (
                    f"stage 2 takes the architecture from {cfg.init_from}; only 'lm' and 'draft_qformer' may be set in "
                    f"'model', got {sorted(extra)}"
                )
            )
    else:
        if cfg.model.get("draft_qformer"):
            raise ValueError(
                "draft_qformer is a stage-2 setting: a drafting branch starts from a stage-2 model (see "
                "docs/model-and-training.md)"
            )
        mcfg = dict(cfg.model)
        mcfg["qformer"] = {"feature_dim": feature_dim, **mcfg.get("qformer", {})}
        mcfg.update(patch_encoder=encoder.name, patch_encoder_hash=encoder.weights_hash)
    model_cfg = PathAlignConfig.from_dict(mcfg)
    if model_cfg.qformer.feature_dim != feature_dim:
        raise ValueError(
            (
                f"the features have dimension {feature_dim} but the model reads {model_cfg.qformer.feature_dim}; "
                "drop qformer.feature_dim from the config or use the matching encoder"
            )
        )
    if cfg.stage == 2 and (model_cfg.patch_encoder, model_cfg.patch_encoder_hash) != (
        encoder.name,
        encoder.weights_hash,
    ):
        raise CheckpointError(
            (
                f"{cfg.init_from} was trained on {model_cfg.patch_encoder!r} features ({model_cfg.patch_encoder_hash}) "
                f"but this run uses {encoder.name!r} ({encoder.weights_hash})"
            )
        )
    torch.manual_seed(cfg.seed)
    model = PathAlign(model_cfg)
    if cfg.stage == 2:
        fresh = load_weights(model, Path(cfg.init_from), allow_missing=("lm_proj.", "draft_"))
        if model.draft_qformer is not None:
            if any(k.startswith("lm_proj.") for k in fresh):
                raise ValueError(
                    (
                        f"{cfg.init_from} is a stage-1 model; a drafting branch (draft_qformer) starts from a "
                        "stage-2 model, whose Q-Former and projection keep the claim checks' and chat's readings"
                    )
                )
            if any(k.startswith("draft_") for k in fresh):  # a new branch starts as the shared Q-Former and projection
                model.draft_qformer.load_state_dict(model.qformer.state_dict())
                model.draft_proj.load_state_dict(model.lm_proj.state_dict())
        for name, p in model.named_parameters():
            if model.draft_qformer is not None:  # only the drafting branch trains
                p.requires_grad_(name.startswith("draft_"))
            elif not cfg.train_qformer:
                p.requires_grad_(name.startswith("lm_proj."))
    return model


def _lr_at(update: int, total: int, peak: float) -> float:
    warm = max(1, total // 20)
    if update < warm:
        return peak * (update + 1) / warm
    return peak * 0.5 * (1 + math.cos(math.pi * (update - warm) / max(1, total - warm)))


@torch.no_grad()
def retrieval_top1(model: PathAlign, bank: FeatureBank, texts: list[str], max_patches: int | None) -> float:
    """Image-to-text top-1 among the distinct texts of the set (identical reports all count)."""
    from napari_pathalign.core.metrics import top_k_accuracy

    model.eval()
    distinct = sorted(set(texts))
    text_emb = model.encode_text(distinct)
    slides = [model.encode_slide(*bank.sample(i, max_patches, None)) for i in range(len(texts))]
    sim = model.similarity(slides, text_emb)  # (S, T)
    positives = np.array([[t == d for d in distinct] for t in texts])
    return top_k_accuracy(sim, positives, 1)


def groups_of(pairs, cfg: TrainConfig) -> list | None:
    """Each pair's group when batches are grouped (``cfg.grouped_batches``), else None."""
    if not cfg.grouped_batches:
        return None
    missing = sum(p.group is None for p in pairs)
    if missing:
        raise ValueError(f"grouped_batches needs a 'group' in every data row; {missing} of {len(pairs)} rows have none")
    return [p.group for p in pairs]


def epoch_batches(rng: np.random.Generator, n: int, batch_size: int, groups: list | None = None) -> list[np.ndarray]:
    """One epoch's batches of row indices: a random order cut into ``batch_size`` pieces, or, with ``groups``,
    each group's rows in random order cut into pieces within the group, the pieces in random order."""
    if groups is None:
        order = rng.permutation(n)
        return [order[k : k + batch_size] for k in range(0, n, batch_size)]
    labels = np.asarray(groups)
    pieces = []
    for g in sorted(set(groups)):
        rows = rng.permutation(np.flatnonzero(labels == g))
        pieces += [rows[k : k + batch_size] for k in range(0, len(rows), batch_size)]
    return [pieces[k] for k in rng.permutation(len(pieces))]


def _config_hash(cfg: TrainConfig) -> str:
    keep = {k: v for k, v in cfg.to_dict().items() if k not in ("epochs", "device", "embed_missing")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def _ontology_file(cfg: TrainConfig) -> dict[str, str]:
    """{'ontology.json': text} of the ontology the model is trained with: the config's, else the stage-1
    model's (stage 2 keeps it); {} when there is none (the embedded demo ontology then applies)."""
    from napari_pathalign.reporting.ontology import load_ontology

    source = cfg.ontology
    if source is None and cfg.init_from and (Path(cfg.init_from) / "ontology.json").is_file():
        source = str(Path(cfg.init_from) / "ontology.json")
    if source is None:
        return {}
    return {"ontology.json": json.dumps(load_ontology(source).to_dict(), indent=1, ensure_ascii=False) + "\n"}


def _fact_spans(cfg: TrainConfig, texts: list[str], log: Callable[[str], None]) -> list | None:
    """Per training text, the spans that state a fact (``train/fact_spans.py``), read with the ontology
    the model is trained with; None when every token weighs alike (fact_weight 1, or stage 1)."""
    from napari_pathalign.reporting.ontology import Ontology, load_ontology
    from napari_pathalign.train.fact_spans import fact_spans

    if cfg.stage != 2 or float(cfg.fact_weight) == 1.0:
        return None
    text = _ontology_file(cfg).get("ontology.json")
    onto = Ontology.from_dict(json.loads(text), "the training ontology") if text else load_ontology()
    spans = [fact_spans(t, onto) for t in texts]
    log(f"fact_weight {cfg.fact_weight}: {sum(map(bool, spans))} of {len(texts)} texts state a fact")
    return spans


def _save_state(folder: Path, optimizer, state: dict) -> None:
    """Optimizer moments as safetensors + the loop's position as JSON (no pickle), atomically."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    sd = optimizer.state_dict()
    tensors = {
        f"{i}.{k}": v.detach().cpu().contiguous()
        for i, s in sd["state"].items()
        for k, v in s.items()
        if torch.is_tensor(v)
    }
    with atomic_write(folder / "optimizer.safetensors") as tmp:
        save_file(tensors, str(tmp))
    atomic_write_text(folder / "state.json", json.dumps({**state, "param_groups": sd["param_groups"]}, indent=2))


def _load_state(folder: Path, optimizer) -> dict:
    from safetensors.torch import load_file

    state = json.loads((folder / "state.json").read_text())
    tensors = load_file(str(folder / "optimizer.safetensors"))
    per_param: dict[int, dict] = {}
    for key, value in tensors.items():
        i, name = key.split(".", 1)
        per_param.setdefault(int(i), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": state.pop("param_groups")})
    return state


def train(cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] = print) -> TrainResult:
    """Train as ``cfg`` says; returns the checkpoint folder and the per-epoch history."""
    from tqdm import tqdm

    from napari_pathalign.models.patch_encoder import pick_device

    device, amp_dtype = pick_device(cfg.device)
    rng = np.random.default_rng(cfg.seed)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    pairs, unmatched = load_pairs(cfg.data)
    for u in unmatched:
        log(f"left out {u.slide}: {u.reason}")
    if len(pairs) < 2:
        raise ValueError(f"{cfg.data}: {len(pairs)} usable slide-report pairs; contrastive training needs at least 2")
    val_pairs = load_pairs(cfg.val_data)[0] if cfg.val_data else []
    paths, encoder = _feature_paths(pairs + val_pairs, cfg, log)
    bank, val_bank = FeatureBank(paths[: len(pairs)]), FeatureBank(paths[len(pairs) :]) if val_pairs else None
    model = _build_model(cfg, encoder, bank.items[0].features.shape[1]).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    out = Path(cfg.out)
    model_dir, state_dir = out / "model", out / "train_state"
    steps_per_epoch = len(epoch_batches(np.random.default_rng(0), len(pairs), cfg.batch_size, groups_of(pairs, cfg)))
    total_updates = math.ceil(cfg.epochs * steps_per_epoch / cfg.grad_accum)
    start_epoch, update, history = 0, 0, []
    if resume:
        if not (state_dir / "state.json").is_file():
            raise FileNotFoundError(f"nothing to resume in {out}: no train_state/state.json; start without --resume")
        load_weights(model, model_dir)
        state = _load_state(state_dir, optimizer)
        if state["config_hash"] != _config_hash(cfg):
            raise ValueError(
                f"{out} was trained with another config; resume only with the same config (epochs may grow)"
            )
        start_epoch, update, history = state["epoch"] + 1, state["update"], state["history"]
        rng = np.random.default_rng([cfg.seed, start_epoch])
        generator.manual_seed(cfg.seed + start_epoch)
        log(f"resuming after epoch {state['epoch'] + 1}")
    texts = [p.text for p in pairs]
    prompts = [p.prompt or cfg.prompt for p in pairs]
    if "itg" in model.cfg.losses:
        log(f"ITG softmax over the {model.restrict_itg_vocab(sorted(set(texts)))} word pieces of the training texts")
    slide_ids = [str(path) for path in paths[: len(pairs)]]  # rows of one slide are never each other's negatives
    groups = [p.group for p in pairs] if cfg.grouped_batches else None
    spans = _fact_spans(cfg, texts, log)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        batches = epoch_batches(rng, len(pairs), cfg.batch_size, groups)
        sums: dict[str, float] = {}
        bar = tqdm(range(len(batches)), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step", leave=False)
        for step in bar:
            idx = batches[step]
            batch = collate_slides([bank.sample(i, cfg.max_patches, rng) for i in idx]).to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=device.type == "cuda"):
                losses = model.losses(
                    batch,
                    [texts[i] for i in idx],
                    [prompts[i] for i in idx],
                    generator,
                    [slide_ids[i] for i in idx],
                    [spans[i] for i in idx] if spans else None,
                    float(cfg.fact_weight),
                )
            loss = sum(losses.values())
            (loss / cfg.grad_accum).backward()
            if (step + 1) % cfg.grad_accum == 0 or step + 1 == len(batches):
                for g in optimizer.param_groups:
                    g["lr"] = _lr_at(update, total_updates, cfg.lr)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                update += 1
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.set_postfix({k: f"{v / (step + 1):.3f}" for k, v in sums.items()})
        record = {"epoch": epoch + 1, **{k: v / len(batches) for k, v in sums.items()}}
        if cfg.stage == 1:
            eval_bank, eval_texts, which = (
                (val_bank, [p.text for p in val_pairs], "val") if val_pairs else (bank, texts, "train")
            )
            record[f"{which}_top1"] = retrieval_top1(model, eval_bank, eval_texts, cfg.max_patches)
        history.append(record)
        log("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
        model.save(
            model_dir,
            extra={"epoch": epoch + 1, "history": history, "train_config": cfg.to_dict()},
            files=_ontology_file(cfg),
        )
        _save_state(
            state_dir,
            optimizer,
            {"epoch": epoch, "update": update, "history": history, "config_hash": _config_hash(cfg)},
        )
    if cfg.calibration_data:  # the model's own measurement errors, from validation slides of known composition
        from napari_pathalign.train.calibrate import calibrate_trained

        calibrate_trained(cfg, model_dir, log)
    return TrainResult(model_dir, history, unmatched)
