"""``manage.py bench validation [--json] [--quick] [--only FIGURE] [--images N]``: the engine's speed figures.
``manage.py bench feedback [--json] [--database-url URL] [--rows N] [--deployments N]``: the feedback reads at scale.
``manage.py bench documents [--json] [--quick]``: rendering the technical documentation against WeasyPrint alone.
``manage.py bench federated [--json] [--quick]``: pooled against central AUROC, payload size, the site agent against the evaluation alone.
``manage.py bench statistics [--json] [--quick]``: interval coverage, false alarms, disclosure and the CUSUM on simulated data.
``manage.py bench foundation [--json] [--quick] [--images N] [--rounds N]``: the report-finding extractor, the embedding probe against scikit-learn,
the label-efficiency curve's time, embeddings through the pipeline and the ViT-B/16's images/s against bare ONNX Runtime.
``manage.py bench usage [--json] [--events N] [--deployments N]``: usage-log ingestion, its reads and the retention purge, in the configured database.
``manage.py bench volumes [--json] [--quick]``: FROC, Dice and kappa against reference implementations, sliding windows against bare ONNX Runtime, memory over 100 volumes.
``manage.py bench scale [--json] [--full]``: sharded runs merged and their speed-up, decoding processes, memory and time from 10,000 to 100,000 images.

Thin: the measurements are in ``radtrust_demo.bench.validation`` (plain Python), ``radtrust_demo.bench.federated``, ``radtrust_demo.bench.feedback``,
``radtrust_demo.bench.documents`` and ``radtrust_demo.bench.statistics``.
Progress goes to stderr and anything a library prints while measuring is sent there
too, so that with ``--json`` stdout holds exactly one JSON object.
"""

from __future__ import annotations

import contextlib
import json
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from radtrust_demo.bench import documents as documents_bench
from radtrust_demo.bench import feedback as bench
from radtrust_demo.bench import foundation as foundation_bench
from radtrust_demo.bench import scale as scale_bench
from radtrust_demo.bench import statistics as statistics_bench
from radtrust_demo.bench import usage as usage_bench
from radtrust_demo.bench import volumes as volumes_bench
from radtrust_demo.bench.federated import run_federated_bench
from radtrust_demo.bench.validation import FIGURES, format_table, run_benchmarks


