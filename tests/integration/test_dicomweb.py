"""A real Orthanc with its DICOMweb plugin, on a free port with a throw-away storage folder:
generated studies are loaded through its REST API, then resolved with QIDO-RS and fetched
with WADO-RS, including the failures a PACS has (wrong password, down, vanished instances)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import requests

from radtrust_demo.orthanc import AUTH, PATIENCE, free_port
from radtrust_demo.orthanc import orthanc as start_orthanc
from radtrust_engine.dicomweb import DicomwebError, DicomwebQuery, dicomweb_client, resolve, retrieve

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _dicom(study: int, series: int, index: int, *, modality: str, body_part: str, date: str, sex: str) -> bytes:
    """A small valid CT/CR instance with its UIDs derived from its position (deterministic)."""
    from io import BytesIO

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    root = "1.2.826.0.1.3680043.8.498"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.StudyInstanceUID = f"{root}.{study}"
    ds.SeriesInstanceUID = f"{root}.{study}.{series}"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{root}.{study}.{series}.{index}"
    ds.PatientID, ds.PatientSex, ds.PatientAge = f"p{study}", sex, "054Y"
    ds.Modality, ds.BodyPartExamined, ds.StudyDate = modality, body_part, date
    ds.SeriesDescription, ds.AccessionNumber = "PA", f"ACC{study}"
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(256, dtype=np.uint16) * (index + 1)).tobytes()
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """Orthanc on a free port with basic auth, loaded with 4 CR chest studies (2020-2023, 3 instances each) and one CT head study."""
    with start_orthanc(tmp_path_factory.mktemp("orthanc")) as pacs:
        studies = [
            _dicom(study, 1, index, modality="CR", body_part="CHEST", date=f"202{study}0601", sex="FM"[study % 2])
            for study in range(4)
            for index in range(3)
        ]
        pacs.upload([*studies, _dicom(9, 1, 0, modality="CT", body_part="HEAD", date="20220101", sex="F")])
        yield pacs.url


def _client(url: str, auth=AUTH):
    return dicomweb_client(f"{url}/dicom-web", auth=auth, timeout=PATIENCE)


def test_a_query_resolves_to_a_frozen_reproducible_manifest(orthanc):
    query = DicomwebQuery(modality="CR", body_part="CHEST", study_dates="20210101-20231231")

    manifest = resolve(_client(orthanc), query, limit=100)
    again = resolve(_client(orthanc), query, limit=100)

    assert len(manifest.instances) == 9  # studies 1-3, 3 instances each; the CT head never matches
    assert {i.patient_id for i in manifest.instances} == {"p1", "p2", "p3"}
    assert again == manifest and len(manifest.sha256) == 64
    by_accession = resolve(_client(orthanc), DicomwebQuery(modality="CR", accession_numbers=("ACC0", "ACC2")), limit=100)
    assert {i.patient_id for i in by_accession.instances} == {"p0", "p2"}


def test_retrieval_fetches_in_parallel_then_reads_the_cache(orthanc, tmp_path):
    from pydicom import dcmread

    manifest = resolve(_client(orthanc), DicomwebQuery(modality="CR"), limit=100)

    cold = retrieve(_client(orthanc), manifest, tmp_path / "cache", workers=4)
    warm = retrieve(_client(orthanc), manifest, tmp_path / "cache", workers=4)

    assert len(cold.paths) == 12 and cold.skipped == {} and cold.from_cache == 0
    assert warm.from_cache == 12
    first = manifest.instances[0]
    header = dcmread(cold.paths[first.sop_uid])
    assert (header.SOPInstanceUID, header.PatientID, header.Modality) == (first.sop_uid, first.patient_id, "CR")
    assert header.PatientSex in {"F", "M"} and header.pixel_array.shape == (16, 16)


def test_a_vanished_instance_is_skipped_with_its_reason(orthanc, tmp_path):
    manifest = resolve(_client(orthanc), DicomwebQuery(modality="CT"), limit=100)
    [instance] = manifest.instances
    found = requests.post(f"{orthanc}/tools/lookup", data=instance.sop_uid, auth=AUTH, timeout=PATIENCE).json()
    requests.delete(f"{orthanc}{found[0]['Path']}", auth=AUTH, timeout=PATIENCE).raise_for_status()

    outcome = retrieve(_client(orthanc), manifest, tmp_path / "cache", retries=1, backoff=0.01)

    assert outcome.paths == {}
    assert outcome.skipped == {instance.sop_uid: "vanished from the PACS since the manifest was frozen"}


def test_wrong_credentials_an_empty_query_a_query_too_large_and_a_pacs_down_are_clear_errors(orthanc):
    with pytest.raises(DicomwebError, match="HTTP 401, the PACS refused the credentials"):
        resolve(_client(orthanc, auth=("radtrust", "wrong")), DicomwebQuery(modality="CR"), limit=100)
    with pytest.raises(DicomwebError, match="matches no instance"):
        resolve(_client(orthanc), DicomwebQuery(modality="MR"), limit=100)
    with pytest.raises(DicomwebError, match="more than 5 instances"):
        resolve(_client(orthanc), DicomwebQuery(modality="CR"), limit=5)
    with pytest.raises(DicomwebError, match="does not answer"):
        resolve(_client(f"http://127.0.0.1:{free_port()}"), DicomwebQuery(modality="CR"), limit=100)


def test_a_query_is_paged_with_offset_until_exhausted(orthanc):
    query = DicomwebQuery(modality="CR")

    paged = resolve(_client(orthanc), query, limit=100, page_size=5)  # 12 instances: pages of 5, 5 and 2

    assert paged == resolve(_client(orthanc), query, limit=100) and len(paged.instances) == 12
    with pytest.raises(DicomwebError, match="more than 7 instances"):
        resolve(_client(orthanc), query, limit=7, page_size=5)


@pytest.mark.parametrize("cap", [{"LimitFindInstances": 5}, {"LimitFindInstances": 5, "LimitFindResults": 2}])
def test_a_pacs_that_caps_its_answers_silently_is_refused_never_frozen(tmp_path, cap):
    """Orthanc with a find limit answers at most about that many matches, without a word, and
    paging past the limit returns nothing: the answer looks complete. The series' own counts say it is not."""
    with start_orthanc(tmp_path / "capped", options=cap) as pacs:
        pacs.upload([_dicom(study, 1, index, modality="CR", body_part="CHEST", date="20220601", sex="F") for study in range(4) for index in range(3)])
        client = _client(pacs.url)
        capped = client.search_for_instances(search_filters={"Modality": "CR"})
        assert 0 < len(capped) < 12  # what a plain search gets

        for page_size in (1000, 4):
            with pytest.raises(DicomwebError, match=r"The PACS answered \d+ instances in \d+ series, but counts \d+ instances") as refused:
                resolve(client, DicomwebQuery(modality="CR", body_part="CHEST"), limit=100, page_size=page_size)
            assert refused.value.reason == "search_capped" and "LimitFindInstances" in str(refused.value)
        # A query the cap does not reach is answered whole.
        assert len(resolve(client, DicomwebQuery(modality="CR", accession_numbers=("ACC1",)), limit=100).instances) == 3


def test_credentials_come_from_the_environment_or_a_file(tmp_path, monkeypatch):
    from radtrust_engine.dicomweb import credentials

    assert credentials() is None
    secret = Path(tmp_path / "password")
    secret.write_text("from-file\n")
    monkeypatch.setenv("RADTRUST_PACS_USER", "radtrust")
    monkeypatch.setenv("RADTRUST_PACS_PASSWORD", "from-env")
    assert credentials() == ("radtrust", "from-env")
    monkeypatch.setenv("RADTRUST_PACS_PASSWORD_FILE", str(secret))
    assert credentials() == ("radtrust", "from-file")


def test_the_bench_runs_the_same_cases_from_orthanc_cold_and_warm_and_from_files():
    from radtrust_demo.bench.dicomweb import dicomweb_vs_files

    result = dicomweb_vs_files(30, rounds=1, log=lambda message: None)

    assert result["instances"] == 30 and set(result["images_per_second"]) == {"files", "cold", "warm"}
    assert result["value"] == result["dicomweb_vs_files_cold"] > 0 and result["dicomweb_vs_files_warm"] > 0
    assert set(result["meets_goals"]) == {"dicomweb_vs_files_cold", "dicomweb_vs_files_warm"}
