"""De-identify an export (PS3.15 Basic Application Confidentiality Profile) before it leaves the machine.

Every result we write (report SR, parametric map, bulk annotations) copies the slide's patient, study
and specimen modules; ``deidentify`` removes or replaces what identifies the patient and the visit, and
remaps every instance UID, so the export can go to a research archive or a collaborator.

Pseudonyms and new UIDs are keyed hashes (HMAC-SHA256) with a secret the site keeps: the same key gives
the same pseudonym for the same patient and the same new UID for the same old one, so a slide, its report
and its maps de-identified separately still reference each other; without the key nobody can recompute a
pseudonym from a guessed patient ID (a plain hash of a medical record number would be reversed by trying
every number).
"""

from __future__ import annotations

import copy
import hashlib
import hmac

MIN_KEY_CHARS = 16
UID_ROOT = "2.25."  # UIDs derived from a 128-bit number (PS3.5 B.2): no organisation root needed

# PS3.15 Table E.1-1 actions for the attributes our exports can carry (copied from the slide by highdicom).
# X: removed. Z: kept, empty (type 2) or a pseudonym (type 1). D: a dummy value. U: a consistent new UID.
REMOVE = frozenset(
    """
    OtherPatientIDs OtherPatientIDsSequence OtherPatientNames PatientBirthName PatientAge
    PatientMotherBirthName PatientSize PatientWeight PatientAddress PatientTelephoneNumbers MilitaryRank
    BranchOfService EthnicGroup Occupation AdditionalPatientHistory PatientComments PatientBirthTime
    IssuerOfPatientID IssuerOfPatientIDQualifiersSequence PatientInsurancePlanCodeSequence
    MedicalRecordLocator CountryOfResidence RegionOfResidence PatientReligiousPreference ResponsiblePerson
    ResponsibleOrganization PatientState InstitutionName InstitutionAddress InstitutionalDepartmentName
    InstitutionCodeSequence StationName OperatorsName OperatorIdentificationSequence
    PerformingPhysicianName PhysiciansOfRecord NameOfPhysiciansReadingStudy RequestingPhysician
    ReferringPhysicianAddress ReferringPhysicianTelephoneNumbers ReferringPhysicianIdentificationSequence
    StudyDescription SeriesDescription SeriesDate SeriesTime IssuerOfAccessionNumberSequence
    RequestAttributesSequence ReferencedPatientSequence ReferencedStudySequence
    AdmittingDiagnosesDescription PerformedProcedureStepDescription PerformedProcedureStepID
    PerformedProcedureStepStartDate PerformedProcedureStepStartTime RequestedProcedureDescription
    IssuerOfTheContainerIdentifierSequence IssuerOfTheSpecimenIdentifierSequence SpecimenShortDescription
    SpecimenDetailedDescription TimezoneOffsetFromUTC AlternateContainerIdentifierSequence
    ContainerDescription DeviceUID
    """.split()
)
EMPTY = frozenset(
    """
    PatientBirthDate PatientSex AccessionNumber ReferringPhysicianName StudyID StudyDate StudyTime
    ContentCreatorName
    """.split()
)
PSEUDONYM = frozenset({"PatientID", "PatientName", "ContainerIdentifier", "SpecimenIdentifier"})
DUMMY = {"DA": "19000101", "TM": "000000", "DT": "19000101000000"}  # dates a module requires: the profile's D
DUMMY_KEYWORDS = {"DeviceSerialNumber": "0"}
# free text inside a specimen's preparation steps can repeat its identifier: emptied (type 2)
EMPTY_SEQUENCES = frozenset({"SpecimenPreparationSequence"})


