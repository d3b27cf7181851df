"""DICOMweb: where a slide lives on an archive, the credentials to reach it, and one connection that
searches (QIDO-RS), fetches (WADO-RS) and stores (STOW-RS) with timeouts, retries and clear errors.

A slide is addressed as ``dicomweb+https://host[:port]/<DICOMweb root>/studies/<StudyUID>/series/<SeriesUID>``:
the ``dicomweb+`` prefix says that the address is a series on a DICOMweb server, not a web page, and the part
before ``/studies/`` is the server's DICOMweb root (``/dicom-web`` on Orthanc, ``/dcm4chee-arc/aets/DCM4CHEE/rs``
on dcm4chee). Credentials never travel in the address: they come from the environment (``from_env``) or
are passed in, and no message, log line or file ever holds them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter  # requests comes with dicomweb-client; this module loads on first use

from napari_pathalign.io.errors import (
    DicomWebAuthError,
    DicomWebConnectionError,
    DicomWebError,
    SeriesNotFoundError,
)

SCHEMES = {"dicomweb+http": "http", "dicomweb+https": "https"}
ENV_TOKEN = "PATHALIGN_DICOMWEB_TOKEN"
ENV_USER = "PATHALIGN_DICOMWEB_USER"
ENV_PASSWORD = "PATHALIGN_DICOMWEB_PASSWORD"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # DICOM UI: digits and dots, at most 64 characters
_DATE = re.compile(r"^(\d{8})?(-)?(\d{8})?$")  # DA and DA ranges as QIDO-RS takes them
ADDRESS_FORM = "dicomweb+https://host[:port]/<DICOMweb root>/studies/<StudyInstanceUID>/series/<SeriesInstanceUID>"
CREDENTIALS_HELP = (
    f"set {ENV_TOKEN} (a bearer token), or {ENV_USER} and {ENV_PASSWORD} (basic authentication), or store them in "
    "the OS keyring (python -m keyring set napari-pathalign-dicomweb <DICOMweb root>)"
)


@dataclass(frozen=True)
class DicomWebAddress:
    """A DICOMweb root, optionally narrowed to a study and a series; never holds credentials."""

    root: str  # http(s)://host[:port]/path: the server's DICOMweb root, no trailing slash
    study_uid: str | None = None  # Study Instance UID
    series_uid: str | None = None  # Series Instance UID (a slide is one series)

    @classmethod
    def parse(cls, url: str) -> DicomWebAddress:
        """Read ``dicomweb+http(s)://...`` (a slide or study) or a plain ``http(s)://`` DICOMweb root."""
        if not isinstance(url, str):
            raise ValueError(f"a DICOMweb address is a str, got {type(url).__name__}; expected {ADDRESS_FORM}")
        parts = urlsplit(url.strip())
        scheme = SCHEMES.get(parts.scheme.lower(), parts.scheme.lower())  # a plain http(s) root is fine too
        if scheme not in SCHEMES.values():
            raise ValueError(f"{url!r} is not a DICOMweb address (scheme {parts.scheme!r}); expected {ADDRESS_FORM}")
        if parts.username is not None or parts.password is not None:  # never echo the address: it holds a secret
            raise ValueError(
                f"a DICOMweb address must not carry a user name or password (they would end up in logs, layer "
                f"names and files); {CREDENTIALS_HELP}"
            )
        if not parts.hostname:
            raise ValueError(f"{url!r} names no server; expected {ADDRESS_FORM}")
        if parts.query or parts.fragment:
            raise ValueError(f"{url!r} has a query or fragment; expected {ADDRESS_FORM}")
        segments = [s for s in parts.path.split("/") if s]
        study = series = None
        if "studies" in segments:
            k = segments.index("studies")
            rest = segments[k + 1 :]
            if len(rest) not in (1, 3) or (len(rest) == 3 and rest[1] != "series"):
                raise ValueError(f"{url!r}: after /studies/ expected <StudyUID>[/series/<SeriesUID>]; {ADDRESS_FORM}")
            study, series = rest[0], (rest[2] if len(rest) == 3 else None)
            for what, uid in (("StudyInstanceUID", study), ("SeriesInstanceUID", series)):
                if uid is not None and not (_UID.match(uid) and len(uid) <= 64):
                    raise ValueError(f"{url!r}: {what} {uid!r} is not a DICOM UID (digits and dots, at most 64)")
            segments = segments[:k]
        root = f"{scheme}://{parts.netloc}" + "".join(f"/{s}" for s in segments)
        return cls(root, study, series)

    @property
    def url(self) -> str:
        """The address in ``dicomweb+`` form: what ``open_slide`` takes back."""
        out = "dicomweb+" + self.root
        if self.study_uid:
            out += f"/studies/{self.study_uid}"
        if self.series_uid:
            out += f"/series/{self.series_uid}"
        return out

    def series(self, study_uid: str, series_uid: str) -> DicomWebAddress:
        return DicomWebAddress(self.root, study_uid, series_uid)


