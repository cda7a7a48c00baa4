"""``manage.py check_dataset``: what a run would skip and convert, from the headers, before any run."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from django.core.management import CommandError, call_command
from pydicom.data import get_testdata_file

from validation.models import ValidationRun

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture
def checked(run_setup):
    """run_setup's dataset with a multi-frame DICOM, a missing image and two CT images (rescaled) among its 60 rows."""
    root = run_setup["root"]
    shutil.copy(get_testdata_file("emri_small.dcm"), root / "img" / "3.dcm")
    for i in (10, 11):
        shutil.copy(get_testdata_file("CT_small.dcm"), root / "img" / f"{i}.dcm")
    text = (root / "manifest.csv").read_text()
    for i in (3, 10, 11):
        text = text.replace(f"img/{i}.npy,", f"img/{i}.dcm,")
    (root / "manifest.csv").write_text(text)
    (root / "img" / "7.npy").unlink()
    return run_setup


def _check(setup, *options: str) -> tuple[str, CommandError | None]:
    out = io.StringIO()
    try:
        call_command("check_dataset", setup["dataset"].name, "--model-version", str(setup["version"].pk), *options, stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def test_json_lists_every_file_a_run_would_skip_and_the_conversions(checked):
    out, error = _check(checked, "--json")
    result = json.loads(out)
    assert error is not None and "A run would fail: 2 of 60 images would be skipped, and the share allows 0" in str(error)
    assert (result["n_images"], result["n_skipped"], result["allowed_skips"], result["run_would_fail"]) == (60, 2, 0, True)
    assert [(s["row"], s["image_path"], s["kind"]) for s in result["skipped"]] == [(4, "img/3.dcm", "multi_frame"), (8, "img/7.npy", "not_found")]
    assert result["skipped"][0]["reason"].startswith("10 frames, refused by the preprocessing spec's 'frames' rule")
    assert result["problems"] == {"multi_frame": 1, "not_found": 1}
    assert result["conversions"] == {
        "counts": {"modality LUT slope 1 intercept -1024": 2},
        "cases": [{"applied": ["modality LUT slope 1 intercept -1024"], "rows": "11-12"}],
    }
    assert str(checked["root"]) not in out
    assert not ValidationRun.objects.exists()  # a check, not a run


def test_the_table_within_the_share_exits_zero(checked):
    out, error = _check(checked, "--max-unreadable-share", "0.05")
    assert error is None
    lines = out.splitlines()
    assert lines[0] == "60 images: 58 would be read, 2 skipped (max_unreadable_share 0.05 allows 3)."
    assert any(line.split()[:3] == ["4", "img/3.dcm", "multi"] for line in lines)
    assert any(line.split()[:4] == ["8", "img/7.npy", "not", "found"] and line.endswith("file not found") for line in lines)
    assert "Skipped, by problem: multi frame 1, not found 1" in lines
    assert "       2 images  modality LUT slope 1 intercept -1024" in lines


def test_the_version_spec_decides_the_frames_rule(checked):
    version = checked["version"]
    version.preprocessing = {"frames": "first"}
    version.save(update_fields=["preprocessing"])
    out, error = _check(checked, "--json", "--max-unreadable-share", "0.05")
    result = json.loads(out)
    assert error is None and [s["row"] for s in result["skipped"]] == [8]
    assert result["conversions"]["counts"]["frame 0 of 10"] == 1


def test_unknown_dataset_or_version_is_a_clear_error(checked):
    with pytest.raises(CommandError, match="No dataset 'nowhere'"):
        call_command("check_dataset", "nowhere", "--model-version", str(checked["version"].pk))
    with pytest.raises(CommandError, match="No model version"):
        call_command("check_dataset", checked["dataset"].name, "--model-version", "Nope:9")
