"""Hostile datasets and run requests: every one ends as a 400 or a failed run with a specific reason,
and neither the answer nor the stored run (its error, its report) quotes a secret or a path outside
the dataset folder.

The secret lives outside the data roots, as a server's environment file would; a symbolic link in a
dataset folder, an absolute or ``..`` path in a manifest, or a manifest that is not one must not
bring its content or its path back to a reader of the run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ValidationError

from radtrust_engine.failures import FailureCode
from radtrust_engine.loading import ManifestError, manifest_file, read_manifest
from radtrust_engine.paths import PathRefused, resolve_within, without_paths
from registry.models import Dataset, ModelVersion
from registry.services import record_update
from validation import services
from validation.choices import RunStatus
from validation.models import ValidationRun

SECRET = "SECRET_KEY=django-insecure-hunter2-do-not-echo"
HEADER = "image_path,patient_id,pneumothorax"
URL = "/api/validation-runs/"


@pytest.fixture
def outside(tmp_path_factory) -> Path:
    """A folder outside the data roots holding a secret (first line), a readable image and a folder of images."""
    folder = tmp_path_factory.mktemp("outside-the-roots")
    (folder / "secret.env").write_text(f"{SECRET}\nDATABASE_URL=postgres://admin:pw@db/prod\n")
    np.save(folder / "stolen.npy", np.zeros((64, 64), np.float32))
    (folder / "scans").mkdir()
    np.save(folder / "scans" / "x.npy", np.zeros((64, 64), np.float32))
    return folder


def _run(run_setup, **kwargs) -> ValidationRun:
    kwargs.setdefault("config", {"n_resamples": 20, "min_patients": 5})
    run = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], **kwargs)
    services.run_execute(run_id=run.pk, worker="w")
    run.refresh_from_db()
    return run


def _stored(run: ValidationRun) -> str:
    """Everything a reader of the run sees of its outcome."""
    return json.dumps({"error": run.error, "results": run.results, "summary": run.summary})


def _leaks_nothing(text: str, *paths: Path) -> None:
    assert "SECRET_KEY" not in text and "hunter2" not in text and "postgres://" not in text
    for path in paths:
        assert str(path) not in text and str(path.resolve()) not in text


def _failed(run: ValidationRun, reason: str, fragment: str, *paths: Path) -> None:
    assert (run.status, run.error_reason) == (RunStatus.FAILED, reason), run.error
    assert fragment in run.error, run.error
    _leaks_nothing(_stored(run), *paths)


def _manifest(root: Path, *rows: str, name: str = "manifest.csv") -> None:
    (root / name).write_text("\n".join([HEADER, *rows]) + "\n")


# --- Symbolic links leading out of the dataset folder ---------------------------------


def test_a_manifest_linked_to_a_secret_outside_the_roots_is_refused_unread(run_setup, outside, api_client, settings):
    (run_setup["root"] / "manifest.csv").unlink()
    (run_setup["root"] / "manifest.csv").symlink_to(outside / "secret.env")
    run = _run(run_setup)
    _failed(run, "bad_manifest", "resolves outside the dataset root", outside, *map(Path, settings.RADTRUST_DATA_ROOTS))
    assert run.manifest_sha256 == ""  # not even hashed
    body = api_client(run_setup["engineer"]).get(f"{URL}{run.pk}/").content.decode()
    _leaks_nothing(body, outside)


def test_a_file_in_the_dataset_that_is_no_manifest_is_not_echoed(run_setup, outside):
    (run_setup["root"] / "notes.csv").write_text((outside / "secret.env").read_text())
    run = _run(run_setup, manifest="notes.csv")
    _failed(run, "bad_manifest", "has no column 'image_path'; it needs the columns image_path, patient_id, pneumothorax", outside)


def test_a_manifest_linked_inside_the_dataset_is_read(run_setup):
    """The check is where a link leads, not that it is a link: a versioned manifest kept beside the images works."""
    (run_setup["root"] / "lists").mkdir()
    (run_setup["root"] / "manifest.csv").rename(run_setup["root"] / "lists" / "v2.csv")
    (run_setup["root"] / "manifest.csv").symlink_to(Path("lists") / "v2.csv")
    run = _run(run_setup)
    assert run.status == RunStatus.SUCCEEDED, run.error


def test_an_image_linked_to_etc_passwd_is_refused(run_setup):
    image = run_setup["root"] / "img" / "3.npy"
    image.unlink()
    image.symlink_to("/etc/passwd")
    run = _run(run_setup)
    _failed(run, "bad_manifest", "row 4: image_path 'img/3.npy' resolves outside the dataset root", Path("/etc/passwd"))
    assert "root:" not in run.error


def test_a_folder_linked_outside_is_refused_naming_the_row(run_setup, outside):
    (run_setup["root"] / "more").symlink_to(outside / "scans", target_is_directory=True)
    _manifest(run_setup["root"], "img/0.npy,p0,0", "more/x.npy,p1,1")
    _failed(_run(run_setup), "bad_manifest", "row 2: image_path 'more/x.npy' resolves outside", outside)


def test_the_dataset_folder_itself_linked_outside_is_refused_at_creation_and_at_run_time(run_setup, outside, settings):
    link = Path(settings.RADTRUST_DATA_ROOTS[0]) / "innocent"
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValidationError) as stored:
        record_update(instance=run_setup["dataset"], fields={"location": str(link)})
    _leaks_nothing(json.dumps(stored.value.message_dict), outside)
    Dataset.objects.filter(pk=run_setup["dataset"].pk).update(location=str(link))  # stored before the rule, say
    run_setup["dataset"].refresh_from_db()
    with pytest.raises(ValidationError) as caught:
        services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"])
    assert "outside the data roots" in caught.value.message_dict["dataset"][0]
    _leaks_nothing(json.dumps(caught.value.message_dict), outside, *map(Path, settings.RADTRUST_DATA_ROOTS))


def test_a_link_swapped_in_after_the_manifest_was_read_is_refused_when_the_image_is_opened(tmp_path, outside):
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    np.save(root / "img" / "0.npy", np.zeros((4, 4), np.float32))
    _manifest(root, "img/0.npy,p0,1")
    manifest = read_manifest(root / "manifest.csv", root, label_columns=["pneumothorax"])
    (root / "img" / "0.npy").unlink()
    (root / "img" / "0.npy").symlink_to(outside / "stolen.npy")
    with pytest.raises(ManifestError) as caught:
        manifest.absolute_path(0)
    assert caught.value.reason == FailureCode.BAD_MANIFEST and caught.value.row == 1
    _leaks_nothing(str(caught.value), outside)


def test_a_mask_linked_outside_is_refused(tmp_path, outside):
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    np.save(root / "img" / "0.npy", np.zeros((4, 4), np.float32))
    (root / "mask.npy").symlink_to(outside / "stolen.npy")
    (root / "m.csv").write_text("image_path,mask_path,patient_id\nimg/0.npy,mask.npy,p0\n")
    with pytest.raises(ManifestError, match="row 1: mask_path 'mask.npy' resolves outside") as caught:
        read_manifest(root / "m.csv", root, label_columns=[], mask_column="mask_path")
    _leaks_nothing(str(caught.value), outside)


def test_the_site_agents_manifest_is_contained_the_same_way(tmp_path, outside):
    """The agent opens its manifest through ``manifest_file`` (radtrust_agent.evaluation.site_evaluate)."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "manifest.csv").symlink_to(outside / "secret.env")
    with pytest.raises(ManifestError) as caught:
        manifest_file(root, "manifest.csv")
    assert caught.value.reason == FailureCode.BAD_MANIFEST
    _leaks_nothing(str(caught.value), outside, root)
    with pytest.raises(ManifestError, match="without '..'"):
        manifest_file(root, "../outside/manifest.csv")


