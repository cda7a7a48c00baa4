"""Evaluation of outputs a model produced elsewhere ("bring your own outputs").

Many foundation models do not run as one ONNX graph on a RadTrust worker; their provider or the
hospital runs them and hands over the outputs. Such a predictions file (CSV or Parquet: a
``case_id`` column naming the manifest's ``image_path``, one probability column per class of the
version's output schema, optionally ``uncertainty``) gets every analysis that needs no inference:
the stratified metrics with their subgroups, calibration, generalisation and drift against a
baseline. Analyses that re-run the model (explainability, robustness, test-time uncertainty) are
dropped from the suite, and the report's model section says plainly that RadTrust did not run it.

The whole file is checked before anything is computed (``read_predictions``), and a problem
raises ``PredictionsError`` naming the first offending rows: not UTF-8, a missing or repeated
case id, a case the manifest does not hold or a manifest case without outputs, a probability that
is missing or outside [0, 1]. Plain Python and NumPy (no Django).
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from radtrust_engine.baseline import Baseline, CaseTable, pseudonymise
from radtrust_engine.failures import FailureCode
from radtrust_engine.loading import Manifest
from radtrust_engine.pipeline import (
    ENGINE_VERSION,
    Evaluation,
    SuiteConfig,
    case_strata,
    classification_metrics,
    dataset_info,
    drift_section,
)
from radtrust_engine.report import ImageConversions, RunReport

CASE_COLUMN = "case_id"
UNCERTAINTY_COLUMN = "uncertainty"
NEEDS_THE_MODEL = ("explainability", "robustness", "uncertainty")  # analyses that re-run the model
NOT_RUN_STATEMENT = (
    "RadTrust did not run this model. The outputs were produced elsewhere and uploaded as a "
    "predictions file; RadTrust checked that file's hash and its cases against the dataset "
    "manifest, and computed these results from it. Nothing here shows that the registered "
    "artifact produces these outputs."
)
ERROR_ROWS_SHOWN = 5


class PredictionsError(ValueError):
    """A predictions file that cannot be evaluated; the message names the first offending rows."""

    reason = FailureCode.BAD_MANIFEST


@dataclass(frozen=True)
class Predictions:
    """A checked predictions file, rows in the manifest's order."""

    sha256: str
    class_names: tuple[str, ...]
    scores: np.ndarray  # (n_cases, n_classes) probabilities
    uncertainty: np.ndarray | None  # (n_cases,) or None

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def _rows_text(rows: Sequence[Any]) -> str:
    shown = ", ".join(str(r) for r in rows[:ERROR_ROWS_SHOWN])
    more = len(rows) - ERROR_ROWS_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def _table(data: bytes, name: str) -> tuple[list[str], list[dict[str, Any]]]:
    if name.lower().endswith(".parquet"):
        try:
            import pyarrow.parquet as pq  # only Parquet files need it
        except ImportError:
            raise PredictionsError("A Parquet predictions file needs pyarrow on the server; upload a CSV instead.") from None
        try:
            table = pq.read_table(io.BytesIO(data))
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise PredictionsError(f"The predictions file is not a readable Parquet file ({type(exc).__name__}).") from None
        return list(table.column_names), table.to_pylist()
    if not name.lower().endswith(".csv"):
        raise PredictionsError("The predictions file is a .csv or .parquet file.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PredictionsError(f"The predictions file is not UTF-8 text (first bad byte on line {line}); save it as UTF-8.") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise PredictionsError("The predictions file is empty: no header row.")
    columns = [c.strip() for c in header]
    rows = []
    for number, cells in enumerate(reader, start=1):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(columns):
            raise PredictionsError(f"Row {number} has {len(cells)} cells but the header has {len(columns)} columns.")
        rows.append(dict(zip(columns, cells)))
    return columns, rows


def _probability(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if 0.0 <= number <= 1.0 else math.nan


def read_predictions(data: bytes, name: str, *, sha256: str, class_names: Sequence[str], case_ids: Sequence[str]) -> Predictions:
    """Check a predictions file against the version's classes and the manifest's cases (``case_ids``,
    its ``image_path`` column in order) and return its outputs in the manifest's order."""
    columns, rows = _table(data, name)
    if CASE_COLUMN not in columns:
        raise PredictionsError(f'The predictions file has no "{CASE_COLUMN}" column (the manifest\'s image_path of each case).')
    absent = [c for c in class_names if c not in columns]
    if absent:
        raise PredictionsError(f"The predictions file has no column for the version's classes {', '.join(absent)}.")
    if not rows:
        raise PredictionsError("The predictions file holds no rows.")
    position = {case: i for i, case in enumerate(case_ids)}
    seen: dict[str, int] = {}
    blank, duplicate, unknown, bad = [], [], [], []
    for number, row in enumerate(rows, start=1):
        case = "" if row[CASE_COLUMN] is None else str(row[CASE_COLUMN]).strip()
        if not case:
            blank.append(number)
        elif case in seen:
            duplicate.append(f"row {number} ({case}, first on row {seen[case]})")
        elif case not in position:
            unknown.append(f"row {number} ({case})")
        else:
            seen[case] = number
        if any(math.isnan(_probability(row[c])) for c in class_names):
            bad.append(number)
    if blank:
        raise PredictionsError(f"No case id on rows {_rows_text(blank)} (rows counted from 1 after the header).")
    if duplicate:
        raise PredictionsError(f"Case ids given twice: {_rows_text(duplicate)}.")
    if unknown:
        raise PredictionsError(f"Case ids not in the dataset manifest: {_rows_text(unknown)}.")
    if bad:
        raise PredictionsError(f"A probability is missing or outside [0, 1] on rows {_rows_text(bad)} (rows counted from 1 after the header).")
    missing = [c for c in case_ids if c not in seen]
    if missing:
        raise PredictionsError(f"Manifest cases without outputs: {_rows_text(missing)}.")
    order = [rows[seen[c] - 1] for c in case_ids]
    scores = np.array([[_probability(r[c]) for c in class_names] for r in order], dtype=np.float64)
    uncertainty = None
    if UNCERTAINTY_COLUMN in columns:
        values = []
        for r in order:
            try:
                values.append(float(r[UNCERTAINTY_COLUMN]))
            except (TypeError, ValueError):
                values.append(math.nan)
        uncertainty = np.asarray(values)
        if not np.isfinite(uncertainty).all():
            rows_bad = [seen[c] for c, v in zip(case_ids, uncertainty) if not math.isfinite(v)]
            raise PredictionsError(f"The uncertainty is not a number on rows {_rows_text(sorted(rows_bad))}.")
    return Predictions(sha256, tuple(class_names), scores, uncertainty)


def without_model_analyses(config: SuiteConfig) -> SuiteConfig:
    """The suite less the analyses that re-run the model."""
    return replace(config, analyses=tuple(a for a in config.analyses if a not in NEEDS_THE_MODEL))


def evaluate_predictions(
    predictions: Predictions,
    manifest: Manifest,
    *,
    task: str,
    thresholds: Mapping[str, float],
    config: SuiteConfig,
    baseline: Baseline | None = None,
) -> Evaluation:
    """Every analysis of ``radtrust_engine.pipeline.evaluate`` that needs no inference, from outputs
    produced elsewhere (see the module docstring)."""
    if task not in ("binary", "multilabel"):
        raise PredictionsError("Outputs produced elsewhere are evaluated for classification versions only.")
    if len(predictions) != len(manifest):
        raise PredictionsError("The predictions do not match the manifest's cases; read them with read_predictions.")
    config = without_model_analyses(config)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    rows = np.arange(len(manifest), dtype=np.int64)
    class_names = predictions.class_names
    strata, missing = case_strata(manifest, rows, config)
    intersections = [x for x in config.intersections if all(a in strata for a in x)]
    cases = CaseTable(
        patient_keys=pseudonymise(manifest.patient_ids),
        label_names=tuple(manifest.label_names),
        labels=manifest.labels,
        class_names=class_names,
        scores=predictions.scores,
    )
    results = classification_metrics(manifest, rows, predictions.scores, class_names, thresholds, strata, intersections, config, None, None, timings)
    timings["metrics"] = time.perf_counter() - started
    drift = None
    if "drift" in config.analyses:
        started = time.perf_counter()
        drift = drift_section(cases, baseline, thresholds, config)
        timings["drift"] = time.perf_counter() - started
    report = RunReport(
        engine_version=ENGINE_VERSION,
        task=task,
        config=config.to_dict(),
        preprocessing={},
        activation="none",
        output_mapping="the uploaded probabilities are used as they are",
        model={"run_by_radtrust": False, "predictions_sha256": predictions.sha256, "statement": NOT_RUN_STATEMENT},
        dataset=dataset_info(
            manifest,
            rows,
            missing,
            [x for x in config.intersections if x not in intersections],
            {"filled": {}, "unreadable": []},  # no image or header was read
            ImageConversions.collect([]),
        ),
        skipped=(),
        inference={"run_by_radtrust": False, "forward_passes": 0, "statement": NOT_RUN_STATEMENT},
        results=results,
        drift=drift,
    )
    return Evaluation(run_report=report, timings=timings, scores=predictions.scores, case_index=rows, cases=cases, files={})
