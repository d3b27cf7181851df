"""Open a slide lazily, print what it is, read a region, and show it in napari.

python examples/open_slide.py [SLIDE]       # default: the bundled CMU-1-Small-Region sample
"""

import sys
from importlib.resources import files

import napari

from napari_pathalign.io import open_slide

path = sys.argv[1] if len(sys.argv) > 1 else str(files("napari_pathalign.resources") / "CMU-1-Small-Region.svs")
slide = open_slide(path)
print(slide)
region = slide.read_region((1000, 1000), (512, 512), level=0)  # (512, 512, 3) uint8
print("region mean RGB:", region.reshape(-1, 3).mean(axis=0).round(1))

viewer = napari.Viewer()
viewer.open(path, plugin="napari-pathalign")
viewer.scale_bar.visible = True
napari.run()
