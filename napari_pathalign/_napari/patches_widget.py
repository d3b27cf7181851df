"""Dock widget "Patches": choose encoder and grid, preview tissue and patches, embed with progress."""

from __future__ import annotations

from pathlib import Path

import napari
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, ProgressBar, PushButton, SpinBox
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info

from napari_pathalign._napari.patch_layers import grid_layer_data, tissue_layer_data
from napari_pathalign._napari.slide_info import slide_of
from napari_pathalign.core.grid_config import DEFAULT_GRID
from napari_pathalign.engine.features import default_cache_dir


@thread_worker
def _preview(slide, grid_cfg):
    from napari_pathalign.tiling.grid import patch_grid
    from napari_pathalign.tiling.tissue import tissue_mask

    mask = tissue_mask(slide)
    return mask, patch_grid(
        slide, mask, grid_cfg.patch_size, grid_cfg.target_mpp, grid_cfg.max_patches, grid_cfg.min_tissue, grid_cfg.seed
    )


@thread_worker(progress=False)
def _embed(slide, encoder_name, weights, grid_cfg, cache_dir):
    from napari_pathalign.engine.features import iter_embed_slide
    from napari_pathalign.models.encoders import load_patch_encoder

    encoder = load_patch_encoder(encoder_name, weights)
    yield ("encoder", repr(encoder))
    feats = yield from iter_embed_slide(slide, encoder, grid_cfg, cache_dir)
    return feats


class PatchesWidget(Container):
    def __init__(self, napari_viewer: napari.Viewer):
        from napari_pathalign.models.encoders import available_encoders

        super().__init__(labels=True)
        self.viewer = napari_viewer
        names = [n for n in available_encoders() if n != "test-tiny"] + ["test-tiny"]
        self.encoder = ComboBox(label="encoder", choices=names, value="embedded")
        self.weights = FileEdit(
            label="weights", mode="r", value="", tooltip="local weights file or folder (empty: the encoder's default)"
        )
        self.target_mpp = FloatSpinBox(label="µm / pixel", value=DEFAULT_GRID.target_mpp, min=0.1, max=16.0, step=0.05)
        self.patch_size = SpinBox(label="patch size", value=DEFAULT_GRID.patch_size, min=16, max=2048)
        self.max_patches = SpinBox(label="max patches", value=DEFAULT_GRID.max_patches, min=1, max=1_000_000)
        self.min_tissue = FloatSpinBox(label="min tissue", value=DEFAULT_GRID.min_tissue, min=0.0, max=1.0, step=0.05)
        self.cache_dir = FileEdit(label="cache folder", mode="d", value=str(default_cache_dir()))
        self.preview_button = PushButton(text="Show tissue && patches")
        self.embed_button = PushButton(text="Embed")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", value=0, max=1)
        self.status = Label(value="Select a slide layer.")
        self.extend(
            [
                self.encoder,
                self.weights,
                self.target_mpp,
                self.patch_size,
                self.max_patches,
                self.min_tissue,
                self.cache_dir,
                self.preview_button,
                self.embed_button,
                self.cancel_button,
                self.progress,
                self.status,
            ]
        )
        self.preview_button.changed.connect(self.preview)
        self.embed_button.changed.connect(self.embed)
        self.cancel_button.changed.connect(self.cancel)
        self.features = None  # the last SlideFeatures
        self.worker = None

    # -- inputs -----------------------------------------------------------------------------
    def _layer_and_slide(self):
        layer = self.viewer.layers.selection.active
        slide = slide_of(layer)
        if slide is None:
            self.status.value = "Select a slide layer opened by PathAlign first."
        return layer, slide

    def _grid_config(self):
        from napari_pathalign.core.grid_config import GridConfig

        return GridConfig(self.patch_size.value, self.target_mpp.value, self.max_patches.value, self.min_tissue.value)

    # -- actions ----------------------------------------------------------------------------
    def preview(self, *_):
        layer, slide = self._layer_and_slide()
        if slide is None:
            return None
        self.status.value = "Finding tissue ..."
        worker = _preview(slide, self._grid_config(), _ignore_errors=True)  # errors go to _failed
        worker.returned.connect(lambda result: self._show_preview(layer, slide, *result))
        worker.errored.connect(self._failed)
        worker.start()
        self.worker = worker
        return worker

    def _show_preview(self, layer, slide, mask, grid):
        for data, kwargs, kind in (
            tissue_layer_data(slide, mask, layer.name),
            grid_layer_data(slide, grid, layer.name),
        ):
            name = kwargs["name"]
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            getattr(self.viewer, f"add_{kind}")(data, **kwargs)
        self.viewer.layers.selection.active = layer
        self.status.value = f"{len(grid)} patches, tissue {mask.tissue_fraction:.0%} of the slide" + (
            f"; {grid.note}" if grid.note else ""
        )

    def embed(self, *_):
        layer, slide = self._layer_and_slide()
        if slide is None:
            return None
        weights = str(self.weights.value) if str(self.weights.value) not in ("", ".") else None
        worker = _embed(
            slide, self.encoder.value, weights, self._grid_config(), Path(self.cache_dir.value), _ignore_errors=True
        )
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_done)
        worker.errored.connect(self._failed)
        worker.aborted.connect(self._on_cancelled)
        worker.finished.connect(lambda: self._busy(False))
        self._busy(True)
        self.status.value = "Loading the encoder ..."
        worker.start()
        self.worker = worker
        return worker

    def cancel(self, *_):
        if self.worker is not None:
            self.worker.quit()  # stops between batches

    # -- worker callbacks -------------------------------------------------------------------
    def _busy(self, busy: bool):
        self.embed_button.enabled = self.preview_button.enabled = not busy
        self.cancel_button.enabled = busy

    def _on_progress(self, item):
        if item[0] == "encoder":
            self.status.value = f"Embedding with {item[1]}"
            return
        done, total = item
        self.progress.max = max(total, 1)
        self.progress.value = done

    def _on_done(self, feats):
        self.features = feats
        self.progress.value = self.progress.max
        self.status.value = f"{len(feats.features)} patches embedded ({feats.features.shape[1]} features each); cached"
        show_info(self.status.value)

    def _on_cancelled(self):
        self.status.value = "Cancelled: nothing was cached."

    def _failed(self, exc):
        self.status.value = f"Failed: {exc}"
        show_error(f"Patches: {exc}")