def deidentify(dataset, key: str | bytes):
    """A de-identified copy of ``dataset`` (any pydicom Dataset, a highdicom object keeps its class).

    Follows the Basic Profile: identifying attributes removed (X) or emptied (Z); the patient ID and name,
    container and specimen identifiers replaced by keyed pseudonyms; other person names emptied; dates and
    times replaced by dummies (1900-01-01) and the study's emptied; every instance UID (study, series, SOP,
    frame of reference, the references to the slide inside sequences) remapped to a keyed 2.25 UID; private
    attributes removed. The report SR's own content (our text) is kept: the Clean Structured Content option.
    ``key`` is the site's secret (at least 16 characters, e.g. ``secrets.token_hex(16)`` kept in a vault).
    """
    from pydicom.dataset import Dataset

    if not isinstance(dataset, Dataset):
        raise ValueError(f"deidentify takes a pydicom Dataset, got {type(dataset).__name__}")
    secret = _check_key(key)
    out = copy.deepcopy(dataset)
    out.remove_private_tags()
    _clean(out, secret)
    if getattr(out, "file_meta", None) is not None and "MediaStorageSOPInstanceUID" in out.file_meta:
        out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    out.PatientIdentityRemoved = "YES"
    out.LongitudinalTemporalInformationModified = "REMOVED"
    out.DeidentificationMethod = ["PS3.15 Basic Profile (napari-pathalign)", "keyed pseudonyms; UIDs remapped"]
    methods = [("113100", "Basic Application Confidentiality Profile")]
    if "ContentSequence" in out:
        methods.append(("113104", "Clean Structured Content Option"))
    out.DeidentificationMethodCodeSequence = [_code(value, "DCM", meaning) for value, meaning in methods]
    return out


def pseudonym(value: str, key: str | bytes) -> str:
    """The keyed pseudonym of an identifier (16 hex digits after 'PA'): same key and value, same pseudonym."""
    return _pseudonym(_check_key(key), str(value))


def pseudonym_uid(uid: str, key: str | bytes) -> str:
    """The keyed new UID of ``uid`` under 2.25 (at most 44 characters): same key and UID, same new UID."""
    return _new_uid(_check_key(key), str(uid))


def _clean(ds, secret: bytes) -> None:
    for elem in list(ds):
        keyword = elem.keyword
        if keyword in REMOVE:
            del ds[elem.tag]
        elif keyword in EMPTY:
            elem.value = None if elem.VR == "SQ" else ""
        elif keyword in PSEUDONYM:
            elem.value = _pseudonym(secret, str(elem.value)) if elem.value else ""
        elif keyword in EMPTY_SEQUENCES:
            elem.value = []
        elif keyword in DUMMY_KEYWORDS:
            elem.value = DUMMY_KEYWORDS[keyword]
        elif elem.VR == "SQ":
            for item in elem.value:
                _clean(item, secret)
        elif elem.VR == "PN":
            elem.value = ""
        elif elem.VR in DUMMY and elem.value not in (None, ""):
            elem.value = DUMMY[elem.VR]
        elif elem.VR == "UI" and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            new = [v if _registered(v) else _new_uid(secret, v) for v in map(str, values)]
            elem.value = new if elem.VM > 1 else new[0]


def _registered(uid: str) -> bool:
    """A UID the standard defines (SOP classes, transfer syntaxes, coding schemes): it identifies nothing."""
    from pydicom.uid import UID

    return UID(uid).name != uid


def _pseudonym(secret: bytes, value: str) -> str:
    return "PA" + hmac.new(secret, f"id:{value}".encode(), hashlib.sha256).hexdigest()[:16].upper()


def _new_uid(secret: bytes, uid: str) -> str:
    digest = hmac.new(secret, f"uid:{uid}".encode(), hashlib.sha256).digest()
    return UID_ROOT + str(int.from_bytes(digest[:16], "big"))


def _check_key(key) -> bytes:
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, bytes) or len(key) < MIN_KEY_CHARS:
        raise ValueError(
            f"the de-identification key must be a secret of at least {MIN_KEY_CHARS} characters (str or bytes), got "
            f"{type(key).__name__ if not isinstance(key, bytes) else f'{len(key)} characters'}; a short key can be "
            "guessed and every pseudonym recomputed: make one with secrets.token_hex(16) and keep it with the site"
        )
    return key


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item
