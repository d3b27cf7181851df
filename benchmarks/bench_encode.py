"""Patch encoder throughput (patches/s) per architecture, on CPU and on CUDA when present.

Architectures are built with random weights: this measures speed only, never features. The
end-to-end line adds decoding: extract_patches + the embedded architecture on the big pyramid.

    python benchmarks/bench_encode.py [--batch 32] [--batches 3] [--device auto]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BIG = ROOT / "benchmarks" / "data" / "big-100000x80000.tif"


def architectures():
    from transformers import Dinov2Model, ViTConfig, ViTModel

    from napari_pathalign.models.embedded_encoder import EmbeddedEncoder
    from napari_pathalign.models.encoder_zoo import _ClsToken, _phikon_config, _phikon_v2_config

    yield "embedded (ours, CNN)", EmbeddedEncoder, 112  # it reads a 224-px patch resized to 112
    yield (
        "ViT-S/16",
        lambda: _ClsToken.wrap(
            ViTModel(
                ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
                add_pooling_layer=False,
            )
        ),
        224,
    )
    yield "phikon (ViT-B/16)", lambda: _ClsToken.wrap(ViTModel(_phikon_config(), add_pooling_layer=False)), 224
    yield "phikon-v2 (ViT-L/16)", lambda: _ClsToken.wrap(Dinov2Model(_phikon_v2_config())), 224


def rate(module, device, dtype, batch: int, batches: int, size: int = 224) -> float:
    x = torch.randn(batch, 3, size, size, device=device)
    module = module.eval().to(device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
        module(x)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(batches):
            module(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return batch * batches / (time.perf_counter() - t0)


def main() -> None:
    from napari_pathalign.models.patch_encoder import pick_device

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device, dtype = pick_device(args.device)
    print(
        (
            f"device {device} ({str(dtype).replace('torch.', '')}), torch "
            f"{torch.__version__}, {torch.get_num_threads()} "
            f"threads, batch {args.batch}"
        )
    )
    for name, build, size in architectures():
        print(f"{name:24} {rate(build(), device, dtype, args.batch, args.batches, size):9.1f} patches/s at {size} px")
    if BIG.exists():
        from napari_pathalign.io import open_slide
        from napari_pathalign.models.embedded_encoder import EmbeddedEncoder
        from napari_pathalign.models.encoders import encoder_spec
        from napari_pathalign.models.patch_encoder import PatchEncoder
        from napari_pathalign.tiling.extract import extract_patches
        from napari_pathalign.tiling.grid import patch_grid
        from napari_pathalign.tiling.tissue import tissue_mask

        slide = open_slide(BIG)
        grid = patch_grid(slide, tissue_mask(slide), max_patches=2048)
        encoder = PatchEncoder(
            encoder_spec("embedded"), EmbeddedEncoder(), None, str(device)
        )  # random weights: speed only
        t0 = time.perf_counter()
        n = 0
        for patches, _ in extract_patches(slide, grid, batch_size=64):
            encoder.encode(patches)
            n += len(patches)
        print(f"{'decode + embedded':24} {n / (time.perf_counter() - t0):9.1f} patches/s ({n} patches of {BIG.name})")


if __name__ == "__main__":
    main()