class Command(BaseCommand):
    help = "Measure the validation engine against bare ONNX Runtime, fairlearn and scikit-learn, in one process; or the feedback reads at a million reports."

    def add_arguments(self, parser):
        parser.add_argument(
            "target",
            choices=["validation", "feedback", "documents", "federated", "statistics", "usage", "foundation", "volumes", "scale"],
            help="What to benchmark.",
        )
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print one JSON object instead of a table.")
        parser.add_argument("--quick", action="store_true", help="Small sizes: a smoke run of a few seconds.")
        parser.add_argument("--full", action="store_true", help="scale: the issue's sizes (10,000 and 100,000 images) instead of CI sizes.")
        parser.add_argument("--only", choices=FIGURES, help="Measure this figure only.")
        parser.add_argument("--images", type=int, help="DICOM files for the pipeline figure (default 320).")
        parser.add_argument("--rounds", type=int, help="foundation: pipeline runs of the embedding pass (default 2), each between bare ORT runs.")
        parser.add_argument("--database-url", help="feedback: the bench's own PostgreSQL database (default: radtrust_bench_feedback on 127.0.0.1).")
        parser.add_argument("--rows", type=int, help="feedback: reports to seed (default 1,000,000).")
        parser.add_argument("--deployments", type=int, help="feedback: deployments to spread them over (default 200).")
        parser.add_argument("--repeats", type=int, help="feedback: timed requests per endpoint (default 30).")
        parser.add_argument("--events", type=int, help="usage: inference events to ingest (default 10,000,000).")
        parser.add_argument("--child", action="store_true", help="feedback, internal: seed and measure the configured database.")

    def handle(self, *args, target: str, as_json: bool, quick: bool, only: str | None, images: int | None, **options):
        if options["rounds"] is not None and target != "foundation":
            raise CommandError("--rounds is for bench foundation only.")
        if target == "feedback":
            self._feedback(as_json=as_json, **options)
            return
        if target == "documents":
            self._documents(as_json=as_json, quick=quick)
            return
        if target == "federated":
            self._federated(as_json=as_json, quick=quick)
            return
        if target == "usage":
            self._usage(as_json=as_json, events=options["events"], deployments=options["deployments"], repeats=options["repeats"])
            return
        if target == "statistics":
            self._statistics(as_json=as_json, quick=quick)
            return
        if target == "foundation":
            self._foundation(as_json=as_json, quick=quick, images=images, rounds=options["rounds"])
            return
        if target == "volumes":
            self._volumes(as_json=as_json, quick=quick)
            return
        if target == "scale":
            self._scale(as_json=as_json, full=options["full"])
            return
        if images is not None and images < 1:
            raise CommandError("--images must be at least 1.")
        cache = settings.VAR_DIR / "bench"

        def log(message: str) -> None:
            self.stderr.write(f"bench: {message}")

        with contextlib.redirect_stdout(sys.stderr):  # exporters and libraries print; stdout is for the result
            result = run_benchmarks(cache, quick=quick, only=only, images=images, log=log)
        self.stdout.write(json.dumps(result, indent=2) if as_json else format_table(result))

    def _documents(self, *, as_json: bool, quick: bool) -> None:
        with contextlib.redirect_stdout(sys.stderr):
            result = documents_bench.run_documents_bench(quick=quick, log=lambda message: self.stderr.write(f"bench: {message}"))
        self.stdout.write(json.dumps(result, indent=2) if as_json else documents_bench.format_table(result))

    def _federated(self, *, as_json: bool, quick: bool) -> None:
        with contextlib.redirect_stdout(sys.stderr):
            result = run_federated_bench(settings.VAR_DIR / "bench", quick=quick, log=lambda message: self.stderr.write(f"bench: {message}"))
        self.stdout.write(json.dumps(result, indent=2) if as_json else format_table(result))

    def _foundation(self, *, as_json: bool, quick: bool, images: int | None, rounds: int | None) -> None:
        if rounds is not None and rounds < 1:
            raise CommandError("--rounds must be at least 1.")
        with contextlib.redirect_stdout(sys.stderr):
            result = foundation_bench.run_foundation_bench(
                settings.VAR_DIR / "bench", quick=quick, images=images, rounds=rounds, log=lambda message: self.stderr.write(f"bench: {message}")
            )
        self.stdout.write(json.dumps(result, indent=2) if as_json else foundation_bench.format_table(result))

    def _scale(self, *, as_json: bool, full: bool) -> None:
        with contextlib.redirect_stdout(sys.stderr):
            result = scale_bench.run_scale_bench(settings.VAR_DIR / "bench", full=full, log=lambda message: self.stderr.write(f"bench: {message}"))
        self.stdout.write(json.dumps(result, indent=2) if as_json else scale_bench.format_table(result))

    def _volumes(self, *, as_json: bool, quick: bool) -> None:
        with contextlib.redirect_stdout(sys.stderr):
            result = volumes_bench.run_volumes_bench(quick=quick, log=lambda message: self.stderr.write(f"bench: {message}"))
        self.stdout.write(json.dumps(result, indent=2) if as_json else volumes_bench.format_table(result))

    def _statistics(self, *, as_json: bool, quick: bool) -> None:
        with contextlib.redirect_stdout(sys.stderr):
            result = statistics_bench.run_statistics_bench(quick=quick, log=lambda message: self.stderr.write(f"bench: {message}"))
        self.stdout.write(json.dumps(result, indent=2) if as_json else statistics_bench.format_table(result))

    def _usage(self, *, as_json: bool, events: int | None, deployments: int | None, repeats: int | None) -> None:
        events = usage_bench.EVENTS if events is None else events
        deployments = usage_bench.DEPLOYMENTS if deployments is None else deployments
        repeats = usage_bench.REPEATS if repeats is None else repeats
        if events < 10 or deployments < 1 or repeats < 1:
            raise CommandError("--events must be at least 10, --deployments and --repeats at least 1.")
        try:
            result = usage_bench.run_usage_bench(
                events=events, deployments=deployments, repeats=repeats, log=lambda message: self.stderr.write(f"bench: {message}")
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(result, indent=2) if as_json else usage_bench.format_table(result))

    def _feedback(
        self, *, as_json: bool, database_url: str | None, rows: int | None, deployments: int | None, repeats: int | None, child: bool, **options
    ):
        rows = bench.ROWS if rows is None else rows
        deployments = bench.DEPLOYMENTS if deployments is None else deployments
        repeats = bench.REPEATS if repeats is None else repeats
        if rows < 1 or deployments < 1 or repeats < 1:
            raise CommandError("--rows, --deployments and --repeats must be at least 1.")

        def log(message: str) -> None:
            self.stderr.write(f"bench: {message}")

        try:
            if child:
                result = bench.run_child_here(rows=rows, deployments=deployments, repeats=repeats, log=log).to_dict()
                self.stdout.write(json.dumps(result))
                return
            url = database_url or bench.DEFAULT_DATABASE_URL
            bench.refuse_configured_database(url, settings.DATABASES["default"])
            result = bench.run_bench(
                database_url=url,
                rows=rows,
                deployments=deployments,
                repeats=repeats,
                manage_py=settings.BASE_DIR / "manage.py",
                var_dir=settings.VAR_DIR / "bench" / "feedback",
                log=log,
            )
        except (ValueError, RuntimeError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(result, indent=2) if as_json else bench.format_table(result))