# --- Paths written in the manifest ----------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "fragment"),
    [
        ("/etc/passwd", "row 2: image_path is absolute"),
        ("C:\\Windows\\win.ini", "row 2: image_path is absolute"),
        ("\\\\fileserver\\share\\x.npy", "row 2: image_path is absolute"),
        ("../../../../etc/passwd", "row 2: image_path contains '..'"),
        ("img/../../secret.npy", "row 2: image_path contains '..'"),
    ],
)
def test_manifest_paths_that_leave_the_dataset_are_refused_without_quoting_them(run_setup, cell, fragment):
    _manifest(run_setup["root"], "img/0.npy,p0,0", f'"{cell}",p1,1')
    run = _run(run_setup)
    _failed(run, "bad_manifest", fragment)
    assert cell not in run.error and "passwd" not in run.error and "secret" not in run.error


def test_a_nul_byte_in_the_manifest_fails_the_run_without_quoting_it(run_setup):
    (run_setup["root"] / "manifest.csv").write_bytes(f"{HEADER}\nimg/0.npy,p0\x00{SECRET},0\n".encode())
    _failed(_run(run_setup), "bad_manifest", "row 1: column 'patient_id' contains a NUL character")


def test_a_manifest_that_is_not_utf8_fails_the_run_without_quoting_it(run_setup):
    (run_setup["root"] / "manifest.csv").write_bytes(f"{HEADER}\nimg/0.npy,p0,0\n".encode() + b"\xff\xfe" + SECRET.encode())
    _failed(_run(run_setup), "bad_manifest", "'manifest.csv' is not UTF-8 text")


def test_unexpected_headers_and_cells_are_not_echoed(run_setup):
    _manifest(run_setup["root"], f"img/0.npy,p0,{SECRET}")
    _failed(_run(run_setup), "bad_manifest", "row 1: the cell of label 'pneumothorax' is not a label")
    (run_setup["root"] / "manifest.csv").write_text(f"{HEADER},{SECRET},{SECRET}\nimg/0.npy,p0,0,a,b\n")
    _failed(_run(run_setup), "bad_manifest", "column(s) 1 other(s) appear more than once")


