"""DICOMweb credentials from the OS keyring, against a real password-protected Orthanc. The keyring is the real
``keyring`` package with its plain-file backend (``keyrings.alt``), as on a machine without a desktop keyring."""

from __future__ import annotations

import pytest

from napari_pathalign.io import open_slide
from napari_pathalign.io.dicomweb import Credentials
from napari_pathalign.io.errors import DicomWebAuthError
from napari_pathalign.io.keyring_credentials import SERVICE, parse_secret
from tests.orthanc import Orthanc, slide_url

keyring = pytest.importorskip("keyring")
pytest.importorskip("keyrings.alt")

PASSWORD = "k3yring-Pw!"


@pytest.fixture
def file_keyring(tmp_path, monkeypatch):
    """keyrings.alt's plain-file keyring in a temporary home, set as the keyring for this test."""
    from keyrings.alt.file import PlaintextKeyring

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    for name in ("PATHALIGN_DICOMWEB_USER", "PATHALIGN_DICOMWEB_PASSWORD", "PATHALIGN_DICOMWEB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    before = keyring.get_keyring()
    ring = PlaintextKeyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(before)


def test_a_protected_archive_opens_with_credentials_from_the_keyring(tmp_path, wsi_dir, file_keyring, monkeypatch):
    with Orthanc(tmp_path / "pacs", users={"pathologist": PASSWORD}) as server:
        server.upload(*sorted((wsi_dir / "CMU-1-Small-Region-dicom").glob("*.dcm")))
        url = slide_url(server, wsi_dir, "cmu-1")
        with pytest.raises(DicomWebAuthError, match="no credentials were sent"):
            open_slide(url)  # no environment, no keyring entry
        keyring.set_password(SERVICE, server.dicomweb, f"basic:pathologist:{PASSWORD}")
        assert Credentials.for_server(server.dicomweb).kind == "basic"
        with open_slide(url) as slide:
            assert slide.read_region((500, 500), (256, 256)).mean() < 250
        monkeypatch.setenv("PATHALIGN_DICOMWEB_TOKEN", "from-the-environment")  # the environment comes first
        assert Credentials.for_server(server.dicomweb).kind == "bearer token"
        monkeypatch.delenv("PATHALIGN_DICOMWEB_TOKEN")
        keyring.set_password(SERVICE, server.dicomweb, f"basic:pathologist:wrong-{PASSWORD}")
        with pytest.raises(DicomWebAuthError, match="the basic credentials were refused") as info:
            open_slide(url)
        assert PASSWORD not in str(info.value)
    assert Credentials.for_server("https://elsewhere.example.org/dicom-web").kind == "none"


@pytest.mark.parametrize(
    "secret, expected",
    [("bearer:abc.def", {"token": "abc.def"}), ("basic:jo:pa:ss", {"user": "jo", "password": "pa:ss"})],
)
def test_keyring_secrets_are_read(secret, expected):
    assert parse_secret(secret, "https://pacs") == expected


@pytest.mark.parametrize(
    "secret, hidden",
    [("the-password", "the-password"), ("basic:only-user", "only-user"), ("bearer:", None), ("token:x7", "x7")],
)
def test_a_malformed_keyring_entry_says_the_form_without_showing_it(secret, hidden):
    with pytest.raises(ValueError, match="is not 'bearer:<token>' or 'basic:<user>:<password>'") as info:
        parse_secret(secret, "https://pacs")
    assert hidden is None or hidden not in str(info.value)
