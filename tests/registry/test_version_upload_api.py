"""``POST /api/model-versions/``: multipart upload of an ONNX model and its external data.

Every refusal is checked for its status, the field it names, a message that says what
to fix, and that nothing was written: no ``ModelVersion`` row and no file under
``MEDIA_ROOT/artifacts`` (staging folders included).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import stat
from pathlib import Path

import onnx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from registry.models import ModelVersion
from registry.services import artifact_root
from tests.bad_artifacts import graph_with_undefined_input, png_bytes, torch_save_bytes, zip_bytes
from tests.factories import FoundationModelFactory

URL = "/api/model-versions/"
SCHEMA = {"class_names": ["pneumothorax"], "thresholds": {"pneumothorax": 0.5}}
TINY_CNN_PARAMETERS = (8 * 1 * 3 * 3 + 8) + (16 * 8 * 3 * 3 + 16) + (16 * 1 + 1)

pytestmark = pytest.mark.django_db


# --- helpers --------------------------------------------------------------------------


def leftovers() -> list[str]:
    """Every path under the artifact root, except the (empty) parent of the staging folders."""
    root = artifact_root()
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p != root / ".staging")


def assert_nothing_written() -> None:
    assert ModelVersion.objects.count() == 0
    assert leftovers() == []


def set_sha256(files: list[tuple[str, bytes]]) -> str:
    lines = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def files_of(paths: list[Path]) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in paths]


def upload(client, foundation_model, files: list[tuple[str, bytes]], *, version: str = "1.0.0", **fields):
    """POST a version: the first file is the artifact, the rest its external data."""
    data = {
        "foundation_model": foundation_model.pk,
        "version": version,
        "artifact": SimpleUploadedFile(files[0][0], files[0][1]),
        "output_schema": json.dumps(fields.pop("output_schema", SCHEMA)),
        **fields,
    }
    if len(files) > 1:
        data["external_data"] = [SimpleUploadedFile(name, content) for name, content in files[1:]]
    return client.post(URL, data, format="multipart")


def raw_multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart body written by hand, so a file name reaches the server exactly as given."""
    boundary = "radtrust-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    for field, filename, content in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts.append(head.encode() + content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def error(response, field: str) -> str:
    """The first message the 400 body gives for ``field`` (and assert it is the only field named)."""
    assert response.status_code == 400, response.content
    body = response.json()
    assert list(body) == [field], body
    return body[field][0]


@pytest.fixture
def vendor_model(institutions):
    return FoundationModelFactory(provider=institutions["vendor"])


@pytest.fixture
def engineer(api_client, personas):
    return api_client(personas["engineer"])


# --- accepted uploads -------------------------------------------------------------------


def test_upload_inline_model_creates_a_draft_with_its_signature(engineer, vendor_model, onnx_files):
    files = files_of(onnx_files["inline"])
    declared = onnx.load(str(onnx_files["inline"][0]))
    response = upload(engineer, vendor_model, files, release_notes="First release.", preprocessing=json.dumps({"resize": [64, 64]}))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["artifact_sha256"] == set_sha256(files)
    assert body["artifact_files"] == [
        {"name": "model.onnx", "sha256": hashlib.sha256(files[0][1]).hexdigest(), "size": len(files[0][1]), "role": "model"}
    ]
    assert body["artifact_size"] == len(files[0][1])
    assert body["opset"] == next(o.version for o in declared.opset_import if o.domain in {"", "ai.onnx"})
    assert body["ir_version"] == declared.ir_version
    assert body["inputs"] == [{"name": "image", "dtype": "float32", "shape": ["batch", 1, 64, 64]}]
    assert body["outputs"] == [{"name": "logits", "dtype": "float32", "shape": ["batch", 1]}]
    assert body["parameter_count"] == TINY_CNN_PARAMETERS == 1265
    assert (body["status"], body["created_by"], body["version"]) == ("draft", "engineer", "1.0.0")
    assert (body["output_schema"], body["preprocessing"], body["release_notes"]) == (SCHEMA, {"resize": [64, 64]}, "First release.")
    assert ModelVersion.objects.get().pk == body["id"]


def test_upload_stores_files_read_only_at_their_content_address(engineer, vendor_model, onnx_files):
    files = files_of(onnx_files["inline"])
    sha = upload(engineer, vendor_model, files).json()["artifact_sha256"]
    stored = artifact_root() / sha[:2] / sha / "model.onnx"
    assert stored.read_bytes() == files[0][1]
    assert stat.S_IMODE(stored.stat().st_mode) == 0o444
    assert leftovers() == [sha[:2], f"{sha[:2]}/{sha}", f"{sha[:2]}/{sha}/model.onnx"]


