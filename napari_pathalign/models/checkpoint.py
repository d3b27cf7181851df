"""PathAlign checkpoints: ``model.safetensors`` + ``config.json`` in one folder, never pickle.

The config names what the weights only make sense with: the patch encoder (and its weights hash),
the text tower and the language model, each with a hash of its files. Loading refuses a checkpoint
whose companions differ instead of producing quietly wrong similarities or drafts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from napari_pathalign.core.atomic import atomic_folder
from napari_pathalign.core.resources import RESOURCES

FORMAT = "napari-pathalign/pathalign"
VERSION = 1
EMBEDDED = {"embedded": "pathalign_embedded", "embedded-r": "pathalign_embedded_r"}  # shipped in resources/


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked; the message says why and what to do."""


def embedded_dir(name: str = "embedded") -> Path:
    return RESOURCES / EMBEDDED[name]


def saved_keys(model) -> list[str]:
    """Parameters that belong in a checkpoint: all but the frozen text tower and the frozen LM."""
    keys = []
    for name, p in model.named_parameters():
        if name.startswith("lm."):
            continue
        if name.startswith("text.") and name[len("text.") :] not in model.text.tuned:
            continue
        keys.append(name)
    return keys


def _hash(path: Path) -> str:
    from napari_pathalign.models.weights import weights_hash

    return weights_hash(Path(path))


def _lm_entry(model, folder: Path) -> str | None:
    if model.lm is None:
        return None
    lm = model.lm.path.resolve()
    try:
        return str(lm.relative_to(folder.resolve()))  # shipped inside the checkpoint: stays relative
    except ValueError:
        return str(lm)


def save_pathalign(
    model,
    path: str | Path,
    extra: dict | None = None,
    half: bool = False,
    bundle_lm: bool = False,
    files: dict[str, str] | None = None,
) -> Path:
    """Write atomically: a temporary folder beside ``path`` is renamed over it when complete.

    ``half``: store float16 (shipped weights; they load back into float32). ``bundle_lm``: copy the
    language model into the checkpoint (as ``lm/``) so the folder is self-contained. ``files``: more
    text files that belong with the weights, {name: text} (the report ontology: ``ontology.json``).
    """
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = dict(model.named_parameters())
    tensors = {
        k: state[k].detach().cpu().to(torch.float16 if half else torch.float32).contiguous() for k in saved_keys(model)
    }
    cfg = model.cfg.to_dict()
    cfg["lm"] = "lm" if bundle_lm and model.lm is not None else _lm_entry(model, path)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": cfg,
        "text_tower_hash": _hash(model.text.path),
        "lm_hash": _hash(model.lm.path) if model.lm is not None else None,
        "extra": extra or {},
    }
    with atomic_folder(path) as tmp:
        if model.lm is not None and cfg["lm"] is not None and not Path(cfg["lm"]).is_absolute():
            shutil.copytree(model.lm.path, tmp / cfg["lm"])  # keep a bundled LM with the weights
        save_file(tensors, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        for name, text in (files or {}).items():
            if Path(name).name != name or name in ("config.json", "model.safetensors"):
                raise ValueError(f"a checkpoint's extra file is a plain file name, not {name!r}")
            (tmp / name).write_text(text, encoding="utf-8")
    return path


def read_config(path: Path) -> dict:
    cfg_file = path / "config.json"
    if not path.is_dir() or not cfg_file.is_file():
        raise CheckpointError(
            (
                f"{path} is not a PathAlign checkpoint folder (needs config.json and model.safetensors); train "
                "one with `pathalign train` or pass 'embedded'"
            )
        )
    try:
        meta = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{cfg_file} is not valid JSON ({exc}); the checkpoint is damaged") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_file}: format {meta.get('format')!r} is not a PathAlign checkpoint ({FORMAT!r})")
    if meta.get("version", 0) > VERSION:
        raise CheckpointError(
            (
                f"{cfg_file}: checkpoint version {meta['version']} is newer than this napari-pathalign reads "
                f"({VERSION}); upgrade the plugin"
            )
        )
    return meta


