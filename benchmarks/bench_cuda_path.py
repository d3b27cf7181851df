"""The CUDA path end to end against the CPU, on the demo lymph node, with the embedded models.

Each device runs the project's own steps: ``SlideAnalysis.iter_prepare`` (tissue, grid, extraction,
the patch encoder with bf16 autocast on CUDA, both PathAlign models, attention, neighbourhoods),
zero-shot, text scores and ``iter_draft`` (generation, support, evidence); on CUDA the slide
embedding and generation are repeated under bf16 autocast. Printed last: how far CUDA lies from
the float32 CPU run (features, embeddings, attention, zero-shot, drafted text, support).

    python benchmarks/bench_cuda_path.py [--slide SLIDE]     # needs a CUDA device; ~1 min
"""

from __future__ import annotations

import argparse
import tempfile
import time
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch

TEXTS = ["metastatic carcinoma", "reactive lymphoid tissue", "no evidence of metastatic carcinoma"]
DEMO = Path(str(files("napari_pathalign.resources") / "demo-lymph-node.tif"))


def run(device: str, slide) -> dict:
    """Everything one device says about the slide, and how long the analysis took."""
    from napari_pathalign.core.generators import run_to_end
    from napari_pathalign.models.decoder import GenerationConfig
    from napari_pathalign.models.encoders import load_patch_encoder
    from napari_pathalign.models.pathalign import PathAlign
    from napari_pathalign.reporting.analysis import SlideAnalysis
    from napari_pathalign.reporting.drafting import iter_draft

    g, r = PathAlign.load("embedded", device=device), PathAlign.load("embedded-r", device=device)
    enc = load_patch_encoder("embedded", None, device)
    a = SlideAnalysis(slide, encoder=enc, model=g, retrieval_model=r, cache_dir=tempfile.mkdtemp(), device=device)
    t0 = time.perf_counter()
    for _ in a.iter_prepare():
        pass
    out = {"prepare_s": time.perf_counter() - t0, "encoder": repr(enc)}
    out["features"] = a.features.features.copy()  # (N, D)
    out["retrieval"] = a.embedding("retrieval").embedding.copy()  # (Q, E)
    out["generation"] = a.embedding("generation").embedding.copy()  # (Q, E)
    out["attention"] = a.cross_attention.copy()  # (L, H, Q, N)
    z = a.zero_shot()
    out["zero_shot"], out["best"] = z.probabilities, z.best
    out["text_scores"] = {t: a.text_score(t) for t in TEXTS}
    cfg = GenerationConfig(max_new_tokens=96)
    draft = run_to_end(iter_draft(a, cfg))
    out["draft"], out["support"] = draft.text, [s.support for s in draft.sentences]
    if device.startswith("cuda"):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            e16 = g.encode_slide(a.features)
            out["generation_bf16"] = e16.embedding
            out["draft_bf16"] = g.generate(e16, "Final diagnosis:", cfg)
    return out


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True).clip(1e-12)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True).clip(1e-12)
    return float((a * b).sum(-1).min())


def compare(gpu: dict, cpu: dict) -> list[tuple[str, object]]:
    rel = float(np.linalg.norm(gpu["features"] - cpu["features"]) / np.linalg.norm(cpu["features"]))
    rows = [
        ("patch features: relative error", f"{rel:.4f}"),
        ("patch features: per-patch cosine, min", f"{cosine_min(gpu['features'], cpu['features']):.5f}"),
        ("retrieval embedding: cosine, min over queries", f"{cosine_min(gpu['retrieval'], cpu['retrieval']):.5f}"),
        ("generation embedding: cosine, min over queries", f"{cosine_min(gpu['generation'], cpu['generation']):.5f}"),
        ("cross-attention: max abs difference", f"{np.abs(gpu['attention'] - cpu['attention']).max():.4f}"),
        (
            "zero-shot: max probability difference",
            f"{max(abs(gpu['zero_shot'][k] - v) for k, v in cpu['zero_shot'].items()):.2e}",
        ),
        ("zero-shot: same best class", gpu["best"] == cpu["best"]),
        (
            "text scores: max abs difference",
            f"{max(abs(gpu['text_scores'][k] - v) for k, v in cpu['text_scores'].items()):.4f}",
        ),
        ("drafted text identical", gpu["draft"] == cpu["draft"]),
    ]
    if len(gpu["support"]) == len(cpu["support"]):
        rows.append(
            ("support: max difference", f"{max(abs(x - y) for x, y in zip(gpu['support'], cpu['support'])):.4f}")
        )
    if "generation_bf16" in gpu:
        rows.append(
            (
                "bf16 autocast: generation embedding cosine, min",
                f"{cosine_min(gpu['generation_bf16'], cpu['generation']):.5f}",
            )
        )
        rows.append(("bf16 autocast: drafted text identical to CPU", gpu["draft_bf16"] == cpu["draft"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slide", type=Path, default=DEMO)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: this benchmark compares the CUDA path with the CPU")
    from napari_pathalign.io import open_slide

    slide = open_slide(args.slide)
    gpu, cpu = run("cuda", slide), run("cpu", slide)
    print(
        f"{args.slide.name}: {len(cpu['features'])} patches; {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    )
    print(f"prepare: cuda {gpu['prepare_s']:.2f} s ({gpu['encoder']}), cpu {cpu['prepare_s']:.2f} s")
    print(f"draft (cuda): {gpu['draft']!r}")
    print("\n| check | CUDA vs CPU |\n|---|---|")
    for name, value in compare(gpu, cpu):
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
