"""npe2 reader: whole-slide images -> a lazy multiscale layer.

Expected problems (not a slide, damaged file) are shown as a notification and the file is
declined, so napari never shows a traceback dialog for them.
"""

from __future__ import annotations

from pathlib import Path

from napari.utils.notifications import show_info, show_warning

from napari_pathalign._napari.layers import slide_layer_data
from napari_pathalign.io import SlideError, open_slide
from napari_pathalign.io.errors import NotBrightfieldError

_GENERIC_TIFF = (".tif", ".tiff")


def get_reader(path):
    """Return a reader function for a slide file, a DICOM folder or a ``dicomweb+http(s)://`` series, or None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None  # a stack of slides is not one image
        path = path[0]
    if str(path).startswith("dicomweb+"):  # a series on a DICOMweb server: open_slide reads the address
        path = str(path)
    else:
        path = Path(path)
        if path.is_dir() and not any(path.glob("*.dcm")):
            return None
    try:
        slide = open_slide(path)
    except SlideError as exc:
        if isinstance(exc, NotBrightfieldError) and isinstance(path, Path) and path.suffix.lower() in _GENERIC_TIFF:
            return _napari_tiff_reader(path, exc)
        show_warning(f"PathAlign could not open this slide: {exc}")
        return None

    def read_slide(_path):
        show_scale_bar(slide)
        return slide_layer_data(slide)

    return read_slide


def show_scale_bar(slide) -> None:
    """Sizes are read off the slide: the scale bar is turned on when a calibrated slide opens. It reads in µm
    because the layer's units are µm (napari 0.6+ takes the unit from ``Layer.units``; ``scale_bar.unit`` is
    deprecated there and has no effect)."""
    import napari

    viewer = napari.current_viewer()
    if slide.mpp and viewer is not None:
        viewer.scale_bar.visible = True


def _napari_tiff_reader(path: Path, why: SlideError):
    """A scientific TIFF that is not a brightfield slide: hand it to napari's own TIFF reader (through npe2's
    public ``read``, by plugin name: napari's internals may move), and say so."""
    import npe2

    def read_with_napari(_path):
        try:
            layers = npe2.read([str(path)], stack=False, plugin_name="napari")
        except ValueError as exc:  # npe2: no reader of that plugin could read it; napari shows this message
            raise ValueError(
                f"PathAlign could not open {path.name} ({why}), and napari's TIFF reader could not either: {exc}"
            ) from None
        show_info(f"{path.name} is not a brightfield slide ({why}); opened with napari's built-in TIFF reader instead")
        return layers

    return read_with_napari