@dataclass(frozen=True, repr=False)
class Credentials:
    """Basic-auth user and password, or a bearer token, or none; ``repr`` shows only which kind."""

    user: str | None = None
    password: str | None = None
    token: str | None = None

    def __post_init__(self):
        if self.token and (self.user or self.password):
            raise ValueError(f"give either a bearer token or a user and password, not both; {CREDENTIALS_HELP}")
        if bool(self.user) != bool(self.password):
            raise ValueError(f"basic authentication needs both a user name and a password; {CREDENTIALS_HELP}")

    @classmethod
    def from_env(cls, environ=None) -> Credentials:
        """From PATHALIGN_DICOMWEB_TOKEN, or PATHALIGN_DICOMWEB_USER and PATHALIGN_DICOMWEB_PASSWORD."""
        env = os.environ if environ is None else environ
        return cls(env.get(ENV_USER) or None, env.get(ENV_PASSWORD) or None, env.get(ENV_TOKEN) or None)

    @classmethod
    def for_server(cls, root: str, environ=None) -> Credentials:
        """The credentials for one archive: from the environment (``from_env``) when set there, else from the
        OS keyring's entry for ``root`` (``io/keyring_credentials.py``), else none."""
        found = cls.from_env(environ)
        if found.kind != "none":
            return found
        from napari_pathalign.io.keyring_credentials import keyring_secret, parse_secret

        secret = keyring_secret(root)
        return cls(**parse_secret(secret, root.rstrip("/"))) if secret else found

    @property
    def kind(self) -> str:
        return "bearer token" if self.token else "basic" if self.user else "none"

    def __repr__(self) -> str:
        return f"Credentials({self.kind})"

    def auth(self):
        """A ``requests`` auth object, or None."""
        if self.token:
            return _BearerAuth(self.token)
        if self.user:
            from requests.auth import HTTPBasicAuth

            return HTTPBasicAuth(self.user, self.password)
        return None


class _BearerAuth:
    """Adds ``Authorization: Bearer ...`` to each request (requests drops it on a redirect to another host)."""

    def __init__(self, token: str):
        self._token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(***)"


@dataclass
class DicomWebOptions:
    """How to talk to the server; the defaults suit a hospital archive on the local network."""

    connect_timeout_s: float = 5.0  # to open a connection
    read_timeout_s: float = 30.0  # between bytes of an answer (a large frame on a slow link)
    retries: int = 3  # further tries after a refused connection, timeout, 429, 502, 503 or 504
    backoff_s: float = 0.25  # waits 0, 2x, 4x ... this between tries (urllib3's exponential backoff)
    verify: bool | str = True  # TLS: verify the server's certificate; a path is a CA bundle to verify it with
    cache_bytes: int = 256 * 2**20  # decoded frames kept (LRU) so panning back never refetches
    workers: int = 8  # frames fetched in parallel for one region: network-bound, not CPU-bound
    display_wait_s: float = 2.0  # the viewer waits at most this for a frame, then draws it blank until it arrives


@dataclass
class StudyHit:
    """One study found by ``search_studies``."""

    study_uid: str
    patient_id: str
    patient_name: str
    accession: str
    date: str  # YYYYMMDD, '' when the archive does not say
    description: str
    modalities: list[str] = field(default_factory=list)  # ModalitiesInStudy, e.g. ['SM']


@dataclass
class SeriesHit:
    """One series found by ``search_series``; ``url`` opens it with ``open_slide`` when it is a slide."""

    study_uid: str
    series_uid: str
    modality: str
    description: str
    instances: int | None
    url: str  # dicomweb+http(s)://.../studies/<StudyUID>/series/<SeriesUID>


class _VerifyingAdapter(HTTPAdapter):
    """Sends with the connection's ``verify`` when it names a CA bundle (or is False): requests lets
    REQUESTS_CA_BUNDLE override a session's own setting, so an explicit choice would silently lose."""

    def __init__(self, verify: bool | str, **kwargs):
        super().__init__(**kwargs)
        self._verify = verify

    def send(self, request, verify=True, **kwargs):
        return super().send(request, verify=verify if self._verify is True else self._verify, **kwargs)


