"""SVS and TIFF slides converted to DICOM WSI with Orthanc's own converter, ``OrthancWSIDicomizer``.

``make system-packages`` installs it (Debian: ``orthanc-wsi``; ``libopenslide0`` for sources that are not
a plain tiled TIFF, such as a JPEG 2000 SVS). ``dicomize`` writes the instances to a folder (never to a
running Orthanc: the tests upload them to theirs with ``Orthanc.upload``) and keeps the source's own
JPEG tiles: without ``--reencode``, ``--compression`` or ``--tile-width`` the converter copies each tile's
bytes ("transcoding"); only a source it cannot copy from (JPEG 2000, read through OpenSlide) and the
levels it builds with ``levels=`` are encoded again (JPEG, quality 90).
"""

from __future__ import annotations

import ctypes.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

BINARY = "OrthancWSIDicomizer"
PACKAGE = "orthanc-wsi"
OPENSLIDE_LIBS = ("/usr/lib/x86_64-linux-gnu/libopenslide.so.0", "/usr/lib/aarch64-linux-gnu/libopenslide.so.0")
COPIED = "Transcoding the source pyramid (not re-encoding)"  # what the converter logs when it copies the tiles
REENCODED = "Re-encoding the source pyramid"


def find_dicomizer() -> str:
    """The converter; skips where it cannot be installed, fails where it can (as ``find_orthanc`` does)."""
    binary = shutil.which(BINARY) or next((p for p in (f"/usr/bin/{BINARY}",) if Path(p).exists()), None)
    if binary:
        return binary
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"{BINARY} not installed and this machine cannot install it (needs root and apt-get: {PACKAGE})")
    pytest.fail(f"{BINARY} not installed; run `make system-packages` (apt-get install {PACKAGE})")


def _openslide_library() -> str | None:
    """The system OpenSlide the converter falls back on for what is not a plain tiled TIFF."""
    found = next((p for p in OPENSLIDE_LIBS if Path(p).exists()), None)
    return found or ctypes.util.find_library("openslide")


def source_geometry(source: Path) -> tuple[tuple[int, int], tuple[float, float] | None]:
    """Level 0's (width, height) and (µm/px across, down) as OpenSlide reads them (None: not recorded)."""
    import openslide

    with openslide.OpenSlide(str(source)) as slide:
        props = slide.properties
        mpp = (props.get(openslide.PROPERTY_NAME_MPP_X), props.get(openslide.PROPERTY_NAME_MPP_Y))
        return slide.dimensions, (float(mpp[0]), float(mpp[1])) if all(mpp) else None


def dicomize(
    source: Path,
    out_dir: Path,
    *,
    mpp: float | None = None,
    levels: int | None = None,
    patient_id: str = "PATHALIGN-DICOMIZE",
) -> list[Path]:
    """Convert ``source`` (SVS, tiled TIFF) into DICOM WSI instances in ``out_dir``; returns the files.

    The pixel spacing comes from the source's µm/px (``mpp`` overrides it; a source without one is refused
    rather than given the converter's made-up 15 mm specimen). ``levels`` builds a pyramid of that many
    levels below a source that has fewer (``--pyramid 1``; the new levels are encoded again). The converter's
    log is kept beside the folder, in ``<out_dir>.log``: it says whether the tiles were copied (``COPIED``)
    or encoded again (``REENCODED``).
    """
    binary = find_dicomizer()
    source, out_dir = Path(source), Path(out_dir)
    (width, height), recorded = source_geometry(source)
    mpp_xy = (mpp, mpp) if mpp is not None else recorded
    if mpp_xy is None:
        raise ValueError(f"{source.name} records no µm/px; pass mpp= (the converter would write a made-up spacing)")
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} is not empty: the converter would mix two slides' instances")
    dataset = out_dir.with_suffix(".dataset.json")
    # without a dataset the converter writes no Image Type, and readers (wsidicom) find no VOLUME instance
    dataset.write_text(
        json.dumps(
            {
                "PatientID": patient_id,
                "PatientName": "DICOMIZE^TEST",
                "ImageType": "DERIVED\\PRIMARY\\VOLUME\\NONE",
                "ContainerIdentifier": source.stem,
                "IssuerOfTheContainerIdentifierSequence": [],
                "ContainerTypeCodeSequence": [],
                "SpecimenDescriptionSequence": [
                    {
                        "SpecimenIdentifier": source.stem,
                        "SpecimenUID": _uid(),
                        "IssuerOfTheSpecimenIdentifierSequence": [],
                        "SpecimenPreparationSequence": [],
                    }
                ],
                "FocusMethod": "AUTO",
                "ExtendedDepthOfField": "NO",
                "SpecimenLabelInImage": "NO",
                "BurnedInAnnotation": "NO",
            }
        )
    )
    # Orthanc WSI places the image turned on the slide (Image Orientation (Slide) 0\-1\0\-1\0\0): its
    # "imaged width" runs along the image's rows, so Pixel Spacing is (width / rows, height / columns)
    imaged_width_mm, imaged_height_mm = height * mpp_xy[1] / 1000.0, width * mpp_xy[0] / 1000.0
    command = [binary, "--folder", str(out_dir), "--dataset", str(dataset), "--threads", "1"]
    command += ["--imaged-width", repr(imaged_width_mm), "--imaged-height", repr(imaged_height_mm)]
    command += ["--reencode", "0"]  # copy the source's tiles where it can; no --compression or --tile-width
    if levels is not None:
        command += ["--pyramid", "1", "--levels", str(levels)]
    library = _openslide_library()
    if library:
        command += ["--openslide", library]  # used only when the source is not a plain tiled TIFF
    command.append(str(source))
    done = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=300)
    log = out_dir.with_suffix(".log")
    log.write_text(done.stdout + done.stderr)
    files = sorted(out_dir.glob("*.dcm"))
    if done.returncode != 0 or not files:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-8:])
        raise RuntimeError(f"{BINARY} failed on {source.name} (exit {done.returncode}; log {log}):\n{tail}")
    return files


def _uid() -> str:
    from pydicom.uid import generate_uid

    return generate_uid()