def test_upload_model_with_external_data_hashes_both_files(engineer, vendor_model, onnx_files):
    files = files_of(onnx_files["external"])
    response = upload(engineer, vendor_model, files)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["artifact_sha256"] == set_sha256(files)
    assert [(f["name"], f["role"], f["sha256"], f["size"]) for f in body["artifact_files"]] == [
        (name, role, hashlib.sha256(data).hexdigest(), len(data)) for (name, data), role in zip(files, ["model", "external_data"])
    ]
    assert body["parameter_count"] == TINY_CNN_PARAMETERS
    folder = artifact_root() / body["artifact_sha256"][:2] / body["artifact_sha256"]
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "model.onnx.data"]


def test_upload_of_an_identical_artifact_as_a_second_version_reuses_the_folder(engineer, vendor_model, onnx_files):
    files = files_of(onnx_files["external"])
    first = upload(engineer, vendor_model, files, version="1.0.0").json()
    second = upload(engineer, vendor_model, files, version="1.0.1").json()
    sha = first["artifact_sha256"]
    assert second["artifact_sha256"] == sha
    assert ModelVersion.objects.count() == 2
    assert leftovers() == [sha[:2], f"{sha[:2]}/{sha}", f"{sha[:2]}/{sha}/model.onnx", f"{sha[:2]}/{sha}/model.onnx.data"]


def test_upload_never_runs_the_model(engineer, vendor_model, onnx_files, monkeypatch):
    import onnxruntime

    def refuse(*args, **kwargs):
        raise AssertionError("the upload must not execute the model")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)
    assert upload(engineer, vendor_model, files_of(onnx_files["external"])).status_code == 201


# --- refused artifacts ----------------------------------------------------------------------


def test_upload_without_its_external_data_names_the_missing_file(engineer, vendor_model, onnx_files):
    response = upload(engineer, vendor_model, files_of(onnx_files["external"][:1]))
    assert error(response, "external_data") == "The model references external data files that were not uploaded: model.onnx.data."
    assert_nothing_written()


def test_upload_with_an_unreferenced_extra_file_names_it(engineer, vendor_model, onnx_files):
    files = [*files_of(onnx_files["external"]), ("notes.bin", b"\0" * 32)]
    response = upload(engineer, vendor_model, files)
    assert error(response, "external_data") == "These files are not referenced by the model: notes.bin. Upload only its external data."
    assert_nothing_written()


def test_upload_with_truncated_external_data_is_refused(engineer, vendor_model, onnx_files):
    (model, data) = files_of(onnx_files["external"])
    response = upload(engineer, vendor_model, [model, (data[0], data[1][:-100])])
    message = error(response, "external_data")
    assert message.startswith("External data file 'model.onnx.data' is too short for tensor")
    assert_nothing_written()


@pytest.mark.parametrize(
    ("payload", "phrase"),
    [
        pytest.param(bytes(range(256)) * 16, "not a valid ONNX model: it could not be parsed", id="random-bytes"),
        pytest.param("truncated", "not a valid ONNX model: it could not be parsed", id="truncated-protobuf"),
        pytest.param(png_bytes(), "not a valid ONNX model: it could not be parsed", id="png"),
        pytest.param(b"patient_id,label\n1,0\n", "not a valid ONNX model: it could not be parsed", id="text"),
        pytest.param(b"", "The submitted file is empty.", id="empty"),  # DRF's FileField refuses it first
        pytest.param(pickle.dumps({"weights": [1.0, 2.0]}), "This is a Python pickle, which RadTrust never loads", id="pickle"),
        pytest.param(
            zip_bytes(), "This is a zip archive (a PyTorch checkpoint?), not an ONNX model: export it with torch.onnx.export.", id="zipfile"
        ),
        pytest.param("torch.save", "This is a zip archive", id="torch-save"),
        pytest.param(graph_with_undefined_input(), "onnx.checker rejected the model", id="checker-rejects"),
    ],
)
def test_upload_of_what_is_not_an_onnx_model_is_refused(engineer, vendor_model, onnx_files, payload, phrase):
    if payload == "truncated":
        payload = onnx_files["inline"][0].read_bytes()[:5000]
    elif payload == "torch.save":
        payload = torch_save_bytes()
    response = upload(engineer, vendor_model, [("model.onnx", payload)])
    assert phrase in error(response, "artifact")
    assert_nothing_written()


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "model.pkl"])
def test_upload_with_a_pickle_format_name_is_refused_whatever_the_content(engineer, vendor_model, onnx_files, name):
    response = upload(engineer, vendor_model, [(name, onnx_files["inline"][0].read_bytes())])
    assert error(response, "artifact") == (
        f"{name!r} is a format that loads by unpickling; RadTrust accepts only ONNX (.onnx) and its external data files."
    )
    assert_nothing_written()


