"""The registered patch encoders. One builder per name; architectures from transformers or timm.

The public pathology models load from the user's local copy only (they are gated on the hubs).
"""

from __future__ import annotations

from pathlib import Path

from napari_pathalign.core.resources import RESOURCES
from napari_pathalign.models.spec import IMAGENET, EncoderError, EncoderSpec, register
from napari_pathalign.models.weights import load_into, load_state_dict

EMBEDDED_WEIGHTS = RESOURCES / "embedded_encoder.safetensors"
H_OPTIMUS = ((0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517))
OPENAI_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


# -- ours ---------------------------------------------------------------------------------
def _tiny(weights: Path | None):
    """A 3-layer CNN with seeded random weights: for fast tests of the pipeline only."""
    import torch
    from torch import nn

    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 32),
        )  # fmt: skip
    if weights is not None:
        load_into(module, load_state_dict(weights, "test-tiny"), weights, "test-tiny")
    return module


def _embedded(weights: Path | None):
    from napari_pathalign.models.embedded_encoder import EmbeddedEncoder

    weights = weights or EMBEDDED_WEIGHTS
    if not weights.exists():
        raise EncoderError(
            f"the embedded encoder's trained weights are not in this install ({weights} is missing): "
            "they are produced by the demo-model training (scripts in the repository); until then "
            "pass another encoder and its local weights. Random weights are never used."
        )
    module = EmbeddedEncoder()
    load_into(module, load_state_dict(weights, "embedded"), weights, "embedded")
    return module


# -- transformers ---------------------------------------------------------------------------
class _ClsToken:
    """Wraps a transformers vision model: pixel_values -> the class token of the last layer."""

    @staticmethod
    def wrap(model):
        from torch import nn

        class Cls(nn.Module):
            def __init__(self, m):
                super().__init__()
                self.model = m

            def forward(self, x):
                return self.model(pixel_values=x).last_hidden_state[:, 0]  # (B, H)

        return Cls(model)


def _hf(name: str, config, model_cls):
    """transformers loads the weights (it knows every key layout its models were saved in); we
    refuse the result when any weight was missing, which transformers would initialise randomly."""

    def build(weights: Path):
        extra = {"add_pooling_layer": False} if model_cls.__name__ == "ViTModel" else {}
        try:
            if weights.is_dir() and (weights / "config.json").exists():
                model, info = model_cls.from_pretrained(
                    str(weights), local_files_only=True, output_loading_info=True, **extra
                )
            else:
                state = load_state_dict(weights, name)
                model, info = model_cls.from_pretrained(
                    None, config=config, state_dict=state, output_loading_info=True, **extra
                )
        except EncoderError:
            raise
        except Exception as exc:
            if "mismatched" in str(exc):
                raise EncoderError(
                    (
                        f"weights {weights} do not fit the {name!r} architecture (tensor shapes differ); check that "
                        f"they are {name}'s"
                    )
                ) from exc
            raise EncoderError(f"could not load {name!r} from {weights} ({type(exc).__name__}: {exc})") from exc
        missing = [k for k in info.get("missing_keys", []) if "pooler" not in k]
        if missing or info.get("mismatched_keys") or model.config.hidden_size != config.hidden_size:
            bad = missing or info.get("mismatched_keys") or [f"width {model.config.hidden_size}"]
            raise EncoderError(
                (
                    f"weights {weights} do not fit the {name!r} architecture ({len(bad)} weights missing or of "
                    f"the wrong shape, e.g. {bad[:3]}); check that they are {name}'s"
                )
            )
        return _ClsToken.wrap(model.eval())

    return build


def _phikon_config():
    from transformers import ViTConfig

    return ViTConfig(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        image_size=224,
        patch_size=16,
        qkv_bias=True,
    )


def _phikon_v2_config():
    from transformers import Dinov2Config

    return Dinov2Config(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        mlp_ratio=4,
        image_size=224,
        patch_size=16,
        layerscale_value=1e-5,
    )


def _phikon(weights):
    from transformers import ViTModel

    return _hf("phikon", _phikon_config(), ViTModel)(weights)


def _phikon_v2(weights):
    from transformers import Dinov2Model

    return _hf("phikon-v2", _phikon_v2_config(), Dinov2Model)(weights)


