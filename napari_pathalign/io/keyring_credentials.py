"""DICOMweb credentials from the operating system's keyring (the ``keyring`` package: Secret Service on Linux,
Keychain on macOS, Credential Manager on Windows), for a pathologist who should not keep a password in the
environment.

One entry per archive: service ``napari-pathalign-dicomweb``, user name the archive's DICOMweb root exactly as
in the address (``https://pacs.example.org/dicom-web``), and as the secret either ``bearer:<token>`` or
``basic:<user>:<password>``. Store it once with::

    python -m keyring set napari-pathalign-dicomweb https://pacs.example.org/dicom-web
    # then type:  basic:jsmith:the-password   (or  bearer:eyJ...)

The secret is read when a connection is made and kept only in the ``Credentials`` of that connection; it is
never logged, shown in an error or written to a file.
"""

from __future__ import annotations

SERVICE = "napari-pathalign-dicomweb"  # the keyring service the archive's entry is stored under
FORM = "'bearer:<token>' or 'basic:<user>:<password>'"


def keyring_secret(root: str) -> str | None:
    """The stored secret for the DICOMweb ``root``, or None (no ``keyring`` package, no usable keyring, no entry)."""
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:
        return None
    try:
        return keyring.get_password(SERVICE, root.rstrip("/"))
    except (KeyringError, RuntimeError, OSError):  # no backend on a headless machine, a locked keyring
        return None


def parse_secret(secret: str, root: str) -> dict:
    """``{'token': ...}`` or ``{'user': ..., 'password': ...}`` from a keyring secret; ValueError (never
    showing the secret) when it is neither form."""
    kind, _, rest = secret.partition(":")
    if kind == "bearer" and rest:
        return {"token": rest}
    user, sep, password = rest.partition(":")
    if kind == "basic" and sep and user and password:
        return {"user": user, "password": password}
    raise ValueError(
        f"the keyring entry for {root} (service {SERVICE}) is not {FORM}; store it again with "
        f"'python -m keyring set {SERVICE} {root}'"
    )
