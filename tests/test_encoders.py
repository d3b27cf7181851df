"""Patch encoder registry: every loader round-trips a randomly initialised model through disk."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_pathalign.models.encoders import EncoderError, available_encoders, encoder_spec, load_patch_encoder  # noqa: E402

PATCHES = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)


def _save(module, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return path


def test_registry_names_and_specs():
    names = set(available_encoders())
    assert {
        "embedded",
        "test-tiny",
        "uni",
        "uni2-h",
        "gigapath",
        "virchow2",
        "h-optimus-0",
        "phikon",
        "phikon-v2",
        "conch",
    } <= names
    assert encoder_spec("virchow2").dim == 2560 and encoder_spec("conch").input_size == 448
    with pytest.raises(EncoderError, match="unknown patch encoder 'nope'; available: conch"):
        encoder_spec("nope")


def test_public_models_refuse_to_run_without_weights():
    for name in ("uni", "phikon", "virchow2"):
        with pytest.raises(EncoderError, match="no weights here: pass weights=.*never used"):
            load_patch_encoder(name)


def test_embedded_without_trained_weights_says_so(tmp_path, monkeypatch):
    """An install without the shipped file refuses to run the architecture with random weights."""
    import dataclasses

    from napari_pathalign.models import encoder_zoo, encoders, spec

    missing = tmp_path / "embedded_encoder.safetensors"
    monkeypatch.setattr(encoder_zoo, "EMBEDDED_WEIGHTS", missing)
    monkeypatch.setitem(
        spec.ENCODERS, "embedded", dataclasses.replace(encoders.encoder_spec("embedded"), default_weights=missing)
    )
    with pytest.raises(EncoderError, match="trained weights are not in this install"):
        load_patch_encoder("embedded")


def test_shipped_embedded_weights_are_the_default():
    from napari_pathalign.models import encoder_zoo

    enc = load_patch_encoder("embedded", device="cpu")
    assert enc.weights == encoder_zoo.EMBEDDED_WEIGHTS and enc.weights_hash not in ("none", "")


def test_embedded_round_trip(tmp_path):
    from napari_pathalign.models.embedded_encoder import EmbeddedEncoder

    torch.manual_seed(1)
    module = EmbeddedEncoder().eval()
    enc = load_patch_encoder("embedded", weights=_save(module, tmp_path / "embedded.safetensors"), device="cpu")
    assert enc.input_size == 112  # it reads patches at about 1 µm/px
    small = PATCHES[:, :112, :112]
    feats = enc.encode(small)
    assert feats.shape == (3, 404) and feats.dtype == np.float32
    x = (
        torch.from_numpy(small).permute(0, 3, 1, 2).float() / 255 - torch.tensor(enc.mean).view(1, 3, 1, 1)
    ) / torch.tensor(enc.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        np.testing.assert_allclose(feats, module(x).numpy(), rtol=1e-4, atol=1e-5)


def _stained(h: float, e: float, side: int = 16) -> torch.Tensor:
    """An RGB image in [0, 1] of exactly ``h`` haematoxylin and ``e`` eosin optical density."""
    from napari_pathalign.models.embedded_encoder import RGB_FROM_HED

    od = h * torch.tensor(RGB_FROM_HED[0]) + e * torch.tensor(RGB_FROM_HED[1])
    return ((256 * torch.exp(-od) - 1) / 255).view(1, 3, 1, 1).expand(1, 3, side, side)


def test_stain_statistics_measure_haematoxylin_and_eosin():
    from napari_pathalign.models.embedded_encoder import StainStats

    stats = StainStats()
    purple, pink = stats.raw(_stained(0.8, 0.1)), stats.raw(_stained(0.08, 0.6))
    np.testing.assert_allclose(purple[0, :3].numpy(), [0.8, 0.1, 0.0], atol=1e-4)  # H, E, DAB optical density
    np.testing.assert_allclose(pink[0, :3].numpy(), [0.08, 0.6, 0.0], atol=1e-4)
    h_area = slice(12, 16)  # fraction of pixels above each haematoxylin level: nuclear area
    assert purple[0, h_area].tolist() == [1.0] * 4 and pink[0, h_area].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_stain_statistics_are_standardised_on_the_tiles_they_are_fitted_on():
    from napari_pathalign.models.embedded_encoder import StainStats

    stats = StainStats()
    tiles = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (64, 3, 24, 24), dtype=np.uint8))
    stats.fit(tiles, size=32)
    z = stats(
        torch.nn.functional.interpolate(
            tiles.float() / 255, size=(32, 32), mode="bilinear", antialias=True, align_corners=False
        )
    )
    np.testing.assert_allclose(z.mean(0).numpy(), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(0).numpy(), 1, atol=1e-3)


def test_tiny_is_deterministic_and_resizes():
    a = load_patch_encoder("test-tiny", device="cpu").encode(PATCHES)
    b = load_patch_encoder("test-tiny", device="cpu").encode(PATCHES)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 32)


def _hf_round_trip(tmp_path, name, config_fn, model_cls):
    from napari_pathalign.models import encoder_zoo

    torch.manual_seed(0)
    extra = {"add_pooling_layer": False} if model_cls.__name__ == "ViTModel" else {}
    model = model_cls(getattr(encoder_zoo, config_fn)(), **extra).eval()
    x = (
        torch.from_numpy(PATCHES).permute(0, 3, 1, 2).float() / 255
        - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    ) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        expected = model(pixel_values=x).last_hidden_state[:, 0].numpy()
    folder = tmp_path / name
    model.save_pretrained(folder)  # the layout of a downloaded hub folder
    from_folder = load_patch_encoder(name, weights=folder, device="cpu").encode(PATCHES)
    from_file = load_patch_encoder(name, weights=folder / "model.safetensors", device="cpu").encode(PATCHES)
    np.testing.assert_allclose(from_folder, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(from_file, expected, rtol=1e-4, atol=1e-4)
    return folder


def test_phikon_round_trip_and_refusals(tmp_path):
    from transformers import ViTModel

    folder = _hf_round_trip(tmp_path, "phikon", "_phikon_config", ViTModel)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes((folder / "model.safetensors").read_bytes()[:10_000])
    with pytest.raises(EncoderError, match="could not read weights .*truncated"):
        load_patch_encoder("phikon", weights=truncated)
    with pytest.raises(EncoderError, match="do not fit the 'phikon-v2' architecture"):
        load_patch_encoder("phikon-v2", weights=folder / "model.safetensors")
    with pytest.raises(EncoderError, match="do not fit the 'embedded' architecture"):
        load_patch_encoder("embedded", weights=folder / "model.safetensors")


@pytest.mark.slow
def test_phikon_v2_round_trip(tmp_path):
    from transformers import Dinov2Model

    _hf_round_trip(tmp_path, "phikon-v2", "_phikon_v2_config", Dinov2Model)


def test_timm_models_explain_what_they_need(tmp_path):
    try:
        import timm  # noqa: F401
    except ImportError:
        weights = tmp_path / "pytorch_model.bin"
        torch.save({"w": torch.zeros(1)}, weights)
        with pytest.raises(EncoderError, match="timm model: install timm and torchvision"):
            load_patch_encoder("uni", weights=weights)
    else:
        pytest.skip("timm is installed: see test_timm_round_trip")


@pytest.mark.parametrize("name", ["uni", "h-optimus-0"])
def test_timm_round_trip(tmp_path, name):
    timm = pytest.importorskip("timm")  # needs torchvision, which the CPU torch wheel here lacks
    arch = "vit_large_patch16_224" if name == "uni" else "vit_giant_patch14_reg4_dinov2"
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=0, img_size=224, init_values=1e-5).eval()
    weights = tmp_path / "pytorch_model.bin"
    torch.save(model.state_dict(), weights)
    enc = load_patch_encoder(name, weights=weights, device="cpu")
    x = (
        torch.from_numpy(PATCHES[:1]).permute(0, 3, 1, 2).float() / 255 - torch.tensor(enc.mean).view(1, 3, 1, 1)
    ) / torch.tensor(enc.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        np.testing.assert_allclose(enc.encode(PATCHES[:1]), model(x).numpy(), rtol=1e-3, atol=1e-3)


def test_bad_device():
    with pytest.raises(EncoderError, match="device must be"):
        load_patch_encoder("test-tiny", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(EncoderError, match="no CUDA GPU"):
            load_patch_encoder("test-tiny", device="cuda")
