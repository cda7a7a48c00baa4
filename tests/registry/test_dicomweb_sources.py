"""Datasets held in a PACS: the labels table, the frozen manifest and its hash, and the API that
defines a DICOMweb source (field errors for bad definitions, institution rules, a PACS that does
not answer refusing the run with nothing stored). Runs against a real Orthanc are in
``tests/integration/test_dicomweb_runs.py``."""

from __future__ import annotations

import numpy as np
import pytest

from radtrust_demo.orthanc import free_port
from radtrust_engine.dicomweb import (
    DicomwebError,
    FrozenManifest,
    Instance,
    LabelledManifest,
    LabelsError,
    Retrieval,
    RetrievalFailed,
    cached_manifest,
    label,
    labels_csv,
    labels_table,
    verified,
)

UID = "1.2.826.0.1.3680043.8.498"


def _instances(n: int = 4) -> tuple[Instance, ...]:
    return tuple(Instance(f"{UID}.{i // 2}", f"{UID}.{i // 2}.1", f"{UID}.{i // 2}.1.{i}", f"p{i // 2}") for i in range(n))


def test_a_labels_table_is_keyed_by_study_or_instance_with_0_or_1_labels():
    table = labels_csv(f"StudyInstanceUID,effusion,nodule\n{UID}.0,1,0\n{UID}.1,0,1\n")
    assert (table.key, table.label_names) == ("StudyInstanceUID", ("effusion", "nodule"))
    assert table.rows == {f"{UID}.0": (1, 0), f"{UID}.1": (0, 1)}
    assert labels_table([{"SOPInstanceUID": f"{UID}.0.1.0", "effusion": "1.0"}]).rows == {f"{UID}.0.1.0": (1,)}


@pytest.mark.parametrize(
    "rows,fragment",
    [
        ([], "no row"),
        ([{"effusion": 1}], "exactly one key column"),
        ([{"StudyInstanceUID": f"{UID}.0", "SOPInstanceUID": f"{UID}.0.1.0", "effusion": 1}], "exactly one key column"),
        ([{"StudyInstanceUID": f"{UID}.0"}], "at least one named label column"),
        ([{"StudyInstanceUID": "1.2.abc", "effusion": 1}], "row 1: StudyInstanceUID is not a DICOM UID"),
        ([{"StudyInstanceUID": "1." + "2" * 70, "effusion": 1}], "at most 64"),
        ([{"StudyInstanceUID": f"{UID}.0", "effusion": 1}, {"StudyInstanceUID": f"{UID}.0", "effusion": 0}], "row 2: StudyInstanceUID .* twice"),
        ([{"StudyInstanceUID": f"{UID}.0", "effusion": 2}], "row 1: the label 'effusion' must be 0 or 1"),
        ([{"StudyInstanceUID": f"{UID}.0", "effusion": 1}, {"StudyInstanceUID": f"{UID}.1", "nodule": 1}], "row 2: its columns differ"),
    ],
)
def test_a_bad_labels_table_says_which_row_or_column(rows, fragment):
    with pytest.raises(LabelsError, match=fragment):
        labels_table(rows)


def test_labelling_keeps_labelled_instances_counts_the_rest_and_hashes_instances_with_labels():
    frozen = FrozenManifest(_instances(), "0" * 64)
    by_study = labels_table([{"StudyInstanceUID": f"{UID}.0", "effusion": 1}])

    labelled = label(frozen, by_study)

    assert [i.sop_uid for i in labelled.instances] == [f"{UID}.0.1.0", f"{UID}.0.1.1"]
    assert labelled.labels == ((1,), (1,)) and labelled.unlabelled == 2
    assert LabelledManifest.from_dict(labelled.to_dict()) == labelled and verified(labelled) is labelled
    flipped = label(frozen, labels_table([{"StudyInstanceUID": f"{UID}.0", "effusion": 0}]))
    assert flipped.sha256 != labelled.sha256  # a changed label is a different manifest
    tampered = LabelledManifest.from_dict({**labelled.to_dict(), "instances": [[*row[:4], [0]] for row in labelled.to_dict()["instances"]]})
    with pytest.raises(DicomwebError, match="altered since it was frozen"):
        verified(tampered)
    with pytest.raises(DicomwebError, match="None of the 4 instances"):
        label(frozen, labels_table([{"StudyInstanceUID": f"{UID}.9", "effusion": 1}]))


