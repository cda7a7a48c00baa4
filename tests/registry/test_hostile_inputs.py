"""Hostile registry input is refused on the way in: a 400 naming the field, never a 500, never a value
stored for a run to trip over later, and never the server's own paths or the database's own words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.db import DataError, IntegrityError

from radtrust_engine.preprocessing import MAX_SIZE
from registry.datasheets import MAX_COUNT
from registry.models import Dataset
from tests.factories import DatasetFactory, FoundationModelFactory
from tests.registry.test_version_upload_api import assert_nothing_written, error, files_of, upload

pytestmark = pytest.mark.django_db

DATASETS = "/api/datasets/"


@pytest.fixture
def vendor_model(institutions):
    return FoundationModelFactory(provider=institutions["vendor"])


@pytest.fixture
def engineer(api_client, personas):
    return api_client(personas["engineer"])


@pytest.fixture
def data_root(settings) -> Path:
    root = Path(settings.RADTRUST_DATA_ROOTS[0])
    root.mkdir(parents=True, exist_ok=True)
    return root


def _dataset(client, institution, **fields):
    return client.post(DATASETS, {"name": "CXR set", "institution": institution.pk, "modality": "DX", **fields}, format="json")


# --- Preprocessing specs: the engine's rule, at upload ---------------------------------


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"resize": [-1, 10**12]}, f"whole numbers from 1 to {MAX_SIZE}"),
        ({"resize": [1, 10**12]}, f"whole numbers from 1 to {MAX_SIZE}"),
        ({"resize": [MAX_SIZE + 1, 64]}, f"whole numbers from 1 to {MAX_SIZE}"),
        ({"resize": [4096, 4096, 4096]}, "values per channel"),
        ({"resize": [224.5, 224]}, "whole numbers"),
        ({"resize": "224x224"}, "'resize' must be [height, width]"),
        ({"resize": [True, 224]}, "whole numbers"),
        ({"window": {"center": 40, "width": 0}}, "'window.width' must lie between"),
        ({"window": {"center": 1e300, "width": 400}}, "'window.center' must lie between"),
        ({"window": [40, 400]}, "'window' must be"),
        ({"normalise": {"mean": 0.5, "std": 1e-300}}, "'normalise.std' must lie between"),
        ({"normalise": {"mean": "0.5", "std": 0.25}}, "must be a finite number"),
        ({"normalise": "zscore"}, "'normalise' must be 'minmax'"),
        ({"channels": ["3xHxW"]}, "'channels' must be one of"),
        ({"resise": [224, 224]}, "did you mean 'resize'"),
    ],
)
def test_a_preprocessing_spec_a_run_would_refuse_is_refused_at_upload(engineer, vendor_model, onnx_files, spec, fragment):
    response = upload(engineer, vendor_model, files_of(onnx_files["inline"]), preprocessing=json.dumps(spec))
    assert fragment in error(response, "preprocessing")
    assert_nothing_written()


def test_a_good_spec_is_kept_as_given(engineer, vendor_model, onnx_files):
    spec = {"resize": [64, 64], "window": {"center": 40, "width": 400}, "normalise": {"mean": 0.5, "std": 0.25}, "channels": "1xHxW"}
    response = upload(engineer, vendor_model, files_of(onnx_files["inline"]), preprocessing=json.dumps(spec))
    assert response.status_code == 201, response.content
    assert response.json()["preprocessing"] == spec


# --- Dataset locations: a folder under a data root, or a description -------------------


@pytest.mark.parametrize("kind", ["outside", "etc", "link_out", "dotdot", "relative", "home", "windows"])
def test_a_location_a_worker_would_refuse_is_refused_when_stored(engineer, institutions, data_root, tmp_path_factory, kind):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (data_root / "link").symlink_to(elsewhere, target_is_directory=True)
    location = {
        "outside": str(elsewhere),
        "etc": "/etc",
        "link_out": str(data_root / "link" / "chest"),
        "dotdot": f"{data_root}/../../etc",
        "relative": "./data/chest",
        "home": "~/chest",
        "windows": "C:\\data\\chest",
    }[kind]
    response = _dataset(engineer, institutions["vendor"], location=location)
    assert response.status_code == 400, response.content
    body = json.dumps(response.json())
    assert list(response.json()) == ["location"]
    assert str(elsewhere) not in body and str(data_root) not in body  # neither where a link leads nor the roots
    assert not Dataset.objects.exists()


def test_a_location_under_a_data_root_or_a_description_is_stored(engineer, institutions, data_root):
    (data_root / "chest").mkdir()
    folder = _dataset(engineer, institutions["vendor"], location=str(data_root / "chest"))
    assert folder.status_code == 201, folder.content
    described = _dataset(engineer, institutions["vendor"], name="Synthetic", location="Generated in memory at training time (seed 7).")
    assert described.status_code == 201, described.content


def test_a_location_with_a_control_character_is_refused(engineer, institutions, data_root):
    response = _dataset(engineer, institutions["vendor"], location=f"{data_root}/chest\x07")
    assert "control character" in json.dumps(response.json()["location"])
    nul = _dataset(engineer, institutions["vendor"], location=f"{data_root}/chest\x00")
    assert nul.status_code == 400 and list(nul.json()) == ["location"]


def test_the_admin_refuses_a_location_outside_the_data_roots(personas, institutions, client, tmp_path_factory):
    officer = personas["officer"]
    officer.is_staff = True
    officer.save()
    dataset = DatasetFactory(institution=institutions["vendor"], location="")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    client.force_login(officer)
    form = client.get(f"/admin/registry/dataset/{dataset.pk}/change/").context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    for name in ("scanners", "protocols", "demographics"):
        data[name] = json.dumps(data[name]) if not isinstance(data[name], str) else data[name]
    response = client.post(f"/admin/registry/dataset/{dataset.pk}/change/", {**data, "location": str(elsewhere)})
    assert response.status_code == 200  # the form again, with its error
    assert "outside the data roots" in str(response.context["adminform"].form.errors["location"])
    assert str(elsewhere) not in response.content.decode().replace(f'value="{elsewhere}"', "")  # only the user's own input echoes
    dataset.refresh_from_db()
    assert dataset.location == ""


# --- Datasheet numbers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("demographics", {"sex": {"F": 10**30}}),
        ("demographics", {"age_band": {"18-40": -1}}),
        ("demographics", {"sex": {"F": 1.5}}),
        ("scanners", [{"manufacturer": "GE", "count": 10**30}]),
        ("protocols", {"PA": MAX_COUNT + 1}),
        ("patient_count", 10**12),
        ("study_count", -3),
        ("image_count", MAX_COUNT + 1),
        ("rater_count", 10**6),
        ("collection_start", "0000-01-01"),
    ],
)
def test_implausible_datasheet_numbers_are_field_errors(engineer, institutions, field, value):
    response = _dataset(engineer, institutions["vendor"], **{field: value})
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]
    assert not Dataset.objects.exists()


def test_the_largest_plausible_counts_are_accepted(engineer, institutions):
    response = _dataset(engineer, institutions["vendor"], patient_count=MAX_COUNT, demographics={"sex": {"F": MAX_COUNT, "M": 0}})
    assert response.status_code == 201, response.content


def test_a_collection_period_out_of_order_is_refused(engineer, institutions):
    response = _dataset(engineer, institutions["vendor"], collection_start="2024-02-01", collection_end="2024-01-31")
    assert response.status_code == 400 and "end after it starts" in json.dumps(response.json())


# --- The database's own words stay in the log ------------------------------------------


@pytest.mark.parametrize(
    ("refusal", "status"),
    [
        (IntegrityError('duplicate key value violates unique constraint "registry_dataset_name_key" DETAIL: Key (name)=(CXR set)'), 409),
        (DataError("value too long for type character varying(160) in registry_dataset.name"), 400),
    ],
)
def test_a_database_refusal_does_not_reach_the_user_verbatim(engineer, institutions, monkeypatch, refusal, status):
    """A race validation cannot see (two requests at once), or a limit it did not foresee."""

    def refuse(self, *args, **kwargs):
        raise refusal

    monkeypatch.setattr(Dataset, "save", refuse)
    response = _dataset(engineer, institutions["vendor"])
    assert response.status_code == status, response.content
    body = json.dumps(response.json())
    assert "registry_dataset" not in body and "constraint" not in body and "varying" not in body


# --- Upload errors name the uploaded files, not the staging folder ------------------------


def test_a_checker_message_quoting_the_staging_folder_names_the_file_only(engineer, vendor_model, onnx_files, monkeypatch, settings):
    import onnx

    def refuse(path, *args, **kwargs):
        folder = Path(path).parent
        raise onnx.checker.ValidationError(f"Data of TensorProto (name: w) should be stored in {folder}/w.bin, but it is not accessible")

    monkeypatch.setattr(onnx.checker, "check_model", refuse)
    message = error(upload(engineer, vendor_model, files_of(onnx_files["inline"])), "artifact")
    assert "should be stored in w.bin" in message
    assert ".staging" not in message and str(settings.MEDIA_ROOT) not in message
    assert_nothing_written()