class DicomWebConnection:
    """A session with one DICOMweb server: timeouts, retries with backoff, TLS verification, credentials."""

    def __init__(self, root: str, credentials: Credentials | None = None, options: DicomWebOptions | None = None):
        import requests
        from dicomweb_client.api import DICOMwebClient
        from urllib3.util.retry import Retry

        self.address = DicomWebAddress.parse(root)
        self.root = self.address.root
        self.options = options or DicomWebOptions()
        self.credentials = credentials if credentials is not None else Credentials()
        retry = Retry(
            total=self.options.retries,
            backoff_factor=self.options.backoff_s,
            status_forcelist=(429, 502, 503, 504),
            allowed_methods=frozenset({"GET", "HEAD"}),
            raise_on_status=False,  # the last answer comes back, so its status names the problem
        )
        self.session = requests.Session()
        adapter = _VerifyingAdapter(self.options.verify, max_retries=retry, pool_maxsize=max(10, self.options.workers))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.auth = self.credentials.auth()
        self.client = DICOMwebClient(
            self.root, session=self.session, timeout=(self.options.connect_timeout_s, self.options.read_timeout_s)
        )
        self.client.set_http_retry_params(retry=False)  # one retry policy: the session's, which also retries connects

    def __repr__(self) -> str:
        return f"DicomWebConnection({self.root!r}, {self.credentials!r})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> DicomWebConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- errors -------------------------------------------------------------------------------
    def error(self, exc: BaseException, doing: str) -> DicomWebError:
        """``exc`` from requests, dicomweb-client or wsidicom as the project's error, naming server and remedy."""
        import requests

        where = f"DICOMweb server {self.root}"
        if isinstance(exc, DicomWebError):
            return exc
        if isinstance(exc, requests.exceptions.SSLError):
            return DicomWebConnectionError(
                f"{where}: could not {doing}: its TLS certificate could not be verified ({brief(exc)}); if the "
                "archive uses a hospital certificate authority, point REQUESTS_CA_BUNDLE at that CA's PEM file"
            )
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            tries = self.options.retries + 1
            if isinstance(exc, requests.exceptions.Timeout) or "timed out" in str(exc):
                # it listens but does not answer: busy or hung, not a wrong address
                o = self.options
                return DicomWebConnectionError(
                    f"{where}: could not {doing}: timed out after {tries} tries (no answer within "
                    f"{o.connect_timeout_s:g} s to connect, {o.read_timeout_s:g} s to read; {brief(exc)}); the server "
                    "is busy or hung: try again later, or allow it more time with DicomWebOptions(read_timeout_s=...)"
                )
            return DicomWebConnectionError(
                f"{where}: could not {doing}: no answer after {tries} tries ({brief(exc)}); check "
                "the address and port, that the server runs and that this machine can reach it"
            )
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            kind = self.credentials.kind
            sent = "no credentials were sent" if kind == "none" else f"the {kind} credentials were refused"
            return DicomWebAuthError(f"{where}: could not {doing}: HTTP {status} ({sent}); {CREDENTIALS_HELP}")
        if status == 404:
            return SeriesNotFoundError(f"{where}: could not {doing}: HTTP 404, the server has no such resource")
        if status is not None:
            return DicomWebError(f"{where}: could not {doing}: the server answered HTTP {status} ({brief(exc)})")
        return DicomWebError(f"{where}: could not {doing} ({type(exc).__name__}: {brief(exc)})")

    def call(self, doing: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, with any failure raised as a ``DicomWebError`` saying what was being done."""
        try:
            return fn(*args, **kwargs)
        except DicomWebError:
            raise
        except Exception as exc:
            raise self.error(exc, doing) from exc

    # -- QIDO-RS --------------------------------------------------------------------------------
    def search_studies(
        self,
        patient_id: str = "",
        accession: str = "",
        date: str = "",
        modality: str = "SM",
        limit: int = 100,
    ) -> list[StudyHit]:
        """Studies matching all given fields (empty ones are not filtered on); ``date`` is YYYYMMDD or a range."""
        filters = {}
        if patient_id.strip():
            filters["PatientID"] = patient_id.strip()
        if accession.strip():
            filters["AccessionNumber"] = accession.strip()
        if date.strip():
            filters["StudyDate"] = check_date(date)
        if modality.strip():
            filters["ModalitiesInStudy"] = modality.strip().upper()
        fields = ["PatientName", "StudyDescription", "ModalitiesInStudy", "AccessionNumber"]
        found = self.call(
            "search for studies", self.client.search_for_studies, search_filters=filters, fields=fields, limit=limit
        )
        return [
            StudyHit(
                study_uid=_value(d, "0020000D"),
                patient_id=_value(d, "00100020"),
                patient_name=_value(d, "00100010"),
                accession=_value(d, "00080050"),
                date=_value(d, "00080020"),
                description=_value(d, "00081030"),
                modalities=list(d.get("00080061", {}).get("Value", [])),
            )
            for d in found
        ]

    def search_series(self, study_uid: str, series_uid: str = "", modality: str = "") -> list[SeriesHit]:
        """The series of a study (optionally one series, or one modality); [] when the study has none."""
        filters = {}
        if series_uid:
            filters["SeriesInstanceUID"] = series_uid
        if modality:
            filters["Modality"] = modality.upper()
        try:
            found = self.client.search_for_series(
                study_uid, search_filters=filters, fields=["SeriesDescription", "NumberOfSeriesRelatedInstances"]
            )
        except Exception as exc:
            err = self.error(exc, f"search the series of study {study_uid}")
            if isinstance(err, SeriesNotFoundError):  # some servers answer 404 for an unknown study
                return []
            raise err from exc
        hits = []
        for d in found:
            n = _value(d, "00201209")
            hits.append(
                SeriesHit(
                    study_uid=study_uid,
                    series_uid=_value(d, "0020000E"),
                    modality=_value(d, "00080060"),
                    description=_value(d, "0008103E"),
                    instances=int(n) if str(n).isdigit() else None,
                    url=self.address.series(study_uid, _value(d, "0020000E")).url,
                )
            )
        return hits

    # -- WADO-RS --------------------------------------------------------------------------------
    def retrieve(self, study_uid: str, series_uid: str, instance_uid: str):
        """One instance, whole, as a pydicom Dataset (a report or map read back)."""
        return self.call(
            f"retrieve instance {instance_uid}", self.client.retrieve_instance, study_uid, series_uid, instance_uid
        )

    def slide_source(self, study_uid: str, series_uid: str):
        """The metadata of a slide's level-0 instance (a pydicom Dataset, no pixels): what results reference."""
        import pydicom

        found = self.call(
            f"read the metadata of series {series_uid}", self.client.retrieve_series_metadata, study_uid, series_uid
        )
        volumes = [
            d for d in found if "VOLUME" in (d.get("00080008", {}).get("Value") or []) and _value(d, "00080060") == "SM"
        ]
        if not volumes:
            raise SeriesNotFoundError(
                f"DICOMweb server {self.root}: series {series_uid} has no slide (SM VOLUME) image"
            )
        largest = max(volumes, key=lambda d: int(_value(d, "00480006") or 0))  # TotalPixelMatrixColumns
        largest = {k: v for k, v in largest.items() if "BulkDataURI" not in v}  # ICC profile, pixels: not needed
        return pydicom.Dataset.from_json(largest)

    # -- STOW-RS --------------------------------------------------------------------------------
    def store(self, datasets: list, study_uid: str | None = None, verify: bool = True) -> list[str]:
        """Store pydicom datasets (a report, a map, annotations) with STOW-RS; returns their SOP Instance UIDs.

        What can be checked here is checked before anything is sent (``check_storable``), so a call refused
        for it stores nothing. An instance the server does not store raises ``StoreRejectedError`` naming it,
        the server's reason, and what was stored anyway (STOW-RS has no undo). With ``verify`` a QIDO-RS
        search says what the server holds afterwards, not only what it answered: some archives answer
        success for an instance a storage policy dropped, others an error for a call they half stored.
        """
        datasets = list(datasets)
        check_storable(datasets, study_uid)
        sent = {str(d.SOPInstanceUID): d for d in datasets}
        how = "it answered success"
        try:
            answer = self.client.store_instances(datasets, study_uid)
        except Exception as exc:
            response = getattr(exc, "response", None)
            if response is None or response.status_code in (401, 403, 404):
                raise self.error(exc, f"store {len(sent)} DICOM instance(s) (STOW-RS)") from exc
            answer, how = _stow_answer(response), f"HTTP {response.status_code}"
        reasons = {
            str(item.get("ReferencedSOPInstanceUID", "?")): _failure(item.get("FailureReason"))
            for item in answer.get("FailedSOPSequence", [])
        }
        answered = {str(i.ReferencedSOPInstanceUID) for i in answer.get("ReferencedSOPSequence", [])} - set(reasons)
        held = self._held(datasets) if verify else answered
        missing = [uid for uid in sent if uid not in held]
        if not missing:
            return list(sent)
        failed = {
            uid: reasons.get(uid)
            or ("answered as stored, but the server does not hold it" if uid in answered else "not stored")
            for uid in missing
        }
        what = "; ".join(f"{getattr(sent[uid], 'Modality', '?')} instance {uid}: {why}" for uid, why in failed.items())
        stored = [uid for uid in sent if uid not in failed]
        also = f"stored anyway: {', '.join(stored)}" if stored else "nothing of this call was stored"
        raise StoreRejectedError(
            f"DICOMweb server {self.root} did not store {len(failed)} of {len(sent)} instance(s) ({how}): {what}; "
            f"{also}. Its log says why (a storage policy, a full disk, an instance sent to another study's URL)",
            stored=stored,
            failed=failed,
        )

    def _held(self, datasets: list) -> set[str]:
        """The SOP Instance UIDs the server holds in the series of ``datasets`` (QIDO-RS)."""
        held = set()
        for study, series in {(str(d.StudyInstanceUID), str(d.SeriesInstanceUID)) for d in datasets}:
            try:
                found = self.client.search_for_instances(study, series, fields=["SOPInstanceUID"])
            except Exception as exc:
                if getattr(getattr(exc, "response", None), "status_code", None) == 404:  # no such series: holds nothing
                    continue
                raise self.error(exc, f"check what series {series} holds after storing") from exc
            held |= {_value(f, "00080018") for f in found}
        return held


class StoreRejectedError(DicomWebError):
    """The server did not store every instance sent with STOW-RS; ``failed`` maps each SOP Instance UID to why."""

    def __init__(self, message: str, stored: list[str] = (), failed: dict[str, str] | None = None):
        super().__init__(message)
        self.stored = list(stored)  # stored anyway (the server keeps them: STOW-RS has no undo)
        self.failed = dict(failed or {})


# PS3.18 10.5.3 / PS3.4 Annex B: the Failure Reason codes a STOW-RS answer gives
FAILURE_REASONS = {
    0x0110: "processing failure",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0xA700: "out of resources",
    0xA900: "data set does not match the SOP class",
    0xC000: "cannot understand",
    0xC122: "transfer syntax not supported",
}


def check_storable(datasets: list, study_uid: str | None = None) -> None:
    """Raise ValueError, before anything is sent, for what would make STOW-RS fail or half-store a call:
    no datasets, an instance without valid UIDs, or (with ``study_uid``) one from another study."""
    import pydicom

    if not datasets:
        raise ValueError("nothing to store: pass the datasets (report_sr, heatmap_parametric_map, ...) in a list")
    for k, ds in enumerate(datasets):
        if not isinstance(ds, pydicom.Dataset):
            raise ValueError(f"item {k} to store is a {type(ds).__name__}; expected a pydicom Dataset")
        for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            uid = str(ds.get(keyword, "") or "")
            if not (_UID.match(uid) and len(uid) <= 64):
                raise ValueError(
                    f"item {k} to store has {keyword} {uid!r}, not a DICOM UID (digits and dots, at most 64); "
                    "nothing was sent"
                )
        if study_uid is not None and str(ds.StudyInstanceUID) != study_uid:
            raise ValueError(
                f"{getattr(ds, 'Modality', '?')} instance {ds.SOPInstanceUID} belongs to study {ds.StudyInstanceUID}, "
                f"not {study_uid}; a server stores only the study's own instances into it (HTTP 409), so nothing was "
                "sent. Build the results from this study's slide, or store a de-identified export without a study"
            )


def _failure(code) -> str:
    code = int(code or 0)
    return f"{FAILURE_REASONS.get(code, 'failed')} (failure reason {code:#06x})"


def _stow_answer(response):
    """The DICOM JSON body of a STOW-RS error answer as a Dataset (empty when there is none)."""
    import pydicom

    try:
        return pydicom.Dataset.from_json(response.json())
    except Exception:  # no body, HTML, XML: the status alone says it
        return pydicom.Dataset()


def check_date(date: str) -> str:
    """A QIDO-RS date or range (YYYYMMDD, YYYYMMDD-YYYYMMDD, open ranges); ISO dashes inside a date are accepted."""
    text = date.strip()
    iso = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text)
    if iso:
        text = "".join(iso.groups())
    if not text or not _DATE.match(text) or text == "-":
        raise ValueError(f"study date {date!r} not understood; expected YYYYMMDD, YYYY-MM-DD or YYYYMMDD-YYYYMMDD")
    return text


def _value(dataset: dict, tag: str) -> str:
    """The first value of a DICOM JSON attribute as text ('' when absent); person names as their alphabetic form."""
    values = dataset.get(tag, {}).get("Value") or [""]
    value = values[0]
    if isinstance(value, dict):  # PN: {"Alphabetic": "Doe^Jane"}
        value = value.get("Alphabetic", "")
    return str(value)


def brief(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, cut to ``limit`` characters: for error messages built on it."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