def test_the_cached_manifest_names_files_by_sop_uid_and_leaves_attributes_to_the_headers(tmp_path):
    labelled = label(
        FrozenManifest(_instances(), "0" * 64), labels_table([{"SOPInstanceUID": i.sop_uid, "a": n % 2} for n, i in enumerate(_instances())])
    )

    manifest = cached_manifest(labelled, tmp_path)

    assert manifest.image_paths == [f"{i.sop_uid}.dcm" for i in _instances()]
    assert manifest.patient_ids == ["p0", "p0", "p1", "p1"]
    assert np.array_equal(manifest.labels[:, 0], [0, 1, 0, 1]) and manifest.label_names == ("a",)
    assert set(manifest.attributes["sex"]) == {None} and manifest.absolute_path(0) == tmp_path.resolve() / f"{UID}.0.1.0.dcm"


def test_a_retrieval_past_the_allowance_fails_counting_each_reason():
    outcome = Retrieval(skipped={"1": "the PACS answered HTTP 500", "2": "the PACS answered HTTP 500", "3": "vanished"})
    outcome.check(total=10, allowed=3)  # within: the pipeline skips them as missing files
    with pytest.raises(RetrievalFailed, match=r"3 of 10 instances .*allows 2\): the PACS answered HTTP 500 \(2\); vanished \(1\)"):
        outcome.check(total=10, allowed=2)


# --- The API -------------------------------------------------------------------------------


def _source(**fields) -> dict:
    return {
        "base_url": "https://pacs.south.example/dicom-web",
        "credentials_env": "SOUTH_PACS",
        "modality": "CR",
        "body_part": "chest",
        "study_dates": "20230101-20231231",
        "labels": [{"StudyInstanceUID": f"{UID}.0", "effusion": 1}, {"StudyInstanceUID": f"{UID}.1", "effusion": 0}],
        **fields,
    }


@pytest.fixture
def south_dataset(personas):
    from registry.models import Dataset
    from registry.services import record_create

    steward = personas["engineer_south"]
    return record_create(model=Dataset, actor=steward, fields={"name": "South PACS", "institution": steward.institution, "modality": "CR"})


