"""Everything that touches napari, Qt or magicgui lives here, and only here."""