def load_weights(model, path: Path, allow_missing: tuple[str, ...] = ()) -> list[str]:
    """Copy a checkpoint's tensors into ``model`` after checking every key and shape.

    ``allow_missing``: key prefixes the checkpoint may lack (stage 2 starts from a stage-1 model that
    has no LM projection yet). Returns the keys left as initialised.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = Path(path) / "model.safetensors"
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"could not read {file} ({exc}); the file is missing, truncated or corrupted") from exc
    params = dict(model.named_parameters())
    expected = set(saved_keys(model))
    missing = sorted(k for k in expected - set(state) if not k.startswith(allow_missing or ("\0",)))
    unexpected = sorted(set(state) - expected)
    wrong = sorted(k for k in expected & set(state) if tuple(state[k].shape) != tuple(params[k].shape))
    if missing or unexpected or wrong:
        raise CheckpointError(
            (
                f"{file} does not fit its config: missing {missing[:4]}, unexpected {unexpected[:4]}, wrong "
                f"shape {wrong[:4]}"
            )
        )
    bad = [k for k, v in state.items() if not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{file} holds non-finite values in {bad[:4]}; the training run diverged")
    with torch.no_grad():
        for k in expected & set(state):
            params[k].copy_(state[k])
    return sorted(expected - set(state))


def load_pathalign(path: str | Path, device: str = "auto", lm: str | Path | None = None, *, config_from_dict, build):
    """Build the model its config describes, check its companions, load its weights strictly.

    ``config_from_dict`` and ``build`` are ``PathAlignConfig.from_dict`` and ``PathAlign`` (``PathAlign.load``
    passes them), so that this file format module never imports the model it stores."""
    from napari_pathalign.models.patch_encoder import pick_device

    name = str(path)
    if str(path) in EMBEDDED:
        path = embedded_dir(name)
        if not (path / "config.json").is_file():
            raise CheckpointError(
                (
                    f"the {name} PathAlign weights are not in this installation "
                    f"({path}); run scripts/train_embedded_model.py "
                    "or pass a checkpoint folder"
                )
            )
    path = Path(path)
    meta = read_config(path)
    cfg = config_from_dict(meta["model"])
    if lm is not None:
        if meta.get("lm_hash") and _hash(Path(lm)) != meta["lm_hash"]:
            raise CheckpointError(
                (
                    f"language model {lm} differs from the one this checkpoint "
                    f"was trained with (hash {_hash(Path(lm))} "
                    f"!= {meta['lm_hash']}); its projection would feed the wrong embedding space"
                )
            )
        cfg.lm = str(lm)
    elif cfg.lm is not None and not Path(cfg.lm).is_absolute():
        cfg.lm = str(path / cfg.lm)
    if cfg.lm is not None and not Path(cfg.lm).is_dir():
        raise CheckpointError(
            (
                f"this checkpoint generates through the language model {cfg.lm}, which is not there; pass lm=PATH "
                "to its folder"
            )
        )
    if cfg.lm is not None and meta.get("lm_hash") and _hash(Path(cfg.lm)) != meta["lm_hash"]:
        raise CheckpointError(
            f"language model {cfg.lm} has changed since training (hash {_hash(Path(cfg.lm))} != {meta['lm_hash']})"
        )
    model = build(cfg)
    if meta.get("text_tower_hash") and _hash(model.text.path) != meta["text_tower_hash"]:
        raise CheckpointError(
            (
                f"text tower {cfg.text_tower!r} ({model.text.path}) differs from the one this checkpoint was "
                "trained with; install the same text tower or retrain"
            )
        )
    load_weights(model, path)
    dev, _ = pick_device(device)
    model.to(dev).eval()
    model.checkpoint_meta = meta
    model.source_name = name  # 'embedded', 'embedded-r' or the folder as given (libraries record it)
    model.source_path = path
    return model