@pytest.mark.django_db
def test_a_steward_defines_a_dicomweb_source_without_credentials_in_the_database(south_dataset, personas, api_client):
    client = api_client(personas["engineer_south"])
    assert client.get(f"/api/datasets/{south_dataset.pk}/dicomweb/").json() == {
        "detail": "South PACS reads a folder, not a PACS: no DICOMweb source."
    }

    response = client.put(f"/api/datasets/{south_dataset.pk}/dicomweb/", _source(), format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["labels"] == {"key": "StudyInstanceUID", "label_names": ["effusion"], "n_rows": 2}
    assert (body["body_part"], body["credentials_env"], body["manifests"]) == ("CHEST", "SOUTH_PACS", [])
    assert client.get(f"/api/datasets/{south_dataset.pk}/").json()["dicomweb"]["labels_sha256"] == body["labels_sha256"]
    assert client.get(f"/api/datasets/{south_dataset.pk}/dicomweb/").json() == body
    again = client.put(f"/api/datasets/{south_dataset.pk}/dicomweb/", _source(study_dates="20240101-"), format="json")
    assert again.json()["study_dates"] == "20240101-" and again.json()["labels_sha256"] == body["labels_sha256"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields,field,fragment",
    [
        ({"base_url": "ftp://pacs.example.org/dicom-web"}, "base_url", "http"),
        ({"base_url": "not a url"}, "base_url", "valid URL"),
        ({"study_dates": "2024-01-01"}, "study_dates", "DICOM date or range"),
        ({"study_dates": "20241231-20240101"}, "study_dates", "end after it starts"),
        ({"modality": "c r"}, "modality", "DICOM modality code"),
        ({"credentials_env": "north pacs"}, "credentials_env", "environment variable prefix"),
        ({"accession_numbers": ["A1", "A1"]}, "accession_numbers", "listed twice"),
        ({"accession_numbers": ["x" * 17]}, "accession_numbers", "no more than 16"),
        ({"labels": [{"StudyInstanceUID": "abc", "effusion": 1}]}, "labels", "not a DICOM UID"),
        ({"labels": []}, "labels", "at least 1"),
    ],
)
def test_a_bad_definition_is_a_400_naming_the_field(fields, field, fragment, south_dataset, personas, api_client):
    response = api_client(personas["engineer_south"]).put(f"/api/datasets/{south_dataset.pk}/dicomweb/", _source(**fields), format="json")
    assert response.status_code == 400, response.content
    assert fragment in str(response.json()[field])
    assert not hasattr(type(south_dataset).objects.get(pk=south_dataset.pk), "dicomweb")


@pytest.mark.django_db
def test_a_folder_dataset_is_not_also_a_query(south_dataset, personas, api_client, settings, tmp_path):
    from registry.services import record_update

    (tmp_path / "data" / "south").mkdir(parents=True)
    settings.RADTRUST_DATA_ROOTS = [str(tmp_path / "data")]
    record_update(instance=south_dataset, fields={"location": str(tmp_path / "data" / "south")})
    response = api_client(personas["engineer_south"]).put(f"/api/datasets/{south_dataset.pk}/dicomweb/", _source(), format="json")
    assert response.status_code == 400 and "clear the location" in str(response.json()["location"])


@pytest.mark.django_db
def test_an_engineer_of_another_institution_neither_sees_nor_defines_the_source(south_dataset, personas, api_client):
    client = api_client(personas["engineer"])
    assert client.put(f"/api/datasets/{south_dataset.pk}/dicomweb/", _source(), format="json").status_code == 404
    assert client.get(f"/api/datasets/{south_dataset.pk}/dicomweb/").status_code == 404
    assert api_client(personas["clinician_north"]).get(f"/api/datasets/{south_dataset.pk}/dicomweb/").status_code == 403


@pytest.mark.django_db
def test_a_run_on_a_pacs_that_does_not_answer_is_refused_and_nothing_is_stored(run_setup, south_dataset, personas):
    from django.core.exceptions import ValidationError

    from registry.dicomweb import dicomweb_source_set
    from registry.models import DicomwebManifest
    from tests.factories import DataUseGrantFactory
    from validation.models import ValidationRun
    from validation.services import run_create

    DataUseGrantFactory(dataset=south_dataset, grantee=run_setup["model"].provider)
    dicomweb_source_set(
        actor=personas["engineer_south"],
        dataset=south_dataset,
        base_url=f"http://127.0.0.1:{free_port()}/dicom-web",
        labels=labels_table(_source()["labels"]),
    )
    with pytest.raises(ValidationError, match="South PACS could not be resolved in its PACS: Instance search: the PACS does not answer"):
        run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=south_dataset)
    assert not ValidationRun.objects.filter(dataset=south_dataset).exists() and not DicomwebManifest.objects.exists()


@pytest.mark.django_db
def test_the_pacs_page_saves_a_source_from_an_uploaded_csv_and_shows_field_errors(south_dataset, personas, client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(personas["engineer_south"])
    url = f"/datasets/{south_dataset.pk}/pacs/"
    form = {"base_url": "https://pacs.south.example/dicom-web", "modality": "CR", "study_dates": "20240101-", "accession_numbers": "A1\nA2"}

    bad = client.post(url, {**form, "study_dates": "2024", "labels": SimpleUploadedFile("l.csv", b"StudyInstanceUID,effusion\n1.2.3,7\n")})
    assert bad.status_code == 400
    assert "row 1: the label &#x27;effusion&#x27; must be 0 or 1" in bad.content.decode()
    assert not hasattr(type(south_dataset).objects.get(pk=south_dataset.pk), "dicomweb")

    saved = client.post(url, {**form, "labels": SimpleUploadedFile("l.csv", f"StudyInstanceUID,effusion\n{UID}.0,1\n".encode())})
    assert saved.status_code == 302
    source = type(south_dataset).objects.get(pk=south_dataset.pk).dicomweb
    assert (source.accession_numbers, source.labels["rows"], source.study_dates) == (["A1", "A2"], {f"{UID}.0": [1]}, "20240101-")
    assert "https://pacs.south.example/dicom-web" in client.get(url).content.decode()