def test_upload_of_a_model_not_named_onnx_is_refused(engineer, vendor_model, onnx_files):
    response = upload(engineer, vendor_model, [("model.bin", onnx_files["inline"][0].read_bytes())])
    assert error(response, "artifact") == "Upload the model as an ONNX file (.onnx)."
    assert_nothing_written()


@pytest.mark.parametrize(
    ("files", "field"), [([("model v1.onnx", b"x")], "artifact"), ([("model.onnx", b"x"), (".model.onnx.data", b"d")], "external_data")]
)
def test_upload_with_an_unsafe_file_name_is_a_field_error_not_a_crash(engineer, vendor_model, files, field):
    response = upload(engineer, vendor_model, files)
    assert "is not allowed: use letters, digits, '.', '_' or '-' and no folders." in error(response, field)
    assert_nothing_written()


def test_upload_with_a_traversal_file_name_cannot_write_outside_the_artifact_folder(engineer, vendor_model, onnx_files, isolated_storage):
    body, content_type = raw_multipart(
        {"foundation_model": str(vendor_model.pk), "version": "1.0.0", "output_schema": json.dumps(SCHEMA)},
        [("artifact", "../../evil.onnx", onnx_files["inline"][0].read_bytes())],
    )
    response = engineer.generic("POST", URL, body, content_type=content_type)
    # Django's multipart parser strips folders from upload names before RadTrust sees them.
    assert response.status_code == 201, response.content
    sha = response.json()["artifact_sha256"]
    assert [f["name"] for f in response.json()["artifact_files"]] == ["evil.onnx"]
    assert leftovers() == [sha[:2], f"{sha[:2]}/{sha}", f"{sha[:2]}/{sha}/evil.onnx"]
    assert list(Path(isolated_storage).rglob("evil.onnx")) == [artifact_root() / sha[:2] / sha / "evil.onnx"]


def test_upload_over_the_size_limit_is_refused(engineer, vendor_model, onnx_files, settings):
    settings.RADTRUST_MAX_ARTIFACT_BYTES = 1000
    response = upload(engineer, vendor_model, files_of(onnx_files["inline"]))
    assert error(response, "artifact") == "The artifact is larger than the limit of 1000 bytes (RADTRUST_MAX_ARTIFACT_BYTES)."
    assert_nothing_written()


def test_upload_whose_request_body_is_over_the_limit_is_refused_before_reading(engineer, vendor_model, settings):
    settings.RADTRUST_MAX_ARTIFACT_BYTES = 1
    response = upload(engineer, vendor_model, [("model.onnx", b"\0" * (1024 * 1024 + 4096))])
    assert error(response, "artifact") == "The upload is larger than the limit of 1 bytes (RADTRUST_MAX_ARTIFACT_BYTES)."
    assert_nothing_written()


# --- refused fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "phrase"),
    [
        ({"version": "v1"}, "version", "Use a semantic version such as 1.2.0"),
        ({"output_schema": "{not json"}, "output_schema", "Value must be valid JSON."),
        ({"output_schema": ["pneumothorax"]}, "output_schema", "Expected a JSON object, not a JSON array."),
        ({"output_schema": {"class_names": ["a"], "thresholds": {"a": 2}}}, "output_schema", "must be a number between 0 and 1"),
        ({"output_schema": {}}, "output_schema", "This field cannot be blank."),
        ({"preprocessing": json.dumps([1, 2])}, "preprocessing", "Expected a JSON object, not a JSON array."),
    ],
)
def test_upload_with_an_invalid_field_is_refused_before_storing(engineer, vendor_model, onnx_files, fields, field, phrase):
    if "output_schema" in fields and not isinstance(fields["output_schema"], str):
        fields = {**fields, "output_schema": json.dumps(fields["output_schema"])}
    response = engineer.post(
        URL,
        {
            "foundation_model": vendor_model.pk,
            "version": "1.0.0",
            "artifact": SimpleUploadedFile("model.onnx", onnx_files["inline"][0].read_bytes()),
            "output_schema": json.dumps(SCHEMA),
            **fields,
        },
        format="multipart",
    )
    assert phrase in error(response, field)
    assert_nothing_written()


# --- versions and lineage ------------------------------------------------------------------


