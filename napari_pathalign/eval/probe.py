"""Linear probes of a patch encoder on labelled tiles: PCam (AUC) and Kather (balanced accuracy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def encode_tiles(encoder, paths: list[Path], batch_size: int = 128) -> np.ndarray:
    """Features (N, D) of tile images, each fed as the encoder's PatchEncoder.encode would see it."""
    from PIL import Image

    out = []
    for i in range(0, len(paths), batch_size):
        chunk = [np.asarray(Image.open(p).convert("RGB")) for p in paths[i : i + batch_size]]
        side = chunk[0].shape[0]
        chunk = [
            c if c.shape[:2] == (side, side) else np.asarray(Image.fromarray(c).resize((side, side))) for c in chunk
        ]
        out.append(encoder.encode(np.stack(chunk)))
    return np.concatenate(out)


def linear_probe(train_x, train_y, test_x, seed: int = 0):
    """Standardised features -> logistic regression; returns class probabilities on test_x."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5, random_state=seed))
    clf.fit(train_x, train_y)
    return clf.predict_proba(test_x), clf.classes_


def probe_pcam(encoder, pcam: Path, n_train: int = 4000, seed: int = 0) -> dict:
    """Fit on ``n_train`` tiles of pcam/train (balanced), report AUC on all of pcam/valid."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    train, labels = [], []
    for y in (0, 1):
        files = sorted((pcam / "train" / str(y)).glob("*"))
        train += [files[i] for i in rng.choice(len(files), n_train // 2, replace=False)]
        labels += [y] * (n_train // 2)
    valid = [(p, y) for y in (0, 1) for p in sorted((pcam / "valid" / str(y)).glob("*"))]
    proba, classes = linear_probe(
        encode_tiles(encoder, train), np.array(labels), encode_tiles(encoder, [p for p, _ in valid]), seed
    )
    y_true = np.array([y for _, y in valid])
    return {
        "pcam_valid_auc": float(roc_auc_score(y_true, proba[:, list(classes).index(1)])),
        "pcam_train_tiles": n_train,
        "pcam_valid_tiles": len(valid),
    }


def probe_kather(encoder, kather: Path, seed: int = 0) -> dict:
    """Fit on the train source images, report balanced accuracy on held-out source images (8 classes)."""
    from sklearn.metrics import balanced_accuracy_score

    from napari_pathalign.train.tile_sources import held_out, kather_source_image

    rows = [(p, d.name) for d in sorted(kather.iterdir()) if d.is_dir() for p in sorted(d.iterdir())]
    test = [(p, c) for p, c in rows if held_out(kather_source_image(p.name), seed)]
    train = [(p, c) for p, c in rows if not held_out(kather_source_image(p.name), seed)]
    proba, classes = linear_probe(
        encode_tiles(encoder, [p for p, _ in train]),
        np.array([c for _, c in train]),
        encode_tiles(encoder, [p for p, _ in test]),
        seed,
    )
    pred = np.asarray(classes)[proba.argmax(1)]
    return {
        "kather_balanced_accuracy": float(balanced_accuracy_score([c for _, c in test], pred)),
        "kather_train_tiles": len(train),
        "kather_test_tiles": len(test),
    }


def probe_lung(encoder, lung: Path, seed: int = 0) -> dict:
    """LC25000 lung, split by source-tile cluster: balanced accuracy over the three classes, and the
    adenocarcinoma-vs-squamous AUC on the held-out carcinoma tiles (the subtype a tile alone shows)."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from napari_pathalign.train.tile_sources import lung_split

    split = lung_split(lung, seed)
    train = [(p, c) for c, ps in split["train"].items() for p in ps]
    test = [(p, c) for c, ps in split["test"].items() for p in ps]
    proba, classes = linear_probe(
        encode_tiles(encoder, [p for p, _ in train]),
        np.array([c for _, c in train]),
        encode_tiles(encoder, [p for p, _ in test]),
        seed,
    )
    classes = list(classes)
    pred = np.asarray(classes)[proba.argmax(1)]
    carcinoma = np.array([c != "benign" for _, c in test])
    squamous = np.array([c == "squamous_cell_carcinoma" for _, c in test])[carcinoma]
    score = (
        proba[carcinoma, classes.index("squamous_cell_carcinoma")] - proba[carcinoma, classes.index("adenocarcinoma")]
    )
    return {
        "lung_balanced_accuracy": float(balanced_accuracy_score([c for _, c in test], pred)),
        "lung_subtype_auc": float(roc_auc_score(squamous, score)),
        "lung_train_tiles": len(train),
        "lung_test_tiles": len(test),
    }
