"""Copy a finished validation run's evidence to MLflow: one MLflow run per validation run.

The MLflow run carries the suite config and the version's preprocessing as
params, every overall and subgroup metric with its CI bounds as metrics (a
suppressed subgroup never), the JSON report, its charts (SVG) and tables (CSV)
as artifacts, the dataset as an MLflow dataset input with the manifest's digest,
the run's real start and end times, and tags linking it to the RadTrust run and
to the registered model version (which gets a tag pointing back). Idempotent: a
worker takes a lease on the run's copy first (``run_mlflow_claim``), so a
retried task and a copy the sweeper re-sent never work at once, and a later
try finds its MLflow run by the ``radtrust.validation_run_id`` tag.
"""

from __future__ import annotations

import csv
import json
import re
import tempfile
from pathlib import Path

from radtrust_engine.report import RunReport
from registry.choices import MirrorState
from registry.mlflow_mirror import mirror_experiment_id, mlflow_client
from validation.charts import report_charts, slug
from validation.choices import MlflowState, RunStatus
from validation.models import ValidationRun
from validation.report_tables import report_tables
from validation.report_views import report_without_cases
from validation.services import run_mlflow_claim, run_mlflow_state_set

TAG_RUN_ID = "radtrust.validation_run_id"
_BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch call
_KEY_REFUSED = re.compile(r"[^A-Za-z0-9_\-. /:]")
_DIGEST_LENGTH = 36  # the longest dataset digest MLflow stores; the full sha256 is in the source
_TABLE_PARTS = ("overall", "subgroups", "intersections", "gaps")


class VersionNotMirroredYet(Exception):
    """The version's MLflow model version does not exist yet; the task retries."""


def metric_key(*parts: str) -> str:
    """An MLflow metric key from report names (MLflow refuses '=', ',' and the like)."""
    return "/".join(_KEY_REFUSED.sub("_", part) for part in parts)


def report_metrics(report: RunReport) -> dict[str, float]:
    """Every defined metric of a report, overall and per subgroup, with its CI bounds, and every defined gap."""
    metrics: dict[str, float] = {}
    for label, result in report.results.items():
        for group in (result.overall, *result.subgroups):
            if getattr(group, "suppressed", False):
                continue  # too few patients: its numbers could identify them
            for name, estimate in (group.metrics or {}).items():
                for suffix, value in (("", estimate.value), ("_ci_low", estimate.ci_low), ("_ci_high", estimate.ci_high)):
                    if value is not None:
                        metrics[metric_key(label, group.name.replace(", ", " x "), name + suffix)] = float(value)
        for gap in result.gaps:
            if gap.value is not None:
                metrics[metric_key(label, "gap", gap.grouping, gap.kind)] = float(gap.value)
    if report.detection is not None:  # the FROC's seven operating points and the CPM, with their intervals
        overall = report.detection.get("overall") or {}
        for j, rate in enumerate(overall.get("fp_per_image") or []):
            for suffix, values in (("", "sensitivity"), ("_ci_low", "low"), ("_ci_high", "high")):
                if overall[values][j] is not None:
                    metrics[metric_key("detection", f"sensitivity_at_{rate:g}_fp{suffix}")] = float(overall[values][j])
        for suffix, key in (("", "value"), ("_ci_low", "low"), ("_ci_high", "high")):
            if (overall.get("cpm") or {}).get(key) is not None:
                metrics[metric_key("detection", f"cpm{suffix}")] = float(overall["cpm"][key])
    if report.volumes is not None:  # per structure the mean scores, with their intervals
        for structure, scores in (report.volumes.get("structures") or {}).items():
            for name, estimate in scores.items():
                for suffix, key in (("", "mean"), ("_ci_low", "low"), ("_ci_high", "high")):
                    if estimate.get(key) is not None:
                        metrics[metric_key(structure, "volumes", name + suffix)] = float(estimate[key])
    return metrics


def _params(run: ValidationRun) -> dict[str, str]:
    config = run.config
    return {
        "dataset": run.dataset.name,
        "manifest": run.manifest,
        "manifest_sha256": run.manifest_sha256,
        "artifact_sha256": run.artifact_sha256,
        "task": run.version.task_spec.task,
        "device": str(run.device.get("kind", "")),
        "device_name": str(run.device.get("name", ""))[:250],
        "preprocessing": json.dumps(run.version.preprocessing, sort_keys=True)[:6000],
        **{f"suite.{k}": json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in config.items()},
    }


def _ms(moment) -> int:
    return int(moment.timestamp() * 1000)


