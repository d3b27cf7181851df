"""The one error type every slide reader raises for bad or unsupported input."""


class SlideError(ValueError):
    """A slide file could not be opened or read: the message names the file and what to do."""


class NotBrightfieldError(SlideError):
    """A readable image that is not an 8-bit brightfield slide (fluorescence, 16-bit, multichannel)."""
