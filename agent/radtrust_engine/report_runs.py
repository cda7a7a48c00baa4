"""A run of generated reports: the reports file of a report-generating model (JSON Lines, one
``{"case_id", "report"}`` per case, produced outside RadTrust) evaluated against a dataset
manifest whose label columns are reference findings (``radtrust_engine.report_evaluation``).

The result is an ordinary ``RunReport`` so that every reader of runs handles it: no label results
(no image was scored), the dataset as the manifest describes it, and the evaluation in
``report_generation``. A manifest label column is a finding when its name, read without case and
with underscores as spaces, is one of the extractor's observations ("pleural_effusion" is
"Pleural Effusion"); subgroups are the suite's attributes, suppressed by the shared disclosure
rules. Plain Python (no Django).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from radtrust_engine.loading import Manifest
from radtrust_engine.pipeline import ENGINE_VERSION, SuiteConfig, case_strata, dataset_info
from radtrust_engine.report import ImageConversions, RunReport
from radtrust_engine.report_evaluation import ReportInputError, evaluate_reports, read_reports
from radtrust_engine.report_findings import OBSERVATIONS

NOT_RUN_STATEMENT = (
    "RadTrust did not run this model. Its generated reports were produced elsewhere and uploaded; "
    "RadTrust checked the file's hash and its cases against the dataset manifest, read the findings "
    "each report states with its rule-based extractor, and compared them with the manifest's reference findings."
)
_BY_KEY = {name.lower(): name for name in OBSERVATIONS}


def observation(column: str) -> str | None:
    """The extractor's observation a manifest label column names, or None."""
    return _BY_KEY.get(column.replace("_", " ").strip().lower())


def finding_columns(class_names: Sequence[str]) -> dict[str, str]:
    """Label column -> observation, for the columns that name one; ``ReportInputError`` if none does."""
    found = {name: obs for name in class_names if (obs := observation(name)) is not None}
    if not found:
        raise ReportInputError(
            f"None of the output schema's classes ({', '.join(class_names) or 'none'}) is a finding the extractor reads "
            f"({', '.join(OBSERVATIONS)}); name the reference findings as those observations."
        )
    return found


def evaluate_report_run(data: bytes, manifest: Manifest, *, config: SuiteConfig, uncertain_as_present: bool = False) -> RunReport:
    """Read the generated reports (every manifest case once, ``read_reports``) and evaluate them
    against the manifest's reference findings; ``ReportInputError`` names the first offending rows."""
    columns = finding_columns(manifest.label_names)
    generated = read_reports(data, known_cases=manifest.image_paths)
    index = {name: j for j, name in enumerate(manifest.label_names)}
    reference = {case: {obs: int(manifest.labels[i, index[col]]) for col, obs in columns.items()} for i, case in enumerate(manifest.image_paths)}
    patients = dict(zip(manifest.image_paths, manifest.patient_ids, strict=True))
    rows = np.arange(len(manifest), dtype=np.int64)
    strata, missing = case_strata(manifest, rows, config)
    attributes = {name: dict(zip(manifest.image_paths, values.tolist(), strict=True)) for name, values in strata.items() if name in config.attributes}
    evaluation = evaluate_reports(
        generated,
        reference,
        patients,
        attributes,
        uncertain_as_present=uncertain_as_present,
        min_patients=config.min_patients,
        n_resamples=config.n_resamples,
        seed=config.seed,
        confidence=config.confidence,
    )
    statement = {"run_by_radtrust": False, "reports_sha256": hashlib.sha256(data).hexdigest(), "statement": NOT_RUN_STATEMENT}
    return RunReport(
        engine_version=ENGINE_VERSION,
        task="report_generation",
        config=config.to_dict(),
        preprocessing={},
        activation="none",
        output_mapping="findings read from the generated report text by the rule-based extractor",
        model=statement,
        dataset=dataset_info(manifest, rows, missing, [], {"filled": {}, "unreadable": []}, ImageConversions.collect([])),
        skipped=(),
        inference={**statement, "forward_passes": 0},
        results={},
        report_generation={**evaluation.to_dict(), "min_patients": config.min_patients, "finding_columns": columns},
    )