def test_upload_of_an_existing_version_number_is_a_conflict(engineer, vendor_model, onnx_files):
    first = upload(engineer, vendor_model, files_of(onnx_files["inline"]))
    response = upload(engineer, vendor_model, files_of(onnx_files["external"]))
    assert response.status_code == 409
    assert response.json() == {"detail": f"{vendor_model.name} already has version 1.0.0; choose a new version number.", "code": "duplicate_version"}
    assert list(ModelVersion.objects.values_list("pk", flat=True)) == [first.json()["id"]]
    sha = first.json()["artifact_sha256"]
    assert leftovers() == [sha[:2], f"{sha[:2]}/{sha}", f"{sha[:2]}/{sha}/model.onnx"]


def test_same_version_number_for_another_model_is_accepted(engineer, vendor_model, institutions, onnx_files):
    other = FoundationModelFactory(provider=institutions["vendor"])
    assert upload(engineer, vendor_model, files_of(onnx_files["inline"])).status_code == 201
    response = upload(engineer, other, files_of(onnx_files["inline"]))
    assert response.status_code == 201
    assert response.json()["foundation_model"] == other.pk


def test_parent_from_another_model_is_refused_on_parent(engineer, vendor_model, institutions, onnx_files):
    other = FoundationModelFactory(provider=institutions["vendor"])
    foreign = upload(engineer, other, files_of(onnx_files["inline"])).json()
    response = upload(engineer, vendor_model, files_of(onnx_files["external"]), version="2.0.0", parent=foreign["id"])
    assert error(response, "parent") == (
        f"The parent {other.name} 1.0.0 belongs to another model; a parent must be a version of {vendor_model.name}."
    )
    assert list(ModelVersion.objects.values_list("pk", flat=True)) == [foreign["id"]]
    sha = foreign["artifact_sha256"]
    assert leftovers() == [sha[:2], f"{sha[:2]}/{sha}", f"{sha[:2]}/{sha}/model.onnx"]


def test_lineage_lists_the_parent_chain_newest_first(engineer, vendor_model, onnx_files):
    base = upload(engineer, vendor_model, files_of(onnx_files["inline"]), version="1.0.0").json()
    middle = upload(engineer, vendor_model, files_of(onnx_files["external"]), version="1.1.0", parent=base["id"]).json()
    newest = upload(engineer, vendor_model, files_of(onnx_files["inline"]), version="1.2.0", parent=middle["id"]).json()
    assert newest["parent"] == middle["id"]
    response = engineer.get(f"{URL}{newest['id']}/lineage/")
    assert response.status_code == 200
    assert [(e["id"], e["version"], e["parent"]) for e in response.json()] == [
        (newest["id"], "1.2.0", middle["id"]),
        (middle["id"], "1.1.0", base["id"]),
        (base["id"], "1.0.0", None),
    ]
    assert [e["artifact_sha256"] for e in response.json()] == [newest["artifact_sha256"], middle["artifact_sha256"], base["artifact_sha256"]]


# --- who may upload -----------------------------------------------------------------------------


def test_engineer_of_another_institution_cannot_name_the_vendors_model(api_client, personas, vendor_model, onnx_files):
    # The vendor's model is outside the engineer's scope, so it is "not found" rather than revealed.
    response = upload(api_client(personas["engineer_south"]), vendor_model, files_of(onnx_files["inline"]))
    assert error(response, "foundation_model") == f'Invalid pk "{vendor_model.pk}" - object does not exist.'
    assert_nothing_written()


def test_clinician_may_not_upload(api_client, personas, vendor_model, onnx_files):
    response = upload(api_client(personas["clinician_north"]), vendor_model, files_of(onnx_files["inline"]))
    assert response.status_code == 403
    assert response.json() == {"detail": "Your role does not allow this action."}
    assert_nothing_written()


def test_anonymous_upload_is_refused(api_client, vendor_model, onnx_files):
    response = upload(api_client(None), vendor_model, files_of(onnx_files["inline"]))
    # Session authentication comes first, and it sends no WWW-Authenticate challenge: DRF answers 403.
    assert response.status_code == 403
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert_nothing_written()


def test_non_finite_numbers_in_preprocessing_are_refused_before_anything_is_stored(engineer, vendor_model, onnx_files):
    response = upload(engineer, vendor_model, files_of(onnx_files["inline"]), preprocessing='{"mean": 1e999}')
    assert "finite" in error(response, "preprocessing")
    assert_nothing_written()


@pytest.mark.django_db
def test_a_content_length_that_is_not_a_number_is_a_400_not_a_500(engineer, vendor_model):
    response = engineer.post(URL, {"foundation_model": vendor_model.pk, "version": "1.0.0"}, format="multipart", CONTENT_LENGTH="12abc")
    assert response.status_code == 400
    assert "Content-Length" in response.json()["non_field_errors"][0]
