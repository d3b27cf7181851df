"""A real Orthanc DICOM server with the DICOMweb plugin, started for the tests: never a mock.

``make system-packages`` installs it (Debian: ``orthanc`` and ``orthanc-dicomweb``). The server
listens on a free localhost port, keeps its database in a temporary folder and is stopped after
the tests; ``stop`` / ``start`` let a test take it down and bring it back on the same port.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

BINARY = "Orthanc"
PLUGIN = "libOrthancDicomWeb.so"
PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc", "/usr/local/share/orthanc/plugins")
PACKAGES = "orthanc orthanc-dicomweb"


def find_orthanc() -> tuple[str, Path]:
    """The Orthanc binary and its DICOMweb plugin; skips where they cannot be installed, fails where they can."""
    binary = shutil.which(BINARY) or next((p for p in ("/usr/sbin/Orthanc",) if Path(p).exists()), None)
    plugin = next((Path(d) / PLUGIN for d in PLUGIN_DIRS if (Path(d) / PLUGIN).exists()), None)
    if binary and plugin:
        return binary, plugin
    parts = (("the Orthanc server", binary), (f"its plugin {PLUGIN}", plugin))
    missing = " and ".join(name for name, found in parts if not found)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"{missing} not installed and this machine cannot install it (needs root and apt-get: {PACKAGES})")
    pytest.fail(f"{missing} not installed; run `make system-packages` (apt-get install {PACKAGES})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Orthanc:
    """One Orthanc process on localhost; ``url`` is its root, ``dicomweb`` its DICOMweb root."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None):
        self.binary, self.plugin = find_orthanc()
        self.folder = Path(folder)
        self.users = dict(users or {})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self._process: subprocess.Popen | None = None
        self._log = None
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "pathalign-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,
            "DicomServerEnabled": False,  # HTTP only: no DIMSE port to collide with other runs
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users,
            "Plugins": [str(self.plugin)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "StudiesMetadata": "Full"},
            "SaveJobs": False,
            "HttpThreadsCount": 16,
        }
        self.config = self.folder / "orthanc.json"
        self.config.write_text(json.dumps(config, indent=1))

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 20.0) -> Orthanc:
        """Start the server and wait until ``/system`` answers."""
        self._log = open(self.folder / "orthanc.log", "ab")
        self._process = subprocess.Popen(
            [self.binary, str(self.config)], stdout=self._log, stderr=subprocess.STDOUT, cwd=self.folder
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self._process.returncode}; see {self.folder / 'orthanc.log'}")
            try:
                self.get("/system")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer on {self.url}/system within {timeout_s} s")

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): its port still takes connections, but nothing answers, as from an archive
        that hangs. ``resume`` wakes it; requests sent meanwhile are answered then."""
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self, kill: bool = False) -> None:
        """Stop the server: cleanly (about 2 s), or at once with ``kill=True`` (a crash, a pulled cable)."""
        if self._process is not None:
            self.resume()  # a paused server would take SIGTERM only once woken
            self._process.kill() if kill else self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- REST, with the first registered user's credentials ---------------------------------
    def _request(self, method: str, path: str, data: bytes | None = None, content_type: str | None = None):
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        if self.users:
            user, password = next(iter(self.users.items()))
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def get(self, path: str):
        return self._request("GET", path)

    def upload(self, *files: Path) -> list[dict]:
        """Store DICOM files through Orthanc's REST ``/instances``; returns Orthanc's answers."""
        return [self._request("POST", "/instances", Path(f).read_bytes(), "application/dicom") for f in files]

    def upload_datasets(self, *datasets) -> list[dict]:
        """Store pydicom datasets (written to bytes here) through ``/instances``."""
        answers = []
        for ds in datasets:
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            answers.append(self._request("POST", "/instances", buffer.getvalue(), "application/dicom"))
        return answers

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class TlsFront:
    """HTTPS in front of a server, as nginx stands in front of Orthanc in a hospital: TLS ends here and the
    bytes go on to ``server`` unchanged. (Debian's Orthanc 1.10 crashes on its own first HTTPS request.)

    The certificate is self-signed for 127.0.0.1 (openssl); ``certificate`` is the PEM to trust it with.
    """

    def __init__(self, server: Orthanc, folder: Path):
        if not shutil.which("openssl"):
            pytest.skip("openssl is not installed: no certificate for the HTTPS front (apt-get install openssl)")
        self.certificate, key = Path(folder) / "ca.pem", Path(folder) / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"]
            + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(self.certificate)],
            check=True,
            capture_output=True,
        )
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(self.certificate, key)
        self._backend = ("127.0.0.1", server.port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.dicomweb = f"https://127.0.0.1:{self.port}/dicom-web"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            tls = self._context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):  # the client refused our certificate: what the tests expect
            client.close()
            return
        backend = socket.create_connection(self._backend)
        threading.Thread(target=_pipe, args=(backend, tls), daemon=True).start()
        _pipe(tls, backend)

    def close(self) -> None:
        self._listener.close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def series_url(server: Orthanc, dicom_file: Path) -> str:
    """The ``dicomweb+`` address on ``server`` of the series that ``dicom_file`` belongs to."""
    import pydicom

    ds = pydicom.dcmread(dicom_file, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SeriesInstanceUID"])
    return f"dicomweb+{server.dicomweb}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"


# the slides every DICOMweb test reads (what open_slide opens locally, the files uploaded): a 1-level JPEG
# pyramid with label and overview, a tiny uncompressed one of 25 frames, a JPEG level with a raw thumbnail
SLIDES = {
    "cmu-1": ("CMU-1-Small-Region-dicom", "CMU-1-Small-Region-dicom/*.dcm"),
    "highdicom": ("highdicom_sm_image.dcm", "highdicom_sm_image.dcm"),
    "boxes": ("openslide-python/boxes_0.dcm", "openslide-python/boxes_*.dcm"),
}


def slide_file(wsi_dir: Path, name: str) -> Path:
    """The local file or folder of one of ``SLIDES``."""
    return wsi_dir / SLIDES[name][0]


def slide_url(server: Orthanc, wsi_dir: Path, name: str) -> str:
    """The ``dicomweb+`` address on ``server`` of one of ``SLIDES``."""
    path = slide_file(wsi_dir, name)
    return series_url(server, next(iter(sorted(path.glob("*.dcm")))) if path.is_dir() else path)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory, wsi_dir):
    """One Orthanc for the session with the real DICOM slides of ../shared/data/wsi stored on it."""
    with Orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        for _, files in SLIDES.values():
            server.upload(*sorted(wsi_dir.glob(files)))
        yield server