# -- timm -------------------------------------------------------------------------------------
def _timm(name: str, arch: str, output: str = "pooled", **kwargs):
    def build(weights: Path):
        try:
            import timm
            import torch
        except ImportError as exc:
            raise EncoderError(
                (
                    f"{name!r} is a timm model: install timm and torchvision (pip install timm torchvision) to "
                    f"use it ({exc})"
                )
            ) from exc
        extra = {}
        if kwargs.pop("swiglu", False):
            extra = {"mlp_layer": timm.layers.SwiGLUPacked, "act_layer": torch.nn.SiLU}
        model = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs, **extra)
        load_into(model, load_state_dict(weights, name), weights, name, strip=("module.", "model."))
        if output == "cls+mean":  # Virchow: class token and the mean of the patch tokens
            from torch import nn

            class ClsMean(nn.Module):
                def __init__(self, m, skip):
                    super().__init__()
                    self.model, self.skip = m, skip

                def forward(self, x):
                    tokens = self.model(x)  # (B, 1 + registers + patches, H)
                    return torch.cat([tokens[:, 0], tokens[:, self.skip :].mean(1)], dim=-1)

            return ClsMean(model, 1 + kwargs.get("reg_tokens", 0))
        return model

    return build


def _conch(weights: Path):
    try:
        from conch.open_clip_custom import create_model_from_pretrained
    except ImportError as exc:
        raise EncoderError(
            "CONCH needs its own package (github.com/mahmoodlab/CONCH, installed locally) besides its weights"
        ) from exc
    from torch import nn

    model, _ = create_model_from_pretrained("conch_ViT-B-16", checkpoint_path=str(weights))

    class ImageTower(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.model = m

        def forward(self, x):
            return self.model.encode_image(x, proj_contrast=False, normalize=False)

    return ImageTower(model)


register(
    EncoderSpec("test-tiny", 32, 32, *IMAGENET, 0.5, _tiny, needs_weights=False, description="random, for tests only")
)
register(
    EncoderSpec(
        "embedded",
        404,
        112,
        *IMAGENET,
        0.5,
        _embedded,
        needs_weights=False,
        description=(
            "ours, shipped in resources/ (reads a 224-px 0.5 µm/px patch at 112 px: about 1 µm/px, the "
            "scale it was trained at; 384 CNN + 20 stain features)"
        ),
        default_weights=EMBEDDED_WEIGHTS,
    )
)
register(
    EncoderSpec(
        "phikon",
        768,
        224,
        *IMAGENET,
        0.5,
        _phikon,
        description="Owkin Phikon ViT-B/16: a local owkin/phikon folder or weight file",
    )
)
register(
    EncoderSpec(
        "phikon-v2",
        1024,
        224,
        *IMAGENET,
        0.5,
        _phikon_v2,
        description="Owkin Phikon-v2 ViT-L/16: a local owkin/phikon-v2 folder or weight file",
    )
)
register(
    EncoderSpec(
        "uni",
        1024,
        224,
        *IMAGENET,
        0.5,
        _timm("uni", "vit_large_patch16_224", img_size=224, patch_size=16, init_values=1e-5, dynamic_img_size=True),
        description="MahmoodLab UNI: pytorch_model.bin",
    )
)
register(
    EncoderSpec(
        "uni2-h",
        1536,
        224,
        *IMAGENET,
        0.5,
        _timm(
            "uni2-h",
            "vit_giant_patch14_224",
            img_size=224,
            patch_size=14,
            depth=24,
            num_heads=24,
            init_values=1e-5,
            embed_dim=1536,
            mlp_ratio=2.66667 * 2,
            no_embed_class=True,
            reg_tokens=8,
            dynamic_img_size=True,
            swiglu=True,
        ),
        description="MahmoodLab UNI2-h: pytorch_model.bin",
    )
)
register(
    EncoderSpec(
        "gigapath",
        1536,
        224,
        *IMAGENET,
        0.5,
        _timm(
            "gigapath",
            "vit_giant_patch14_dinov2",
            img_size=224,
            in_chans=3,
            patch_size=14,
            embed_dim=1536,
            depth=40,
            num_heads=24,
            init_values=1e-5,
            mlp_ratio=5.33334,
        ),
        description="Prov-GigaPath tile encoder: pytorch_model.bin",
    )
)
register(
    EncoderSpec(
        "virchow2",
        2560,
        224,
        *IMAGENET,
        0.5,
        _timm(
            "virchow2",
            "vit_huge_patch14_224",
            output="cls+mean",
            img_size=224,
            init_values=1e-5,
            mlp_ratio=5.3375,
            global_pool="",
            dynamic_img_size=True,
            reg_tokens=4,
            swiglu=True,
        ),
        description="Paige Virchow2: pytorch_model.bin",
    )
)
register(
    EncoderSpec(
        "h-optimus-0",
        1536,
        224,
        *H_OPTIMUS,
        0.5,
        _timm("h-optimus-0", "vit_giant_patch14_reg4_dinov2", img_size=224, init_values=1e-5, dynamic_img_size=False),
        description="Bioptimus H-optimus-0: pytorch_model.bin",
    )
)
register(
    EncoderSpec(
        "conch", 512, 448, *OPENAI_CLIP, 0.5, _conch, description="MahmoodLab CONCH image tower: pytorch_model.bin"
    )
)
