"""``manage.py bench validation [--json] [--quick] [--only FIGURE] [--images N]``: the engine's speed figures.

Thin: the measurements are in ``validation.bench`` (plain Python). Progress
goes to stderr and anything a library prints while measuring is sent there
too, so that with ``--json`` stdout holds exactly one JSON object.
"""

from __future__ import annotations

import contextlib
import json
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from validation.bench import FIGURES, format_table, run_benchmarks


class Command(BaseCommand):
    help = "Measure the validation engine against bare ONNX Runtime, fairlearn and scikit-learn, in one process."

    def add_arguments(self, parser):
        parser.add_argument("target", choices=["validation"], help="What to benchmark.")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print one JSON object instead of a table.")
        parser.add_argument("--quick", action="store_true", help="Small sizes: a smoke run of a few seconds.")
        parser.add_argument("--only", choices=FIGURES, help="Measure this figure only.")
        parser.add_argument("--images", type=int, help="DICOM files for the pipeline figure (default 320).")

    def handle(self, *args, as_json: bool, quick: bool, only: str | None, images: int | None, **options):
        if images is not None and images < 1:
            raise CommandError("--images must be at least 1.")
        cache = settings.VAR_DIR / "bench"

        def log(message: str) -> None:
            self.stderr.write(f"bench: {message}")

        with contextlib.redirect_stdout(sys.stderr):  # exporters and libraries print; stdout is for the result
            result = run_benchmarks(cache, quick=quick, only=only, images=images, log=log)
        self.stdout.write(json.dumps(result, indent=2) if as_json else format_table(result))
