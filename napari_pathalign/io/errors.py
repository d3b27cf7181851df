"""The one error type every slide reader raises for bad or unsupported input."""


class SlideError(ValueError):
    """A slide file could not be opened or read: the message names the file and what to do."""


class NotBrightfieldError(SlideError):
    """A readable image that is not an 8-bit brightfield slide (fluorescence, 16-bit, multichannel)."""


class DicomWebError(SlideError):
    """A slide on a DICOMweb server could not be reached, found or read; the message names the server."""


class DicomWebConnectionError(DicomWebError):
    """The server did not answer (down, wrong address, timeout) or its TLS certificate failed verification."""


class DicomWebAuthError(DicomWebError):
    """The server refused the request (HTTP 401 or 403): no, wrong or insufficient credentials."""


class SeriesNotFoundError(DicomWebError):
    """The server holds no such study or series."""


class NotASlideError(DicomWebError):
    """The series exists but is not a whole-slide image (CT, MR, a report, ...)."""