# --- Images a library cannot read: its message names the file, not where it lies ------


def test_unreadable_images_are_named_relative_to_the_dataset(run_setup, settings):
    roots = [Path(r) for r in settings.RADTRUST_DATA_ROOTS]
    (run_setup["root"] / "img" / "5.png").write_bytes(SECRET.encode())  # Pillow quotes the path it could not identify
    (run_setup["root"] / "img" / "6.dcm").write_bytes(b"\0" * 200)
    (run_setup["root"] / "img" / "7.nii").write_bytes(b"\0" * 400)
    text = (run_setup["root"] / "manifest.csv").read_text()
    for i, suffix in ((5, "png"), (6, "dcm"), (7, "nii")):
        text = text.replace(f"img/{i}.npy,", f"img/{i}.{suffix},")
    (run_setup["root"] / "manifest.csv").write_text(text)

    failed = _run(run_setup)
    _failed(failed, "unreadable_images", "img/5.png (row 6): unreadable PNG", run_setup["root"], *roots)

    skipped = _run(run_setup, config={"n_resamples": 20, "min_patients": 5, "max_unreadable_share": 0.1})
    assert skipped.status == RunStatus.SUCCEEDED, skipped.error
    reasons = {s["image_path"]: s["reason"] for s in skipped.results["skipped"]}
    assert set(reasons) == {"img/5.png", "img/6.dcm", "img/7.nii"}
    assert "5.png" in reasons["img/5.png"]  # the library's own words, with the file's name only
    [header] = skipped.results["dataset"]["header_fill"]["unreadable"]
    assert header["row"] == 7 and header["reason"].startswith("img/6.dcm: unreadable DICOM")
    _leaks_nothing(_stored(skipped), run_setup["root"], *roots)


def test_an_unexpected_worker_error_is_stored_without_its_message(run_setup, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/srv/radtrust/secret.env")

    monkeypatch.setattr(services, "evaluate", denied)  # where the run calls the engine
    run = _run(run_setup)
    assert (run.status, run.error_reason) == (RunStatus.FAILED, "internal_error")
    assert "PermissionError" in run.error and "/srv/radtrust" not in run.error


# --- Run requests: wrong JSON types and hostile text are 400s with the field ------------


@pytest.mark.parametrize(
    ("extra", "field", "fragment"),
    [
        ({"config": ["n_resamples", 20]}, "config", "JSON object"),
        ({"config": "n_resamples=20"}, "config", "JSON object"),
        ({"config": 7}, "config", "JSON object"),
        ({"config": {"n_resamples": 10**30}}, "config", "'n_resamples' must be a whole number from 0 to 100000"),
        ({"config": {"batch_size": 1e308}}, "config", "'batch_size' must be a whole number"),
        ({"config": {"attributes": "sex"}}, "config", "must list attribute names"),
        ({"manifest": "manifest\x00.csv"}, "manifest", "Null characters are not allowed"),
        ({"manifest": "/etc/radtrust/secret.csv"}, "manifest", "relative"),
    ],
)
def test_bad_run_requests_are_400_with_the_field(run_setup, api_client, extra, field, fragment):
    body = {"version": run_setup["version"].pk, "dataset": run_setup["dataset"].pk, **extra}
    response = api_client(run_setup["engineer"]).post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert fragment in json.dumps(response.json()[field])
    assert not ValidationRun.objects.exists()


def test_a_preprocessing_spec_stored_before_the_rule_still_fails_the_run_with_its_reason(run_setup):
    ModelVersion.objects.filter(pk=run_setup["version"].pk).update(preprocessing={"resize": [-1, 10**12]})
    _failed(_run(run_setup), "bad_config", "'resize' must be [height, width]")


# --- The engine's helper --------------------------------------------------------------


def test_resolve_within_follows_links_and_refuses_what_it_cannot_resolve(tmp_path, outside):
    root = tmp_path / "root"
    (root / "in").mkdir(parents=True)
    (root / "out").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to(root / "loop")
    assert resolve_within(root / "in" / "missing.npy", [root]) == (root / "in" / "missing.npy").resolve()
    assert resolve_within(root / "in" / ".." / "in", [root]) == (root / "in").resolve()
    for refused in (root / "out" / "stolen.npy", root / ".." / "x", root / "loop", f"{root}/a\x00b", "/etc/passwd"):
        with pytest.raises(PathRefused) as caught:
            resolve_within(refused, [root])
        assert str(outside) not in str(caught.value) and str(root) not in str(caught.value)


def test_without_paths_cuts_every_quoted_path_to_its_name(tmp_path):
    file = tmp_path / "staging" / "abc" / "model.onnx"
    message = f"cannot identify image file '{file}' in {file.parent}; also {os.path.realpath(file)}"
    cleaned = without_paths(message, file, file.parent)
    assert str(tmp_path) not in cleaned and "'model.onnx'" in cleaned