def dataset_input(run: ValidationRun):
    """The run's dataset as an MLflow dataset input: named as in RadTrust, with the frozen manifest's digest."""
    from mlflow.entities import Dataset, DatasetInput, InputTag  # import mlflow costs about 2.4 s

    source = {"radtrust_dataset_id": run.dataset_id, "manifest": run.manifest, "manifest_sha256": run.manifest_sha256}
    dataset = Dataset(
        name=run.dataset.name,
        digest=run.manifest_sha256[:_DIGEST_LENGTH],
        source_type="radtrust",
        source=json.dumps(source, sort_keys=True),
    )
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "validation")])


def write_report_files(results: dict, folder: Path) -> None:
    """The report as people read it: ``charts/*.svg`` and ``tables/*.csv`` (numbers rounded, suppressed cells as on the page)."""
    (folder / "charts").mkdir()
    (folder / "tables").mkdir()
    for chart in report_charts(results):
        (folder / "charts" / f"{chart.name}.svg").write_text(chart.svg, encoding="utf-8")
    for tables in report_tables(results):
        for part in _TABLE_PARTS:
            table = getattr(tables, part)
            if table is None:
                continue
            with (folder / "tables" / f"{slug(tables.label)}-{part}.csv").open("w", newline="", encoding="utf-8") as out:
                writer = csv.writer(out)
                writer.writerow(table.head)
                writer.writerows(table.rows)


def _log(run: ValidationRun) -> str:
    from mlflow.entities import Metric, Param, RunTag  # import mlflow costs about 2.4 s; only the mirror needs it

    client = mlflow_client()
    experiment = mirror_experiment_id(client)
    found = client.search_runs([experiment], filter_string=f"tags.`{TAG_RUN_ID}` = '{int(run.pk)}'", max_results=1)
    if found and found[0].info.status == "FINISHED":
        return found[0].info.run_id
    version = run.version
    tags = {
        TAG_RUN_ID: str(run.pk),
        "radtrust.version_id": str(version.pk),
        "radtrust.dataset_id": str(run.dataset_id),
        "radtrust.sha256": run.artifact_sha256,
        "mlflow.registered_model_name": version.mlflow_model_name,
        "radtrust.mlflow_model_version": version.mlflow_version,
    }
    started = _ms(run.started_at or run.created_at)
    name = f"validation {run.pk}: {version} on {run.dataset.name}"
    mlflow_run = found[0] if found else client.create_run(experiment, start_time=started, tags=tags, run_name=name)
    run_id = mlflow_run.info.run_id
    timestamp = _ms(run.finished_at)
    params = [Param(k, v) for k, v in _params(run).items()]
    metrics = [Metric(k, v, timestamp, 0) for k, v in sorted(report_metrics(RunReport.from_dict(run.results)).items())]
    client.log_batch(run_id, params=params, tags=[RunTag(k, v) for k, v in tags.items()])
    for start in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _BATCH])
    client.log_inputs(run_id, datasets=[dataset_input(run)])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "validation_report.json"
        # MLflow is the provider's engineers' tool: per-case parts only where the data's steward shared them.
        shared = run.dataset.case_outputs_shared_with_provider
        results = run.results if shared else report_without_cases(run.results)
        path.write_text(json.dumps(results, indent=1, sort_keys=True))
        write_report_files(results, Path(folder))
        client.log_artifacts(run_id, folder)
    client.set_terminated(run_id, end_time=timestamp)
    client.set_model_version_tag(version.mlflow_model_name, version.mlflow_version, f"radtrust.validation_run.{run.pk}", run_id)
    return run_id


def run_log(*, run_id: int, lease_seconds: int = 300) -> str | None:
    """Log one succeeded run; records the outcome on the row and re-raises failures so the task retries.

    Returns None when there is nothing to do: the run is gone or did not succeed, or another
    worker holds its copy's lease.
    """
    run = ValidationRun.objects.select_related("version__foundation_model", "dataset").filter(pk=run_id).first()
    if run is None or run.status != RunStatus.SUCCEEDED:
        return None
    if run.mlflow_state == MlflowState.LOGGED:
        return run.mlflow_run_id
    if not run_mlflow_claim(run_id=run_id, lease_seconds=lease_seconds):
        return None
    if run.version.mirror_state != MirrorState.MIRRORED:
        # The run links to the registered model version; wait for the mirror (retried with backoff).
        run_mlflow_state_set(run_id=run_id, state=MlflowState.FAILED, error="Waiting for the version to be mirrored into MLflow.")
        raise VersionNotMirroredYet(f"version {run.version_id} is {run.version.mirror_state} in MLflow")
    try:
        mlflow_run_id = _log(run)
    except Exception as exc:
        run_mlflow_state_set(run_id=run_id, state=MlflowState.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    run_mlflow_state_set(run_id=run_id, state=MlflowState.LOGGED, mlflow_run_id=mlflow_run_id)
    return mlflow_run_id
