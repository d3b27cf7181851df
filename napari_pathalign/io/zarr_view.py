"""TIFF levels as tifffile zarr store -> zarr -> dask: the lazy arrays napari displays.

The store is wrapped so that every chunk read is counted (tests prove that showing a slide
decodes only the tiles on screen) and so that a damaged tile raises ``SlideError`` with its
position instead of a bare codec error.
"""

from __future__ import annotations

from pathlib import Path

from napari_pathalign.io.errors import SlideError


def zarr_level(path: Path, series, level: int, reader):
    """Level ``level`` of a tifffile series as a dask array (H, W, 3) uint8, chunk = stored tile."""
    import dask.array as da
    import zarr

    store = _counting_store(series.aszarr(level=level), path, level, reader)
    arr = da.from_zarr(zarr.open_array(store, mode="r", zarr_format=2))
    if arr.ndim == 2:
        return da.stack([arr] * 3, axis=-1)
    if arr.shape[-1] == 1:
        return da.concatenate([arr] * 3, axis=-1)
    return arr[..., :3]


def _counting_store(store, path: Path, level: int, reader):
    from zarr.storage import WrapperStore

    class CountingStore(WrapperStore):
        async def get(self, key, prototype, byte_range=None):
            is_chunk = not key.rsplit("/", 1)[-1].startswith((".z", "zarr.json"))
            try:
                value = await self._store.get(key, prototype, byte_range)
            except Exception as exc:
                raise SlideError(
                    (
                        f"{path}: stored tile {key!r} (row.column.sample) of level "
                        f"{level} could not be decoded ({exc}); "
                        "the file is damaged there"
                    )
                ) from exc
            if is_chunk and value is not None and reader is not None:
                reader.count_decoded()
            return value

    return CountingStore(store)
