"""ONNX artifacts at engine and service level: inspect, stage, store, verify, register.

The engine tests (``radtrust_engine.artifacts``) need no database; the ``version_register``
tests check that a refused upload leaves neither a row nor a file behind.
"""

from __future__ import annotations

import hashlib
import io
import stat
from dataclasses import asdict
from pathlib import Path

import onnx
import pytest
from django.core.exceptions import ValidationError

from core.errors import Conflict
from radtrust_engine import artifacts
from radtrust_engine.artifacts import ArtifactError, check_name, ingest, inspect_onnx, stage_uploads, verify_stored
from registry.choices import VersionStatus
from registry.models import ModelVersion
from registry.services import artifact_root, version_register
from tests.bad_artifacts import MALFORMED_KINDS, graph_with_undefined_input, malformed
from tests.factories import FoundationModelFactory

# Conv2d(1, 8, 3x3) + Conv2d(8, 16, 3x3) + Linear(16, 1), weights and biases.
TINY_CNN_PARAMETERS = (8 * 1 * 3 * 3 + 8) + (16 * 8 * 3 * 3 + 16) + (16 * 1 + 1)
LIMIT = 10 * 1024 * 1024


# --- helpers --------------------------------------------------------------------------


def leftovers(root: Path) -> list[str]:
    """Every path under the artifact root, except the (empty) parent of the staging folders."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p != root / ".staging")


def as_uploads(paths: list[Path]) -> list[tuple[str, io.BytesIO]]:
    return [(p.name, io.BytesIO(p.read_bytes())) for p in paths]


def expected_set_sha256(paths: list[Path]) -> str:
    """The documented set hash, computed independently: sha256 of sorted ``"<sha256>  <name>\\n"`` lines."""
    lines = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in sorted(paths, key=lambda p: p.name))
    return hashlib.sha256(lines.encode()).hexdigest()


def write_model(folder: Path, data: bytes, name: str = "model.onnx") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def edit_external_entry(model_path: Path, tensor: str, key: str, value: str) -> None:
    """Rewrite one external-data key of one tensor in a model saved with external data."""
    model = onnx.load(str(model_path), load_external_data=False)
    initializer = next(t for t in model.graph.initializer if t.name == tensor)
    entry = next(e for e in initializer.external_data if e.key == key)
    entry.value = value
    onnx.save(model, str(model_path))


# --- inspect_onnx -------------------------------------------------------------------


def test_inspect_reads_signature_opset_and_exact_parameter_count(onnx_files):
    (path,) = onnx_files["inline"]
    declared = onnx.load(str(path))
    info = inspect_onnx(path, [])
    assert info.opset == next(o.version for o in declared.opset_import if o.domain in {"", "ai.onnx"})
    assert info.opset >= 18
    assert info.ir_version == declared.ir_version
    assert info.producer.startswith("pytorch")
    assert info.inputs == [{"name": "image", "dtype": "float32", "shape": ["batch", 1, 64, 64]}]
    assert info.outputs == [{"name": "logits", "dtype": "float32", "shape": ["batch", 1]}]
    assert info.parameter_count == TINY_CNN_PARAMETERS == 1265
    assert info.external_data is False


def test_inspect_hashes_model_as_a_set_of_one(onnx_files):
    (path,) = onnx_files["inline"]
    info = inspect_onnx(path, [])
    assert info.files == [artifacts.StoredFile("model.onnx", hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size, "model")]
    assert info.sha256 == expected_set_sha256([path])
    assert info.size == path.stat().st_size


def test_inspect_hashes_model_and_external_data_together(onnx_files):
    model, data = onnx_files["external"]
    info = inspect_onnx(model, [data])
    assert [(f.name, f.role) for f in info.files] == [("model.onnx", "model"), ("model.onnx.data", "external_data")]
    assert [f.sha256 for f in info.files] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in (model, data)]
    assert info.sha256 == expected_set_sha256([model, data])
    assert info.size == model.stat().st_size + data.stat().st_size
    assert info.external_data is True
    assert info.parameter_count == TINY_CNN_PARAMETERS


def test_set_sha256_ignores_order_but_not_names():
    a = artifacts.StoredFile("a.onnx", "1" * 64, 1, "model")
    b = artifacts.StoredFile("b.data", "2" * 64, 1, "external_data")
    renamed = artifacts.StoredFile("c.data", "2" * 64, 1, "external_data")
    assert artifacts.set_sha256([a, b]) == artifacts.set_sha256([b, a])
    assert artifacts.set_sha256([a, b]) != artifacts.set_sha256([a, renamed])


def test_inspect_refuses_model_whose_external_data_is_missing(onnx_copy):
    model, _ = onnx_copy("external")
    with pytest.raises(ArtifactError, match=r"not uploaded: model\.onnx\.data\.") as refusal:
        inspect_onnx(model, [])
    assert refusal.value.field == "external_data"


def test_inspect_refuses_unreferenced_extra_file(onnx_copy, tmp_path):
    model, data = onnx_copy("external")
    extra = model.parent / "notes.bin"
    extra.write_bytes(b"\0" * 16)
    with pytest.raises(ArtifactError, match=r"not referenced by the model: notes\.bin\.") as refusal:
        inspect_onnx(model, [data, extra])
    assert refusal.value.field == "external_data"


def test_inspect_refuses_extra_file_next_to_an_inline_model(onnx_copy):
    (model,) = onnx_copy("inline")
    extra = model.parent / "model.onnx.data"
    extra.write_bytes(b"\0" * 16)
    with pytest.raises(ArtifactError, match=r"not referenced by the model: model\.onnx\.data") as refusal:
        inspect_onnx(model, [extra])
    assert refusal.value.field == "external_data"


def test_inspect_refuses_truncated_external_data(onnx_copy):
    model, data = onnx_copy("external")
    data.write_bytes(data.read_bytes()[:-10])
    with pytest.raises(ArtifactError, match=r"'model\.onnx\.data' is too short for tensor") as refusal:
        inspect_onnx(model, [data])
    assert refusal.value.field == "external_data"


@pytest.mark.parametrize("location", ["../model.onnx.data", "/etc/passwd", "sub/model.onnx.data"])
def test_inspect_refuses_external_data_outside_the_model_folder(onnx_copy, location):
    model, data = onnx_copy("external")
    edit_external_entry(model, "3.weight", "location", location)
    with pytest.raises(ArtifactError, match="outside the model folder") as refusal:
        inspect_onnx(model, [data])
    assert refusal.value.field == "artifact"


@pytest.mark.parametrize("offset", ["-200", "abc"])
def test_inspect_refuses_invalid_external_offset_instead_of_crashing(onnx_copy, offset):
    model, data = onnx_copy("external")
    edit_external_entry(model, "3.weight", "offset", offset)
    with pytest.raises(ArtifactError, match=r"Tensor '3\.weight' has an invalid external data entry") as refusal:
        inspect_onnx(model, [data])
    assert refusal.value.field == "artifact"


def test_inspect_refuses_external_length_shorter_than_the_tensor(onnx_copy):
    model, data = onnx_copy("external")
    edit_external_entry(model, "3.weight", "length", "8")
    with pytest.raises(ArtifactError, match=r"declares 8 bytes of external data, but its shape and type need 4608"):
        inspect_onnx(model, [data])


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_inspect_refuses_what_is_not_a_valid_onnx_model(onnx_files, tmp_path, kind):
    payload, phrase = malformed(onnx_files)[kind]
    path = write_model(tmp_path / kind, payload)
    with pytest.raises(ArtifactError, match=phrase) as refusal:
        inspect_onnx(path, [])
    assert refusal.value.field == "artifact"


def test_checker_refusal_names_the_undefined_input(tmp_path):
    path = write_model(tmp_path, graph_with_undefined_input())
    with pytest.raises(ArtifactError, match="'undefined'"):
        inspect_onnx(path, [])


# --- check_name -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.onnx", "model.onnx.data", "chest-fm_v2.1.onnx", "weights.bin"])
def test_check_name_accepts_plain_names(name):
    assert check_name(name, field="artifact") == name


@pytest.mark.parametrize(
    "name",
    ["../x.onnx", "..", "a/b.onnx", "/etc/passwd", "..\\x.onnx", ".hidden.onnx", "", "model v1.onnx", "model..onnx", "model.onnx\n", "C:model.onnx"],
)
def test_check_name_refuses_unsafe_names(name):
    with pytest.raises(ArtifactError, match="is not allowed: use letters, digits") as refusal:
        check_name(name, field="external_data")
    assert refusal.value.field == "external_data"


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "weights.PKL", "model.ckpt", "model.joblib", "model.pickle"])
def test_check_name_refuses_formats_that_unpickle(name):
    with pytest.raises(ArtifactError, match="loads by unpickling; RadTrust accepts only ONNX"):
        check_name(name, field="artifact")


# --- stage_uploads, ingest ------------------------------------------------------------


def test_ingest_stores_read_only_files_at_their_content_address(onnx_files, tmp_path):
    root = tmp_path / "artifacts"
    paths = onnx_files["external"]
    info = ingest(root, as_uploads(paths), max_bytes=LIMIT)
    folder = root / info.sha256[:2] / info.sha256
    assert info.sha256 == expected_set_sha256(paths)
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "model.onnx.data"]
    for path in paths:
        stored = folder / path.name
        assert stored.read_bytes() == path.read_bytes()
        assert stat.S_IMODE(stored.stat().st_mode) == 0o444
    assert leftovers(root) == [info.sha256[:2], f"{info.sha256[:2]}/{info.sha256}", *(f"{info.sha256[:2]}/{info.sha256}/{p.name}" for p in paths)]


def test_ingest_reuses_the_folder_of_an_identical_set(onnx_files, tmp_path):
    root = tmp_path / "artifacts"
    first = ingest(root, as_uploads(onnx_files["inline"]), max_bytes=LIMIT)
    second = ingest(root, as_uploads(onnx_files["inline"]), max_bytes=LIMIT)
    assert first == second
    assert leftovers(root) == [first.sha256[:2], f"{first.sha256[:2]}/{first.sha256}", f"{first.sha256[:2]}/{first.sha256}/model.onnx"]


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_ingest_refusal_leaves_no_file(onnx_files, tmp_path, kind):
    root = tmp_path / "artifacts"
    payload, _ = malformed(onnx_files)[kind]
    with pytest.raises(ArtifactError):
        ingest(root, [("model.onnx", io.BytesIO(payload))], max_bytes=LIMIT)
    assert leftovers(root) == []


def test_ingest_refuses_missing_external_data_and_leaves_no_file(onnx_files, tmp_path):
    root = tmp_path / "artifacts"
    with pytest.raises(ArtifactError, match=r"model\.onnx\.data"):
        ingest(root, as_uploads(onnx_files["external"][:1]), max_bytes=LIMIT)
    assert leftovers(root) == []


@pytest.mark.parametrize("uploads", [[("../x.onnx", b"data")], [("model.onnx", b"m"), ("../model.onnx.data", b"d")]])
def test_ingest_refuses_path_traversal_without_writing_anywhere(tmp_path, uploads):
    root = tmp_path / "artifacts"
    with pytest.raises(ArtifactError, match="is not allowed") as refusal:
        ingest(root, [(name, io.BytesIO(data)) for name, data in uploads], max_bytes=LIMIT)
    assert refusal.value.field == ("artifact" if len(uploads) == 1 else "external_data")
    assert leftovers(root) == []
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "model.onnx.data").exists()


def test_stage_refuses_a_set_over_the_limit_and_removes_what_it_wrote(onnx_files, tmp_path):
    root = tmp_path / "artifacts"
    with pytest.raises(ArtifactError, match=r"larger than the limit of 100 bytes \(RADTRUST_MAX_ARTIFACT_BYTES\)") as refusal:
        stage_uploads(root, as_uploads(onnx_files["inline"]), max_bytes=100)
    assert refusal.value.field == "artifact"
    assert leftovers(root) == []


def test_stage_limit_counts_the_whole_set(onnx_files, tmp_path):
    root = tmp_path / "artifacts"
    model, data = onnx_files["external"]
    with pytest.raises(ArtifactError, match="larger than the limit"):
        stage_uploads(root, as_uploads([model, data]), max_bytes=model.stat().st_size + data.stat().st_size - 1)
    assert leftovers(root) == []


def test_stage_accepts_a_set_exactly_at_the_limit(onnx_files, tmp_path):
    model, data = onnx_files["external"]
    staging = stage_uploads(tmp_path / "artifacts", as_uploads([model, data]), max_bytes=model.stat().st_size + data.stat().st_size)
    assert sorted(p.name for p in staging.iterdir()) == ["model.onnx", "model.onnx.data"]


def test_stage_refuses_two_files_with_one_name(tmp_path):
    root = tmp_path / "artifacts"
    with pytest.raises(ArtifactError, match="Two uploaded files share the name 'model.onnx'") as refusal:
        stage_uploads(root, [("model.onnx", io.BytesIO(b"a")), ("model.onnx", io.BytesIO(b"b"))], max_bytes=LIMIT)
    assert refusal.value.field == "external_data"
    assert leftovers(root) == []


def test_stage_removes_its_folder_when_an_upload_stream_breaks(tmp_path):
    class BrokenStream(io.RawIOBase):
        def read(self, size=-1):
            raise OSError("client went away")

    root = tmp_path / "artifacts"
    with pytest.raises(OSError, match="client went away"):
        stage_uploads(root, [("model.onnx", io.BytesIO(b"a")), ("model.onnx.data", BrokenStream())], max_bytes=LIMIT)
    assert leftovers(root) == []


# --- verify_stored ------------------------------------------------------------------------


@pytest.fixture
def stored_external(onnx_files, tmp_path):
    root = tmp_path / "artifacts"
    info = ingest(root, as_uploads(onnx_files["external"]), max_bytes=LIMIT)
    folder = root / info.sha256[:2] / info.sha256
    return root, info, folder, [asdict(f) for f in info.files]


def test_verify_stored_finds_an_intact_artifact_intact(stored_external):
    root, info, _, files = stored_external
    assert verify_stored(root, info.sha256, files) == []


def test_verify_stored_detects_a_tampered_file(stored_external):
    root, info, folder, files = stored_external
    data = folder / "model.onnx.data"
    data.chmod(0o644)
    raw = bytearray(data.read_bytes())
    raw[0] ^= 0xFF
    data.write_bytes(bytes(raw))
    assert verify_stored(root, info.sha256, files) == ["model.onnx.data does not match its sha256"]


def test_verify_stored_detects_a_missing_file(stored_external):
    root, info, folder, files = stored_external
    (folder / "model.onnx.data").unlink()
    assert verify_stored(root, info.sha256, files) == ["model.onnx.data is missing"]


def test_verify_stored_detects_an_extra_file(stored_external):
    root, info, folder, files = stored_external
    (folder / "notes.txt").write_text("planted")
    assert verify_stored(root, info.sha256, files) == ["notes.txt is not part of the artifact"]


def test_verify_stored_detects_a_file_list_that_does_not_hash_to_the_artifact(stored_external):
    root, info, _, files = stored_external
    assert verify_stored(root, info.sha256, files[:1]) == [
        "model.onnx.data is not part of the artifact",
        "the file list does not hash to the artifact's sha256",
    ]


def test_verify_stored_reports_every_file_of_a_vanished_folder(stored_external):
    root, info, _, files = stored_external
    assert verify_stored(root, "f" * 64, files) == [
        "model.onnx is missing",
        "model.onnx.data is missing",
        "the file list does not hash to the artifact's sha256",
    ]


# --- version_register -----------------------------------------------------------------


@pytest.fixture
def vendor_model(institutions):
    return FoundationModelFactory(provider=institutions["vendor"])


def register_bytes(personas, foundation_model, files: list[tuple[str, bytes]], *, version: str = "1.0.0", **kwargs) -> ModelVersion:
    """Call the service with in-memory files; output schema defaults to a valid one."""
    return version_register(
        actor=personas["engineer"],
        foundation_model=foundation_model,
        version=version,
        model_file=(files[0][0], io.BytesIO(files[0][1])),
        data_files=[(name, io.BytesIO(data)) for name, data in files[1:]],
        output_schema=kwargs.pop("output_schema", {"class_names": ["pneumothorax"], "thresholds": {"pneumothorax": 0.5}}),
        **kwargs,
    )


def files_of(paths: list[Path]) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in paths]


def assert_nothing_written() -> None:
    assert ModelVersion.objects.count() == 0
    assert leftovers(artifact_root()) == []


@pytest.mark.django_db
def test_register_inline_model_records_artifact_and_signature(register_version, vendor_model, personas, onnx_files):
    version = register_version(vendor_model)
    (path,) = onnx_files["inline"]
    assert version.status == VersionStatus.DRAFT
    assert version.created_by == personas["engineer"]
    assert version.artifact_sha256 == expected_set_sha256([path])
    assert version.artifact_files == [
        {"name": "model.onnx", "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "size": path.stat().st_size, "role": "model"}
    ]
    assert version.inputs == [{"name": "image", "dtype": "float32", "shape": ["batch", 1, 64, 64]}]
    assert version.outputs == [{"name": "logits", "dtype": "float32", "shape": ["batch", 1]}]
    assert version.parameter_count == TINY_CNN_PARAMETERS
    folder = artifact_root() / version.artifact_sha256[:2] / version.artifact_sha256
    assert (folder / "model.onnx").read_bytes() == path.read_bytes()


@pytest.mark.django_db
def test_register_external_model_stores_both_files(register_version, vendor_model, onnx_files):
    version = register_version(vendor_model, kind="external")
    assert version.opset >= 18
    assert [f["role"] for f in version.artifact_files] == ["model", "external_data"]
    assert [f["name"] for f in version.artifact_files] == ["model.onnx", "model.onnx.data"]
    assert version.artifact_sha256 == expected_set_sha256(onnx_files["external"])
    assert version.inputs[0]["name"] == "image"
    assert version.parameter_count == TINY_CNN_PARAMETERS
    assert verify_stored(artifact_root(), version.artifact_sha256, version.artifact_files) == []


@pytest.mark.django_db
def test_register_twice_with_identical_artifact_reuses_the_stored_folder(register_version, vendor_model):
    first = register_version(vendor_model, "1.0.0")
    second = register_version(vendor_model, "1.0.1")
    assert first.artifact_sha256 == second.artifact_sha256
    sha = first.artifact_sha256
    assert leftovers(artifact_root()) == [sha[:2], f"{sha[:2]}/{sha}", f"{sha[:2]}/{sha}/model.onnx"]


@pytest.mark.django_db
def test_register_refuses_missing_external_data_and_writes_nothing(personas, vendor_model, onnx_files):
    with pytest.raises(ValidationError) as refusal:
        register_bytes(personas, vendor_model, files_of(onnx_files["external"][:1]))
    assert list(refusal.value.message_dict) == ["external_data"]
    assert "model.onnx.data" in refusal.value.message_dict["external_data"][0]
    assert_nothing_written()


@pytest.mark.django_db
@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_register_refuses_malformed_artifact_and_writes_nothing(personas, vendor_model, onnx_files, kind):
    payload, phrase = malformed(onnx_files)[kind]
    with pytest.raises(ValidationError) as refusal:
        register_bytes(personas, vendor_model, [("model.onnx", payload)])
    assert list(refusal.value.message_dict) == ["artifact"]
    assert phrase in refusal.value.message_dict["artifact"][0]
    assert_nothing_written()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("files", "field", "phrase"),
    [
        ([("model.pt", b"onnx?")], "artifact", "loads by unpickling"),
        ([("model.bin", b"onnx?")], "artifact", "Upload the model as an ONNX file (.onnx)."),
        ([("../x.onnx", b"onnx?")], "artifact", "is not allowed"),
        ([("model.onnx", b"onnx?"), ("../model.onnx.data", b"d")], "external_data", "is not allowed"),
        ([("model.onnx", b"onnx?"), ("weights.pkl", b"d")], "external_data", "loads by unpickling"),
    ],
)
def test_register_refuses_unsafe_file_names_as_a_field_error(personas, vendor_model, files, field, phrase):
    with pytest.raises(ValidationError) as refusal:
        register_bytes(personas, vendor_model, files)
    assert list(refusal.value.message_dict) == [field]
    assert phrase in refusal.value.message_dict[field][0]
    assert_nothing_written()


@pytest.mark.django_db
def test_register_refuses_oversized_artifact_and_writes_nothing(personas, vendor_model, onnx_files, settings):
    settings.RADTRUST_MAX_ARTIFACT_BYTES = 1000
    with pytest.raises(ValidationError) as refusal:
        register_bytes(personas, vendor_model, files_of(onnx_files["inline"]))
    assert refusal.value.message_dict == {"artifact": ["The artifact is larger than the limit of 1000 bytes (RADTRUST_MAX_ARTIFACT_BYTES)."]}
    assert_nothing_written()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"version": "not-a-version"}, "version"),
        ({"output_schema": {}}, "output_schema"),
        ({"output_schema": ["pneumothorax"]}, "output_schema"),
        ({"output_schema": {"class_names": ["a", "a"]}}, "output_schema"),
        ({"preprocessing": ["resize"]}, "preprocessing"),
    ],
)
def test_register_refuses_invalid_fields_before_writing_any_file(personas, vendor_model, onnx_files, kwargs, field):
    with pytest.raises(ValidationError) as refusal:
        register_bytes(personas, vendor_model, files_of(onnx_files["inline"]), **kwargs)
    assert list(refusal.value.message_dict) == [field]
    assert_nothing_written()


@pytest.mark.django_db
def test_register_refuses_duplicate_version_of_the_same_model(register_version, vendor_model):
    first = register_version(vendor_model, "1.0.0")
    with pytest.raises(Conflict, match=r"already has version 1\.0\.0; choose a new version number") as refusal:
        register_version(vendor_model, "1.0.0", kind="external")
    assert refusal.value.code == "duplicate_version"
    assert list(ModelVersion.objects.all()) == [first]
    sha = first.artifact_sha256
    assert leftovers(artifact_root()) == [sha[:2], f"{sha[:2]}/{sha}", f"{sha[:2]}/{sha}/model.onnx"]


@pytest.mark.django_db
def test_register_allows_the_same_version_string_for_another_model(register_version, vendor_model, institutions):
    other = FoundationModelFactory(provider=institutions["vendor"])
    register_version(vendor_model, "1.0.0")
    assert register_version(other, "1.0.0").foundation_model == other


@pytest.mark.django_db
def test_register_refuses_parent_from_another_model(register_version, vendor_model, institutions):
    other = FoundationModelFactory(provider=institutions["vendor"])
    foreign_parent = register_version(other, "1.0.0")
    with pytest.raises(ValidationError) as refusal:
        register_version(vendor_model, "2.0.0", kind="external", parent=foreign_parent)
    assert list(refusal.value.message_dict) == ["parent"]
    assert "a parent must be a version of" in refusal.value.message_dict["parent"][0]
    assert list(ModelVersion.objects.all()) == [foreign_parent]


@pytest.mark.django_db
def test_register_links_parent_of_the_same_model(register_version, vendor_model):
    base = register_version(vendor_model, "1.0.0")
    child = register_version(vendor_model, "1.1.0", kind="external", parent=base)
    assert child.parent == base
