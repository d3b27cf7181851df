"""Bad input raises SlideError naming the file and the problem; nothing crashes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from napari_pathalign.io import SlideError, open_slide
from napari_pathalign.io.errors import NotBrightfieldError
from tests.synthetic import write_pyramid


def test_missing_path(tmp_path):
    with pytest.raises(SlideError, match="no such file"):
        open_slide(tmp_path / "nope.svs")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.svs"
    path.touch()
    with pytest.raises(SlideError, match=r"empty\.svs: the file is empty \(0 bytes\)"):
        open_slide(path)


@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.6, 0.9, 0.999])
def test_truncated_svs(wsi_dir, tmp_path, fraction):
    """Cut anywhere: in the header, the tile data, or after the slide's own directory."""
    data = (wsi_dir / "CMU-1-Small-Region.svs").read_bytes()
    path = tmp_path / "truncated.svs"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(SlideError, match=r"truncated\.svs: .*truncated"):
        open_slide(path)


def test_png_renamed_svs(tmp_path):
    from PIL import Image

    path = tmp_path / "photo.svs"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, format="PNG")
    with pytest.raises(SlideError, match=r"photo\.svs: not a whole-slide image \(it is a PNG image"):
        open_slide(path)


def test_unknown_bytes(tmp_path):
    path = tmp_path / "noise.ndpi"
    path.write_bytes(b"\x01\x02\x03\x04" * 100)
    with pytest.raises(SlideError, match="match no slide format.*supported: Aperio SVS"):
        open_slide(path)


def test_corrupt_tile_fails_when_read_with_its_position(tmp_path):
    path = write_pyramid(tmp_path / "corrupt.tif", shape=(1024, 1024), levels=1)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[5], page.databytecounts[5]  # row 1, column 1 of a 4x4 grid
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x00" * count)  # wipes the JPEG markers: undecodable
    with open_slide(path) as slide:  # opening reads no tile data
        ok = slide.read_region((0, 0), (256, 256))  # tile (0, 0) is fine
        assert ok.shape == (256, 256, 3) and ok.mean() < 255
        with pytest.raises(
            SlideError,
            match=r"corrupt\.tif: the stored tile at row 1, column 1 of level 0 \(level pixels x=256, y=256\)",
        ):
            slide.read_region((300, 300), (10, 10))
        with pytest.raises(Exception, match="corrupt.tif.*could not be decoded"):
            slide.levels[0][256:300, 256:300].compute()  # the display path says the same


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("not a slide")
    with pytest.raises(SlideError, match="no DICOM whole-slide image found in this folder"):
        open_slide(tmp_path)


def test_unsupported_compression(tmp_path):
    path = write_pyramid(tmp_path / "odd.tif", shape=(256, 256), levels=1, compression=None)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["Compression"].overwrite(60000)  # no codec has this number
    with pytest.raises(SlideError, match=r"odd\.tif: level 0 uses compression 60000.*supported are JPEG"):
        open_slide(path)


def test_sixteen_bit_is_not_brightfield(tmp_path):
    path = tmp_path / "fluo.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint16), tile=(32, 32))
    with pytest.raises(NotBrightfieldError, match="uint16 pixels; only 8-bit brightfield"):
        open_slide(path)


def test_path_with_spaces_and_non_ascii(wsi_dir, tmp_path):
    folder = tmp_path / "Pathologie – études" / "cas n° 12 ü"
    folder.mkdir(parents=True)
    path = folder / "lame 1 é 生検.svs"
    shutil.copy(wsi_dir / "CMU-1-Small-Region.svs", path)
    with open_slide(path) as slide:
        assert slide.path == path
        assert slide.read_region((1000, 1000), (64, 64)).std() > 0
        assert np.asarray(slide.levels[0][:240, :240]).shape == (240, 240, 3)
    dicom = folder / "dicom séries"
    shutil.copytree(wsi_dir / "CMU-1-Small-Region-dicom", dicom)
    with open_slide(dicom) as slide:
        assert slide.read_region((0, 0), (32, 32)).shape == (32, 32, 3)
