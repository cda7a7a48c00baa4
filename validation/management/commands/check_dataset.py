"""``manage.py check_dataset DATASET --model-version VERSION [--json]``: what a run would skip, before it runs.

Reads every image's header as a run of the version would (``radtrust_engine.images.check_images``:
the same rules, the DICOM header without pixels, the NIfTI header, the PNG chunks, the NPY
array header), runs no model, and lists each file a run would skip with the reason, and how
many images each conversion would apply to. Exits non-zero when more files would be skipped than
the suite's ``max_unreadable_share`` allows, so a script can stop before queueing a run.
"""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from radtrust_engine.images import ImagesCheck, allowed_skips, check_images
from radtrust_engine.loading import Manifest, ManifestError, manifest_file, read_manifest
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.task_spec import GROUND_TRUTH_COLUMNS
from registry.management.arguments import dataset_argument, version_argument
from registry.models import Dataset, ModelVersion
from validation.services import dataset_root


def _manifest(version: ModelVersion, dataset: Dataset, name: str) -> Manifest:
    """The dataset's manifest, read and checked as a run of ``version`` reads it (its label columns, or masks)."""
    truth = GROUND_TRUTH_COLUMNS.get(version.task_spec.task)  # masks or lesion annotations, else 0/1 labels
    class_names = list(version.output_schema.get("class_names", []))
    root = dataset_root(dataset)
    return read_manifest(
        manifest_file(root, name),
        root,
        label_columns=[] if truth else class_names,
        class_names=class_names,
        mask_column=truth,
    )


class Command(BaseCommand):
    help = (
        "Check a dataset's images against a version's preprocessing spec from their headers alone, without inference: "
        "which files a run would skip and why, and the conversions it would apply. Exits 1 when a run would fail."
    )

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="Dataset id or name")
        parser.add_argument(
            "--model-version", required=True, help="Version id, or MODEL_NAME:VERSION: its preprocessing spec says how files are read"
        )
        parser.add_argument("--manifest", default="manifest.csv", help="Manifest path relative to the dataset location.")
        parser.add_argument("--max-unreadable-share", type=float, default=0.0, help="The suite's share of images a run may skip (default 0).")
        parser.add_argument("--json", dest="as_json", action="store_true", help="Print the result as JSON instead of a table.")

    def handle(self, *args, dataset, model_version, manifest, max_unreadable_share, as_json, **options):
        if not 0 <= max_unreadable_share <= 1:
            raise CommandError("--max-unreadable-share must be a number between 0 and 1.")
        found_version, found_dataset = version_argument(model_version), dataset_argument(dataset)
        try:
            spec = Preprocessing.from_spec(found_version.preprocessing)
        except ValueError as exc:
            raise CommandError(f"The version's preprocessing spec is invalid: {exc}") from None
        try:
            rows = _manifest(found_version, found_dataset, manifest)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        except ManifestError as exc:
            raise CommandError(f"The manifest cannot be read: {exc}") from None
        check = check_images(rows, spec)
        allowed = allowed_skips(max_unreadable_share, check.n_images)
        if as_json:
            self.stdout.write(_json(check, allowed, max_unreadable_share))
        else:
            self._table(check, allowed, max_unreadable_share)
        if check.exceeds(max_unreadable_share):
            raise CommandError(f"A run would fail: {len(check.skipped)} of {check.n_images} images would be skipped, and the share allows {allowed}.")

    def _table(self, check: ImagesCheck, allowed: int, share: float) -> None:
        w = self.stdout.write
        read = check.n_images - len(check.skipped)
        w(f"{check.n_images} images: {read} would be read, {len(check.skipped)} skipped (max_unreadable_share {share:g} allows {allowed}).")
        if check.skipped:
            width = max(len(s.image_path) for s in check.skipped)
            w("")
            w(f"{'row':>6}  {'file':<{width}}  {'problem':<16}  reason")
            for s in check.skipped:
                w(f"{s.row:>6}  {s.image_path:<{width}}  {_label(s.kind):<16}  {s.reason}")
            w("")
            w("Skipped, by problem: " + ", ".join(f"{_label(kind)} {n}" for kind, n in sorted(check.problems().items())))
        if check.conversions.counts:
            w("")
            w("Conversions applied when read:")
            for conversion, n in sorted(check.conversions.counts.items(), key=lambda item: -item[1]):
                w(f"  {n:>6} images  {conversion}")


def _label(kind: str | None) -> str:
    return (kind or "unreadable").replace("_", " ")


def _json(check: ImagesCheck, allowed: int, share: float) -> str:
    return json.dumps(
        {
            "n_images": check.n_images,
            "n_skipped": len(check.skipped),
            "max_unreadable_share": share,
            "allowed_skips": allowed,
            "run_would_fail": check.exceeds(share),
            "skipped": [s.to_dict() for s in check.skipped],
            "problems": check.problems(),
            "conversions": check.conversions.to_dict(),
        },
        indent=2,
    )
