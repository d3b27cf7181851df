"""Use a trained PathAlign checkpoint on one slide's cached features.

    python examples/use_pathalign.py runs/pathalign-g2/model demo-data/features/slide.<key>.h5 \
        --texts "metastatic carcinoma" "no tumour"

Prints zero-shot similarities and ITM probabilities, the patches the queries attend to most, and a
report draft when the checkpoint has a language model.
"""

import argparse

import numpy as np

from napari_pathalign.io.features import read_features
from napari_pathalign.models.decoder import GenerationConfig
from napari_pathalign.models.pathalign import PathAlign


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a PathAlign checkpoint folder (out/model of `pathalign train`)")
    ap.add_argument("features", help="the slide's feature file (.h5 from `pathalign embed`)")
    ap.add_argument("--texts", nargs="+", default=["metastatic carcinoma", "no tumour"], help="prompts to score")
    ap.add_argument("--prompt", default="Final diagnosis:")
    args = ap.parse_args()

    model = PathAlign.load(args.checkpoint)
    feats = read_features(args.features)
    slide = model.encode_slide(feats)  # SlideEmbedding: (Q, E) normalised
    sims = model.similarity(slide, model.encode_text(args.texts))  # (T,)
    itm = model.itm_score(feats, args.texts)  # (T,)
    for text, s, p in zip(args.texts, sims, itm):
        print(f"{s:+.3f}  itm {p:.2f}  {text}")
    attn = model.attention(feats).mean(axis=(0, 1, 2))  # (N,) mean over layers, heads, queries
    for i in np.argsort(-attn)[:5]:
        print(f"attended patch at level-0 x={feats.xy_level0[i, 0]}, y={feats.xy_level0[i, 1]}: {attn[i]:.4f}")
    if model.lm is not None:
        print("draft:", model.generate(slide, args.prompt, GenerationConfig(max_new_tokens=80, num_beams=3)))


if __name__ == "__main__":
    main()
