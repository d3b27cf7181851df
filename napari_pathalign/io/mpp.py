"""Microns per pixel from vendor metadata. Never guessed: no metadata -> None, with the reason."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

# Coarser than this is not a microscope calibration: it is a writer's default (72 or 96 dpi
# gives 353 or 265 µm/px). Whole-slide scanners work at 0.1-2 µm/px, macro cameras at ~20-50.
MAX_PLAUSIBLE_MPP = 100.0

_UM_PER_UNIT = {"pm": 1e-6, "nm": 1e-3, "µm": 1.0, "um": 1.0, "\u03bcm": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}
_TIFF_UNIT_UM = {2: 25400.0, 3: 10000.0}  # ResolutionUnit: 2 = inch, 3 = centimetre


def mpp_from_aperio(description: str) -> tuple[float | None, str]:
    """Aperio writes ``|MPP = 0.4990|`` into the ImageDescription of the baseline image."""
    m = re.search(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)", description)
    if not m:
        return None, "Aperio description has no MPP field"
    return _checked(float(m.group(1)), "Aperio MPP field")


def mpp_from_ome(ome_xml: str) -> tuple[float | None, str]:
    """OME-XML ``Pixels/@PhysicalSizeX`` with its unit (µm when unspecified) of the first image."""
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError as exc:
        return None, f"OME-XML could not be parsed ({exc})"
    pixels = next((el for el in root.iter() if el.tag.endswith("}Pixels") or el.tag == "Pixels"), None)
    if pixels is None or pixels.get("PhysicalSizeX") is None:
        return None, "OME-XML has no PhysicalSizeX"
    unit = pixels.get("PhysicalSizeXUnit", "µm")
    if unit not in _UM_PER_UNIT:
        return None, f"OME PhysicalSizeXUnit {unit!r} is not a length unit"
    return _checked(float(pixels.get("PhysicalSizeX")) * _UM_PER_UNIT[unit], "OME PhysicalSizeX")


def mpp_from_resolution(page) -> tuple[float | None, str]:
    """TIFF XResolution (pixels per unit) with ResolutionUnit inch or centimetre."""
    tags = page.tags
    if "XResolution" not in tags or "ResolutionUnit" not in tags:
        return None, "TIFF has no resolution tags"
    unit = int(tags["ResolutionUnit"].value)
    if unit not in _TIFF_UNIT_UM:
        return None, "TIFF resolution has no physical unit (ResolutionUnit = none)"
    num, den = tags["XResolution"].value
    if not num or not den:
        return None, "TIFF XResolution is zero"
    return _checked(_TIFF_UNIT_UM[unit] * den / num, "TIFF resolution tags")


def _checked(mpp: float, source: str) -> tuple[float | None, str]:
    if not 0 < mpp <= MAX_PLAUSIBLE_MPP:
        return (
            None,
            f"{source} gives {mpp:.4g} µm/px, which is not a microscope calibration (a writer's default); ignored",
        )
    return mpp, source
