"""Scoring rules: each turns a version's evidence into one criterion's value in [0, 1].

A rule is a pure function of ``VersionEvidence`` and its params: it reads nothing else (no
database, no clock), and where the evidence it needs is missing it returns ``value=None``
(status ``no_evidence``), never a default number. Runs are read from ``evidence.runs`` only
(succeeded runs of the assessed version). Multi-label reports: gaps and drops take the
worst label and name it.

The CI-aware threshold rule (``threshold_verdict``) is used by every gap, drop and spread:
the CI's upper end below the threshold passes (1.0, "met"); its lower end above fails with
``0.5 * threshold / observed`` (in (0, 0.5), lower the larger the excess, "not_met"); a CI
spanning the threshold is "uncertain" (0.5), never a pass. Without a CI the point decides.
Of several candidates (labels, attributes, conditions) the one scoring lowest counts (ties:
the larger observed value); the newest run that has the section is used and linked.

Gaps between groups (the fairness gaps and the site AUROC gap) also read the gap's minimum
detectable difference at 80% power (``FairnessGap.mdd``, docs/methods.md): unless some gap
already exceeds its threshold ("not_met"), a gap whose minimum detectable difference is above
the threshold could have hidden a gap of that size, so the criterion has no value
("no_evidence") and says how many patients per group would be needed
(``FairnessGap.patients_needed``), never "met".

Criteria (the rule name is the default policy's key; params in brackets, with defaults):

| Rule                      | FUTURE-AI           | Value                                                                          | Params                    | No evidence (None) when                       |
|---------------------------|---------------------|--------------------------------------------------------------------------------|---------------------------|-----------------------------------------------|
| bias_sources              | Fairness 1          | mean of: share of the dossier's bias fields answered (examination, measures),  | -                         | no dossier and no linked dataset              |
|                           |                     | share of linked datasheets stating known gaps and limitations                  |                           |                                               |
| demographic_completeness  | Fairness 2          | mean over linked datasets of the share of sex, age_band, ethnicity with counts | -                         | no linked dataset                             |
| subgroup_coverage         | Fairness 3          | share of collected individual attributes (datasheets of evaluated data, run   | -                         | no run has subgroups, or no individual        |
|                           |                     | attributes) with >= 2 reportable groups in a run                               |                           | attribute was collected                       |
| largest_auroc_gap         | Fairness 3          | gap rule, worst AUROC gap by an individual attribute (*)                       | threshold 0.05            | no run has such a gap, or one could be missed |
| largest_fnr_gap           | Fairness 3          | gap rule, worst underdiagnosis (FNR) gap (*)                                   | threshold 0.10            | no run has such a gap, or one could be missed |
| equalized_odds_difference | Fairness 3          | gap rule, worst equalized-odds difference (*)                                  | threshold 0.10            | no run has such a gap, or one could be missed |
| clinical_settings         | Universality 1      | share of intended purpose, users, body region, modality stated                 | -                         | none stated                                   |
| community_standards       | Universality 2      | share of known checks met: ONNX artifact, DICOM input seen in a run, output    | -                         | never (the artifact format is known)          |
|                           |                     | schema naming classes with thresholds (an unknown check is left out)           |                           |                                               |
| external_sites            | Universality 3      | min(1, sites / target); sites = max(external institutions and sites other than | target_sites 3            | no external_validation run and no federated   |
|                           |                     | the provider that reported to a federated study, site groups in the runs)      |                           | report from a site other than the provider    |
| scanner_vendors           | Universality 3      | min(1, vendors with reportable results / target)                               | target_vendors 2          | no run reports results by vendor              |
| site_auroc_gap            | Universality 3      | gap rule, largest AUROC gap between sites                                      | threshold 0.05            | no run compares sites, or a gap could be     |
|                           |                     |                                                                                |                           | missed (too few patients)                     |
| site_heterogeneity        | Universality 3      | AUROC meta-analysis of the newest federated study with >= 2 sites, worst label:| min_auroc 0.7,            | no federated study has two sites with an      |
|                           |                     | 1 if the prediction interval's lower end >= min_auroc and heterogeneity is not | max_i2 0.5                | AUROC (a one-site study's refusal is shown)   |
|                           |                     | shown; 0.5 (uncertain) if shown (I² >= max_i2 AND Cochran's Q p < 0.10) or     |                           |                                               |
|                           |                     | k = 2 (no prediction interval); below min_auroc                                |                           |                                               |
|                           |                     | (k = 2: the pooled CI's upper end) 0.5 x (low - 0.5) / (min_auroc - 0.5)       |                           |                                               |
| local_validation          | Universality 4      | share of deployments with a local run before go-live (planned: one exists)     | -                         | not deployed                                  |
| datasheet_completeness    | Traceability 2      | mean datasheet completeness of the linked datasets                             | -                         | no linked dataset                             |
| dossier_completeness      | Traceability 2      | share of required fields filled in the newest revision (frozen at submission;  | -                         | no dossier opened                             |
|                           |                     | officer fields only while a draft); met only when signed and complete          |                           |                                               |
| artifact_verified         | Traceability 2      | share of runs that verified this artifact's SHA-256                            | -                         | no run                                        |
| outputs_computed_here     | Traceability 2      | share of runs in which RadTrust ran the verified artifact (not uploaded        | -                         | no run                                        |
|                           |                     | outputs produced elsewhere); artifact_verified counts only those runs          |                           |                                               |
| lineage_complete          | Traceability 2      | share of versions in the lineage with training provenance                      | -                         | lineage not recorded                          |
| human_oversight           | Traceability 6      | mean of: share of the human-oversight dossier fields answered; share of open   | -                         | no dossier and not deployed                   |
|                           |                     | deployments with a clinician assigned; override documented (half) and, once    |                           |                                               |
|                           |                     | deployed, used (half: a clinician reported reading a case differently)         |                           |                                               |
| audit_chain               | Traceability 6      | 1 if the audit chain verifies, else 0 (kept for stored policies)               | -                         | no audit event checked                        |
| quality_control           | Traceability 3      | share shown by some run: uncertainty flags, OOD (drift vs baseline), ECE       | -                         | no run                                        |
| revalidation_on_schedule  | Traceability 4      | share of active deployments not overdue                                        | -                         | no active deployment                          |
| usage_logging             | Traceability 5      | share of active deployments logging use: logger token, newest inference within | recent_days=30            | no active deployment                          |
|                           |                     | recent_days, usage logs kept >= 183 days (compliance.usage_logs)               |                           |                                               |
| intended_use              | Usability 1         | share of purpose, users, instructions, limitations stated                      | -                         | none stated                                   |
| feedback_interface        | Usability 2         | 1 if feedback was received, 0 if actively deployed without any                 | -                         | not in use, no feedback                       |
| agreement_rate            | Usability 4, 5      | (agree + partly / 2) / n; status from its Wilson CI against the target         | target 0.8, min_n 30      | n < min_n                                     |
| usability_rating          | Usability 4         | (mean - 1) / 4 of fitted_workflow and uncertainty_helped; CI against target    | target 3.5, min_n 30      | n < min_n                                     |
| minutes_saved             | Usability 5         | clip(0.5 + mean / (2 x scale), 0, 1); met if its CI is above 0                 | scale 5, min_n 30         | n < min_n                                     |
| variation_sources         | Robustness 1        | per linked dataset: half for scanners, half for protocols recorded; mean       | -                         | no linked dataset                             |
| training_diversity        | Robustness 2        | mean of min(1, vendors / target) and min(1, protocols / target), training data | target_vendors 3,         | no training datasheet records scanners or     |
|                           |                     |                                                                                | target_protocols 3        | protocols                                     |
| perturbation_drop         | Robustness 3        | threshold rule, worst AUROC (detectors: CPM) drop over perturbations           | threshold 0.10            | no run has robustness                         |
| generalisation_spread     | Robustness 3        | threshold rule, largest leave-one-out AUROC spread (site, vendor); no CI       | threshold 0.05            | no run has generalisation                     |
| no_forgetting             | Robustness 3        | an adaptation's tasks of its parent and base (paired AUROC change per dataset | margin 0.02               | not a recorded adaptation, or neither parent  |
|                           |                     | and label, change log): kept 1 (CI lower end above -margin), uncertain 0.5,   |                           | nor base has a succeeded run                  |
|                           |                     | forgotten 0 (CI upper end below -margin), not re-evaluated or unpaired 0;     |                           |                                               |
|                           |                     | mean; not_met when any task is forgotten                                       |                           |                                               |
| explainability_needs      | Explainability 1    | 1 if explainability needs are stated                                           | -                         | not stated                                    |
| faithfulness              | Explainability 2    | per curve: beats random 1, undecided 0.5, worse 0; method = mean of deletion   | min_difference 0.02       | no run has explainability                     |
|                           |                     | and insertion; the best method over all explained cases (``pooled``, shared by |                           |                                               |
|                           |                     | the labels); reports without ``pooled``: the best method, the worst label      |                           |                                               |
| explanation_rating        | Explainability 2    | (mean - 1) / 4 of explanation_helped; CI against the target                    | target 3.5, min_n 30      | n < min_n                                     |

(*) Individual attributes only (site and scanner belong to universality and robustness);
intersections count when the param include_intersections is 1 (default 0). "Gap rule": the
threshold rule, and None (insufficient evidence, with the patients per group needed) where the
run could not have detected a gap of the threshold's size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from compliance.trust.evidence import FederatedStudyEvidence, Link, RatingEvidence, RunEvidence, VersionEvidence
from compliance.trust.rule_kit import (
    ACQUISITION,
    DEMOGRAPHICS,
    RULES,
    RUN_NAME,
    Outcome,
    Rule,
    dicom_input,
    documented,
    feedback_link,
    group_patients,
    groups_of,
    insufficient_evidence,
    label_suffix,
    listed_values,
    mean_ci,
    newest_with,
    pooled_ratings,
    rating_outcome,
    rounded,
    run_labels,
    run_link,
    scoring_rule,
    share_of_deployments,
    share_status,
    study_link,
    target_status,
    threshold_outcome,
    threshold_verdict,
    underpowered_outcome,
    worst_of,
)
from radtrust_engine.stats import wilson_interval

__all__ = ["RULES", "Rule", "Outcome", "threshold_verdict"]  # the registry, filled below, and what callers use


# --- Fairness -----------------------------------------------------------------------

# The dossier fields that document where bias may come from and what was done about it (Art. 10(2)(f)-(g)).
BIAS_FIELDS = ("10_2f_bias_examination", "10_2g_bias_measures")
# The dossier fields that document human oversight (Art. 13(3)(d), 14(4)); the override is scored on its own too.
OVERSIGHT_FIELDS = (
    "13_3d_oversight",
    "14_4a_understand_and_monitor",
    "14_4b_automation_bias",
    "14_4c_interpretation",
    "14_4d_override",
    "14_4e_stop",
)
OVERRIDE_FIELD = "14_4d_override"


def _dossier_link(evidence: VersionEvidence) -> tuple[Link, ...]:
    d = evidence.dossier
    return (Link("dossier", d.id, f"Dossier revision {d.revision}"),) if d else ()


@scoring_rule("bias_sources")
def bias_sources(evidence: VersionEvidence, params: dict) -> Outcome:
    """Fairness 1: the sources of bias identified in the dossier and the datasheets, not guessed from counts."""
    parts, found = [], {}
    if evidence.dossier is not None:
        answered = [k for k in BIAS_FIELDS if k in evidence.dossier.answered]
        parts.append(len(answered) / len(BIAS_FIELDS))
        found["dossier_fields_answered"] = answered
        found["dossier_fields_missing"] = [k for k in BIAS_FIELDS if k not in answered]
    if evidence.datasets:
        stated = [d.name for d in evidence.datasets if "known_limitations" not in d.missing_items]
        parts.append(len(stated) / len(evidence.datasets))
        found["datasheets_stating_limitations"] = stated
        found["datasheets_without"] = [d.name for d in evidence.datasets if d.name not in stated]
    if not parts:
        return insufficient_evidence("No dossier and no linked dataset document where bias may come from.")
    value = sum(parts) / len(parts)
    gaps = [*found.get("dossier_fields_missing", []), *(f"datasheet of {n}" for n in found.get("datasheets_without", []))]
    return Outcome(
        value=rounded(value),
        status=share_status(value),
        inputs=found,
        explanation="Bias sources documented" + (f"; missing: {', '.join(gaps)}." if gaps else " in the dossier and every datasheet."),
        links=_dossier_link(evidence) + tuple(Link("dataset", d.id, d.name) for d in evidence.datasets),
    )


@scoring_rule("demographic_completeness")
def demographic_completeness(evidence: VersionEvidence, params: dict) -> Outcome:
    if not evidence.datasets:
        return insufficient_evidence("No dataset is linked to this version, so no demographic attribute is known to be collected.")
    missing = {d.name: [a for a in DEMOGRAPHICS if not (d.demographics or {}).get(a)] for d in evidence.datasets}
    value = sum(1 - len(m) / len(DEMOGRAPHICS) for m in missing.values()) / len(missing)
    gaps = "; ".join(f"{name} lacks {', '.join(m)}" for name, m in missing.items() if m)
    return Outcome(
        value=rounded(value),
        status=share_status(value),
        inputs={"missing": missing},
        explanation=f"Datasheets record {value:.0%} of the demographic attributes ({', '.join(DEMOGRAPHICS)}) on average"
        + (f"; {gaps}." if gaps else "."),
        links=tuple(Link("dataset", d.id, d.name) for d in evidence.datasets),
    )


@scoring_rule("subgroup_coverage")
def subgroup_coverage(evidence: VersionEvidence, params: dict) -> Outcome:
    runs = [r for r in evidence.runs if any(section.subgroups for _, section in run_labels(r))]
    if not runs:
        return insufficient_evidence("No run of this version has a subgroup analysis.")
    evaluated_ids = {r.dataset_id for r in evidence.runs}
    collected = {RUN_NAME.get(a, a) for d in evidence.datasets if d.id in evaluated_ids for a, counts in (d.demographics or {}).items() if counts}
    for run in evidence.runs:
        collected |= run.report.attributes_collected
    collected -= ACQUISITION
    if not collected:
        return insufficient_evidence("No individual attribute (sex, age, ethnicity) was collected for the evaluated data.")
    evaluated = sorted(a for a in collected if any(len(groups_of(r, a)) >= 2 for r in runs))
    missing = sorted(collected - set(evaluated))
    value = len(evaluated) / len(collected)
    return Outcome(
        value=rounded(value),
        status=share_status(value),
        inputs={"collected": sorted(collected), "evaluated": evaluated, "not_evaluated": missing},
        explanation=f"{len(evaluated)} of {len(collected)} collected attributes evaluated by subgroup"
        + (f"; no two reportable groups for {', '.join(missing)}." if missing else "."),
        links=tuple(run_link(r) for r in runs),
    )


_GAP_WORDS = {
    "auroc_gap": "Largest AUROC gap",
    "fnr_gap": "Largest underdiagnosis (FNR) gap",
    "equalized_odds_difference": "Equalized-odds difference",
}


def _gap_candidates(run: RunEvidence, kind: str, params: dict, attributes: Callable[[list], bool]) -> list[dict]:
    found = []
    for label, section in run_labels(run):
        for gap in section.gaps:
            names = list(gap.attributes)
            if gap.kind != kind or gap.value is None or not names or not attributes(names):
                continue
            threshold = params["threshold"]
            score, status = threshold_verdict(gap.value, gap.ci_low, gap.ci_high, threshold)
            group_high, group_low = listed_values(gap.group_high), listed_values(gap.group_low)
            sizes = [group_patients(section, names, g) for g in (group_high, group_low)]
            high, low = (", ".join(map(str, g or [])) for g in (group_high, group_low))
            who = {"auroc_gap": f"{low} lowest", "fnr_gap": f"{high} most underdiagnosed"}.get(
                kind, f"false-positive rate higher for {high}" if gap.component == "fpr" else f"sensitivity lower for {low}"
            )
            if group_high is None:
                who = "no difference between the groups"
            blind = status != "not_met" and gap.mdd is not None and gap.mdd > threshold
            found.append(
                {
                    "label": label,
                    "observed": gap.value,
                    "ci_low": gap.ci_low,
                    "ci_high": gap.ci_high,
                    "score": score,
                    "status": status,
                    "n": min((s for s in sizes if s is not None), default=None),
                    "where": f" by {' x '.join(names)} ({who})",
                    "mdd": gap.mdd,
                    "blind": blind,
                    "note": "" if gap.mdd is None else f"; a gap of {gap.mdd:.3f} or more would have been detected with 80% power",
                    "extra": {
                        "attributes": names,
                        "group_high": group_high,
                        "group_low": group_low,
                        "component": gap.component,
                        "mdd": rounded(gap.mdd),
                        "patients_needed": gap.patients_needed(threshold) if blind else None,
                    },
                }
            )
    return found


def _gap_outcome(run: RunEvidence, found: list[dict], threshold: float, sentence: str) -> Outcome:
    """The threshold rule over a run's gaps, except that a gap the run could not have seen is no
    evidence that there is none: unless some gap already exceeds the threshold, a gap whose
    minimum detectable gap is above it leaves the criterion without evidence, and says how many
    patients per group would be needed."""
    worst = worst_of(found)
    blind = [c for c in found if c["blind"]]
    if worst["status"] == "not_met" or not blind:
        return threshold_outcome(run, worst, threshold, sentence)
    return underpowered_outcome(run, max(blind, key=lambda c: c["extra"]["patients_needed"]), threshold, sentence)


def _fairness_gap(evidence: VersionEvidence, params: dict, kind: str) -> Outcome:
    def individual(names: list) -> bool:
        return not set(names) & ACQUISITION and (len(names) == 1 or params["include_intersections"] >= 0.5)

    run, found = newest_with(evidence, lambda r: _gap_candidates(r, kind, params, individual))
    if run is None:
        return insufficient_evidence(
            f"No run of this version reports a {_GAP_WORDS[kind][0].lower() + _GAP_WORDS[kind][1:]} by an individual attribute (no subgroup analysis)."
        )
    return _gap_outcome(run, found, params["threshold"], _GAP_WORDS[kind])


_GAP_PARAMS = {"include_intersections": (0, 0, 1)}


@scoring_rule("largest_auroc_gap", threshold=(0.05, 0.001, 1.0), **_GAP_PARAMS)
def largest_auroc_gap(evidence: VersionEvidence, params: dict) -> Outcome:
    return _fairness_gap(evidence, params, "auroc_gap")


@scoring_rule("largest_fnr_gap", threshold=(0.10, 0.001, 1.0), **_GAP_PARAMS)
def largest_fnr_gap(evidence: VersionEvidence, params: dict) -> Outcome:
    return _fairness_gap(evidence, params, "fnr_gap")


@scoring_rule("equalized_odds_difference", threshold=(0.10, 0.001, 1.0), **_GAP_PARAMS)
def equalized_odds_difference(evidence: VersionEvidence, params: dict) -> Outcome:
    return _fairness_gap(evidence, params, "equalized_odds_difference")


# --- Universality -------------------------------------------------------------------


@scoring_rule("clinical_settings")
def clinical_settings(evidence: VersionEvidence, params: dict) -> Outcome:
    return documented(evidence, ("intended_purpose", "intended_users", "body_region", "modality"), "clinical settings")


@scoring_rule("community_standards")
def community_standards(evidence: VersionEvidence, params: dict) -> Outcome:
    schema = evidence.model.get("output_schema") or {}
    names = schema.get("class_names") or []
    dicom = [d for d in (dicom_input(r) for r in evidence.runs) if d is not None]
    checks = {
        "onnx_artifact": evidence.artifact_format.lower() == "onnx",
        "dicom_input": any(dicom) if dicom else None,
        "structured_findings": bool(names) and set(names) <= set(schema.get("thresholds") or {}),
    }
    known = {k: v for k, v in checks.items() if v is not None}
    value = sum(known.values()) / len(known)
    unmet = [k for k, v in known.items() if not v]
    unknown = [k for k, v in checks.items() if v is None]
    return Outcome(
        value=rounded(value),
        status=share_status(value),
        inputs=checks,
        explanation=f"{sum(known.values())} of {len(known)} community-standard checks met"
        + (f"; not met: {', '.join(unmet)}" if unmet else "")
        + (f"; not shown by any run: {', '.join(unknown)}" if unknown else "")
        + ".",
        links=(Link("version", evidence.version_id, evidence.label),),
    )


@scoring_rule("external_sites", target_sites=(3, 1, 50))
def external_sites(evidence: VersionEvidence, params: dict) -> Outcome:
    runs = [r for r in evidence.runs if "external_validation" in r.roles]
    federated: dict[str, tuple[FederatedStudyEvidence, int]] = {}  # site -> its newest study and patients there
    for study in evidence.federated:
        for site, patients in study.site_patients.items():
            if site != evidence.model.get("provider"):
                federated.setdefault(site, (study, patients))
    if not runs and not federated:
        return insufficient_evidence(
            "No run of this version on external validation data, and no site other than the provider has reported to a federated study."
        )
    institutions = sorted({r.institution for r in runs} | set(federated))
    sites = sorted(set().union(*(groups_of(r, "site") for r in runs)))
    count = max(len(institutions), len(sites))
    newest = {r.dataset_id: r for r in reversed(runs)}
    patients = sum(r.report.dataset.n_patients or 0 for r in newest.values()) + sum(n for _, n in federated.values())
    value = min(1.0, count / params["target_sites"])
    studies = {study.id: study for study, _ in federated.values()}.values()
    reported = f"; {len(federated)} reported through federated studies ({', '.join(sorted(federated))})" if federated else ""
    return Outcome(
        value=rounded(value),
        status=share_status(value),
        inputs={
            "sites": count,
            "institutions": institutions,
            "site_groups": sites,
            "federated_sites": sorted(federated),
            "target_sites": params["target_sites"],
        },
        explanation=f"Evaluated on {count} external site(s) ({', '.join(sites if len(sites) > len(institutions) else institutions)}) "
        f"against a target of {params['target_sites']:g}{reported}.",
        links=tuple(run_link(r) for r in runs) + tuple(study_link(s) for s in studies),
        n=patients or None,
    )


@scoring_rule("scanner_vendors", target_vendors=(2, 1, 20))
def scanner_vendors(evidence: VersionEvidence, params: dict) -> Outcome:
    runs = [r for r in evidence.runs if groups_of(r, "scanner_manufacturer")]
    if not runs:
        return insufficient_evidence("No run of this version reports results by scanner vendor.")
    vendors = sorted(set().union(*(groups_of(r, "scanner_manufacturer") for r in runs)))
    value = min(1.0, len(vendors) / params["target_vendors"])
    return Outcome(
        value=rounded(value),
        status=share_status(value),
        inputs={"vendors": vendors, "target_vendors": params["target_vendors"]},
        explanation=f"Evaluated on {len(vendors)} scanner vendor(s) ({', '.join(vendors)}) against a target of {params['target_vendors']:g}.",
        links=tuple(run_link(r) for r in runs),
    )


@scoring_rule("site_auroc_gap", threshold=(0.05, 0.001, 1.0))
def site_auroc_gap(evidence: VersionEvidence, params: dict) -> Outcome:
    run, found = newest_with(evidence, lambda r: _gap_candidates(r, "auroc_gap", params, lambda names: names == ["site"]))
    if run is None:
        return insufficient_evidence("No run of this version compares AUROC across two or more sites.")
    return _gap_outcome(run, found, params["threshold"], "Largest AUROC gap between sites")


Q_TEST_ALPHA = 0.10


def heterogeneity_shown(i2: float, q_p: float | None, max_i2: float) -> bool:
    """Between-site heterogeneity is called only where I² reaches ``max_i2`` and Cochran's Q rejects
    homogeneity at ``Q_TEST_ALPHA``. I² alone is no test: with no true difference and exact standard
    errors, four sites give I² >= 0.5 in 11% of studies (Q >= 2 df) and a mean I² of 0.14. Q has little
    power with few sites, so its conventional level is 0.10, not 0.05. A meta-analysis stored without
    ``q_p`` is judged on I² alone."""
    return i2 >= max_i2 and (q_p is None or q_p < Q_TEST_ALPHA)


def _heterogeneity(meta: dict, min_auroc: float, max_i2: float) -> tuple[float, str, str]:
    """Score, status and verdict words for one label's AUROC meta-analysis (k >= 2)."""
    i2, low = meta["i2"], meta["prediction_low"]
    if low is None:  # two sites: no prediction interval for a new one
        if meta["ci_high"] < min_auroc:
            return 0.5 * min(1.0, max(0.0, (meta["ci_high"] - 0.5) / (min_auroc - 0.5))), "not_met", f"even the pooled CI stays below {min_auroc:g}"
        return 0.5, "uncertain", f"{meta.get('prediction_note') or 'no prediction interval for a new site'}; the spread cannot be judged yet"
    if low < min_auroc:
        return 0.5 * min(1.0, max(0.0, (low - 0.5) / (min_auroc - 0.5))), "not_met", f"a new site may fall below {min_auroc:g}"
    q_p = meta.get("q_p")
    if i2 < max_i2:
        return 1.0, "met", f"a new site is expected at {min_auroc:g} or above and I² is under {max_i2:.0%}"
    if not heterogeneity_shown(i2, q_p, max_i2):
        return (
            1.0,
            "met",
            (
                f"a new site is expected at {min_auroc:g} or above; I² is {max_i2:.0%} or more, but Cochran's Q does not show "
                f"heterogeneity (p {q_p:.2f}, level {Q_TEST_ALPHA:g})"
            ),
        )
    shown = "" if q_p is None else f" and Cochran's Q shows heterogeneity (p {q_p:.2g} < {Q_TEST_ALPHA:g})"
    return 0.5, "uncertain", f"a new site is expected at {min_auroc:g} or above, but I² is {max_i2:.0%} or more{shown}"


@scoring_rule("site_heterogeneity", min_auroc=(0.7, 0.51, 0.99), max_i2=(0.5, 0.01, 1.0))
def site_heterogeneity(evidence: VersionEvidence, params: dict) -> Outcome:
    study = next((s for s in evidence.federated if any(m["k"] >= 2 for m in s.auroc.values())), None)
    if study is None:
        refused = next(((s, label, m) for s in evidence.federated for label, m in s.auroc.items() if m.get("refused_reason")), None)
        if refused is None:
            return insufficient_evidence("No federated study of this version has reports from two or more sites.")
        s, label, meta = refused
        return insufficient_evidence(f"Federated study {s.name} ({label}): {meta['refused_reason']}", study=s.id, label=label, k=meta["k"])
    found = []
    for label, meta in study.auroc.items():
        if meta["k"] >= 2:
            score, status, words = _heterogeneity(meta, params["min_auroc"], params["max_i2"])
            found.append({"label": label, "meta": meta, "score": score, "status": status, "words": words, "observed": meta["i2"]})
    worst = worst_of(found)
    meta = worst["meta"]
    interval = (
        f"prediction interval for a new site {meta['prediction_low']:.3f}-{meta['prediction_high']:.3f}"
        if meta["prediction_low"] is not None
        else "no prediction interval"
    )
    suffix = f" for {worst['label']}" if len(study.auroc) > 1 else ""
    return Outcome(
        value=rounded(worst["score"]),
        status=worst["status"],
        n=sum(study.site_patients.values()) or None,
        ci_width=rounded(meta["ci_high"] - meta["ci_low"]),
        inputs={
            "study": study.id,
            "label": worst["label"],
            "k": meta["k"],
            **{key: rounded(meta[key]) for key in ("estimate", "ci_low", "ci_high", "prediction_low", "prediction_high", "i2", "tau2")},
            "q_p": rounded(meta.get("q_p")),
            "min_auroc": params["min_auroc"],
            "max_i2": params["max_i2"],
            "q_test_alpha": Q_TEST_ALPHA,
        },
        explanation=f"Across {meta['k']} sites of federated study {study.name}{suffix}: pooled AUROC {meta['estimate']:.3f} "
        f"({round(100 * meta.get('confidence', 0.95)):d}% CI {meta['ci_low']:.3f}-{meta['ci_high']:.3f}), I² {meta['i2']:.0%}, {interval}: {worst['words']}.",
        links=(study_link(study),),
    )


@scoring_rule("local_validation")
def local_validation(evidence: VersionEvidence, params: dict) -> Outcome:
    def ok(d) -> bool:
        return d.local_run_id is not None and (d.status == "planned" or d.local_run_before_go_live)

    outcome = share_of_deployments(
        evidence, ("planned", "active", "suspended"), ok, "were validated on local data before go-live", "The version is not deployed anywhere yet."
    )
    runs = tuple(Link("run", d.local_run_id, f"Local run {d.local_run_id} ({d.institution})") for d in evidence.deployments if d.local_run_id)
    return replace(outcome, links=outcome.links + runs)


# --- Traceability -------------------------------------------------------------------


@scoring_rule("datasheet_completeness")
def datasheet_completeness(evidence: VersionEvidence, params: dict) -> Outcome:
    if not evidence.datasets:
        return insufficient_evidence("No dataset is linked to this version.")
    value = sum(d.completeness for d in evidence.datasets) / len(evidence.datasets)
    worst = min(evidence.datasets, key=lambda d: d.completeness)
    missing = {d.name: list(d.missing_items) for d in evidence.datasets if d.missing_items}
    return Outcome(
        value=rounded(value),
        status=share_status(value),
        inputs={"completeness": {d.name: rounded(d.completeness) for d in evidence.datasets}, "missing": missing},
        explanation=f"Datasheets are {value:.0%} complete on average"
        + (
            f"; least complete: {worst.name} ({worst.completeness:.0%}, missing {', '.join(worst.missing_items[:5])})."
            if worst.missing_items
            else "."
        ),
        links=tuple(Link("dataset", d.id, d.name) for d in evidence.datasets),
    )


@scoring_rule("dossier_completeness")
def dossier_completeness(evidence: VersionEvidence, params: dict) -> Outcome:
    dossier = evidence.dossier
    if dossier is None:
        return insufficient_evidence("No dossier has been opened for this version.")
    signed = dossier.status == "signed"
    status = "met" if signed and not dossier.missing else "not_met" if dossier.ratio <= 1e-9 else "partly"
    counted = "as frozen at submission" if dossier.frozen else "officer-written fields only (evidence fields are counted at submission)"
    return Outcome(
        value=rounded(dossier.ratio),
        status=status,
        inputs=dossier.to_dict(),
        explanation=f"Dossier revision {dossier.revision} ({dossier.status.replace('_', ' ')}) is {dossier.ratio:.0%} complete, {counted}"
        + (f"; missing {', '.join(dossier.missing[:5])}." if dossier.missing else ".")
        + ("" if signed else " It is not signed yet."),
        links=(Link("dossier", dossier.id, f"revision {dossier.revision}"),),
    )


@scoring_rule("artifact_verified")
def artifact_verified(evidence: VersionEvidence, params: dict) -> Outcome:
    runs = [r for r in evidence.runs if not r.outputs_uploaded]  # uploaded outputs load no artifact: outputs_computed_here
    if not runs:
        return insufficient_evidence("No run has verified this version's artifact yet.")
    bad = [r.id for r in runs if not evidence.artifact_sha256 or r.artifact_sha256 != evidence.artifact_sha256]
    value = 1 - len(bad) / len(runs)
    return Outcome(
        value=rounded(value),
        status=share_status(value),
        inputs={"runs": len(runs), "mismatched_runs": bad, "sha256": evidence.artifact_sha256},
        explanation=f"{len(runs) - len(bad)} of {len(runs)} runs verified the artifact's SHA-256"
        + (f"; runs {', '.join(map(str, bad))} did not match." if bad else "."),
        links=tuple(run_link(r) for r in runs),
    )


@scoring_rule("outputs_computed_here")
def outputs_computed_here(evidence: VersionEvidence, params: dict) -> Outcome:
    """Traceability 2: evidence from outputs uploaded from elsewhere cannot be traced to the registered
    artifact (RadTrust did not run the model), so it weighs less than a run that verified and ran it."""
    if not evidence.runs:
        return insufficient_evidence("No run has evaluated this version yet.")
    uploaded = [r.id for r in evidence.runs if r.outputs_uploaded]
    value = 1 - len(uploaded) / len(evidence.runs)
    return Outcome(
        value=rounded(value),
        status=share_status(value),
        inputs={"runs": len(evidence.runs), "uploaded_output_runs": uploaded},
        explanation=f"RadTrust ran the model in {len(evidence.runs) - len(uploaded)} of {len(evidence.runs)} runs"
        + (
            f"; runs {', '.join(map(str, uploaded))} evaluated outputs uploaded from elsewhere (RadTrust did not run the model)." if uploaded else "."
        ),
        links=tuple(run_link(r) for r in evidence.runs),
    )


@scoring_rule("lineage_complete")
def lineage_complete(evidence: VersionEvidence, params: dict) -> Outcome:
    if not evidence.lineage:
        return insufficient_evidence("The version's lineage is not recorded.")
    lacking = [step["label"] for step in evidence.lineage if not step.get("training_provenance")]
    value = 1 - len(lacking) / len(evidence.lineage)
    return Outcome(
        value=rounded(value),
        status=share_status(value),
        inputs={"versions": len(evidence.lineage), "without_training_provenance": lacking},
        explanation=f"{len(evidence.lineage) - len(lacking)} of {len(evidence.lineage)} versions in the lineage record their training data"
        + (f"; missing for {', '.join(lacking)}." if lacking else "."),
        links=tuple(Link("version", step["version_id"], step["label"]) for step in evidence.lineage),
    )


@scoring_rule("audit_chain")
def audit_chain(evidence: VersionEvidence, params: dict) -> Outcome:
    if evidence.audit_chain_ok and not evidence.audit_events_checked:
        return insufficient_evidence("No audit event was there to verify.")
    # A chain broken before its first event verifies (event #1 removed, a trail truncated behind a
    # checkpoint, an unusable checkpoint file) checks no event, and is still broken: not_met.
    link = (Link("audit", None, f"Audit chain ({evidence.audit_events_checked} events checked)"),)
    inputs = {"ok": evidence.audit_chain_ok, "events_checked": evidence.audit_events_checked, "reason": evidence.audit_broken_reason}
    if evidence.audit_chain_ok:
        return Outcome(1.0, "met", inputs, f"The audit chain verified intact over {evidence.audit_events_checked} events.", link)
    return Outcome(0.0, "not_met", inputs, f"The audit chain is broken: {evidence.audit_broken_reason or 'reason not given'}.", link)


@scoring_rule("human_oversight")
def human_oversight(evidence: VersionEvidence, params: dict) -> Outcome:
    """Traceability 6: oversight as documented and as organised where the version is used."""
    deployed = [d for d in evidence.deployments if d.status in {"planned", "active"}]
    if evidence.dossier is None and not deployed:
        return insufficient_evidence("No dossier documents human oversight and the version is not deployed.")
    answered = set(evidence.dossier.answered) if evidence.dossier else set()
    parts = {"oversight_fields": sum(k in answered for k in OVERSIGHT_FIELDS) / len(OVERSIGHT_FIELDS)}
    override = 1.0 if OVERRIDE_FIELD in answered else 0.0
    if deployed:
        parts["clinicians_assigned"] = sum(d.clinicians > 0 for d in deployed) / len(deployed)
        override = override / 2 + (0.5 if any(d.overrides for d in deployed) else 0.0)
    parts["override"] = override
    value = sum(parts.values()) / len(parts)
    lacking = [d.institution for d in deployed if not d.clinicians]
    words = [f"{sum(k in answered for k in OVERSIGHT_FIELDS)} of {len(OVERSIGHT_FIELDS)} oversight fields answered"]
    if deployed:
        words.append(f"a clinician assigned at {len(deployed) - len(lacking)} of {len(deployed)} deploying sites")
        words.append(f"{sum(d.overrides for d in deployed)} reports of a clinician overriding the output")
    words.append("override documented" if OVERRIDE_FIELD in answered else "override not documented")
    return Outcome(
        value=rounded(value),
        status=share_status(value),
        inputs={**{k: rounded(v) for k, v in parts.items()}, "sites_without_clinician": lacking},
        explanation=words[0][:1].upper() + "; ".join(words)[1:] + ".",
        links=_dossier_link(evidence) + tuple(Link("deployment", d.id, f"Deployment at {d.institution}") for d in deployed),
    )


_QC_CHECKS = {
    "uncertainty_flags": lambda r: any((s.uncertainty or {}).get("referral") for _, s in run_labels(r)),
    "out_of_distribution_check": lambda r: r.report.drift_compared,
    "calibration": lambda r: any(((s.calibration or {}).get("ece") or {}).get("value") is not None for _, s in run_labels(r)),
}


@scoring_rule("quality_control")
def quality_control(evidence: VersionEvidence, params: dict) -> Outcome:
    if not evidence.runs:
        return insufficient_evidence("No run of this version, so no input or output quality control is shown.")
    found = {name: next((r for r in evidence.runs if check(r)), None) for name, check in _QC_CHECKS.items()}
    present = [k for k, r in found.items() if r]
    absent = [k for k, r in found.items() if not r]
    value = len(present) / len(found)
    return Outcome(
        value=rounded(value),
        status=share_status(value),
        inputs={k: (r.id if r else None) for k, r in found.items()},
        explanation=f"{len(present)} of {len(found)} quality controls shown by a run" + (f"; none has {', '.join(absent)}." if absent else "."),
        links=tuple(dict.fromkeys(run_link(r) for r in found.values() if r)),
    )


@scoring_rule("revalidation_on_schedule")
def revalidation_on_schedule(evidence: VersionEvidence, params: dict) -> Outcome:
    return share_of_deployments(
        evidence, ("active",), lambda d: not d.revalidation_overdue, "are revalidated on schedule", "No active deployment, so no revalidation is due."
    )


SIX_MONTHS_DAYS = 183  # the least retention of usage logs, AI Act Art. 19(1) and 26(6)


@scoring_rule("usage_logging", recent_days=(30, 1, 365))
def usage_logging(evidence: VersionEvidence, params: dict) -> Outcome:
    """Traceability 5 from the usage logs themselves: the installation logs with its token, its newest
    logged inference is recent, and the logs are kept at least six months."""
    recent = int(params["recent_days"])

    def logging(d) -> bool:
        fresh = d.usage_days_since is not None and d.usage_days_since <= recent
        return d.usage_logger and fresh and (d.usage_retention_days or 0) >= SIX_MONTHS_DAYS

    return share_of_deployments(
        evidence,
        ("active",),
        logging,
        f"log their use (newest inference within {recent} days, kept at least six months)",
        "No active deployment whose use could be logged.",
    )


# --- Usability ----------------------------------------------------------------------


@scoring_rule("intended_use")
def intended_use(evidence: VersionEvidence, params: dict) -> Outcome:
    return documented(evidence, ("intended_purpose", "intended_users", "instructions_for_use", "known_limitations"), "intended use")


@scoring_rule("feedback_interface")
def feedback_interface(evidence: VersionEvidence, params: dict) -> Outcome:
    if evidence.feedback.n:
        return Outcome(
            1.0,
            "met",
            {"feedback": evidence.feedback.n},
            f"Clinicians have sent {evidence.feedback.n} feedback reports.",
            feedback_link(evidence.feedback.n),
        )
    active = [d.institution for d in evidence.deployments if d.status == "active"]
    if active:
        return Outcome(0.0, "not_met", {"feedback": 0, "active_at": active}, f"Active at {', '.join(active)} without any feedback report.")
    return insufficient_evidence("Not in use yet and no feedback received.")


@scoring_rule("agreement_rate", target=(0.8, 0.0, 1.0), min_n=(30, 1, 100000))
def agreement_rate(evidence: VersionEvidence, params: dict) -> Outcome:
    f = evidence.feedback
    if f.n < params["min_n"]:
        return insufficient_evidence(f"Only {f.n} feedback reports; at least {params['min_n']:g} are needed for an agreement rate.", n=f.n)
    rate = (f.n_agree + 0.5 * f.n_partly) / f.n
    low, high = wilson_interval(f.n_agree + 0.5 * f.n_partly, f.n)
    status = target_status(low, high, params["target"])
    return Outcome(
        value=rounded(rate),
        status=status,
        n=f.n,
        ci_width=rounded(high - low),
        links=feedback_link(f.n),
        inputs={
            "n": f.n,
            "agree": f.n_agree,
            "partly": f.n_partly,
            "disagree": f.n_disagree,
            "ci_low": rounded(low),
            "ci_high": rounded(high),
            "target": params["target"],
        },
        explanation=f"Clinicians agreed in {rate:.0%} of {f.n} reports (partly counts half; 95% CI {low:.0%}-{high:.0%}), target {params['target']:.0%}.",
    )


@scoring_rule("usability_rating", target=(3.5, 1.0, 5.0), min_n=(30, 1, 100000))
def usability_rating(evidence: VersionEvidence, params: dict) -> Outcome:
    ratings = evidence.feedback.ratings
    pooled = pooled_ratings([ratings[k] for k in ("fitted_workflow", "uncertainty_helped") if k in ratings])
    return rating_outcome(pooled, params, "workflow fit and uncertainty display")


@scoring_rule("minutes_saved", scale=(5, 0.5, 120), min_n=(30, 1, 100000))
def minutes_saved(evidence: VersionEvidence, params: dict) -> Outcome:
    rating = evidence.feedback.minutes_saved
    if rating.n < params["min_n"] or rating.mean is None or rating.mean_sq is None:
        return insufficient_evidence(f"Only {rating.n} reports of time saved or lost; at least {params['min_n']:g} are needed.", n=rating.n)
    mean, low, high = mean_ci(rating)
    if low is None:
        return insufficient_evidence("One report of time saved or lost says nothing of its spread; at least two are needed.", n=rating.n)
    value = min(1.0, max(0.0, 0.5 + mean / (2 * params["scale"])))
    status = "met" if low > 0 else "not_met" if high < 0 else "uncertain"
    verb = "saved" if mean >= 0 else "lost"
    return Outcome(
        value=rounded(value),
        status=status,
        n=rating.n,
        ci_width=rounded((high - low) / (2 * params["scale"])),
        links=feedback_link(rating.n),
        inputs={"n": rating.n, "mean_minutes": rounded(mean), "ci_low": rounded(low), "ci_high": rounded(high), "scale": params["scale"]},
        explanation=f"Clinicians {verb} {abs(mean):.1f} minutes per case on average (n={rating.n}, 95% CI {low:.1f} to {high:.1f}).",
    )


# --- Robustness ---------------------------------------------------------------------


@scoring_rule("variation_sources")
def variation_sources(evidence: VersionEvidence, params: dict) -> Outcome:
    if not evidence.datasets:
        return insufficient_evidence("No dataset is linked to this version.")
    lacking = {d.name: [k for k, v in (("scanners", d.scanners), ("protocols", d.protocols)) if not v] for d in evidence.datasets}
    value = sum(1 - len(m) / 2 for m in lacking.values()) / len(lacking)
    gaps = "; ".join(f"{name} lacks {', '.join(m)}" for name, m in lacking.items() if m)
    return Outcome(
        value=rounded(value),
        status=share_status(value),
        inputs={"missing": lacking},
        explanation=f"Datasheets record {value:.0%} of scanner and protocol information" + (f"; {gaps}." if gaps else "."),
        links=tuple(Link("dataset", d.id, d.name) for d in evidence.datasets),
    )


@scoring_rule("training_diversity", target_vendors=(3, 1, 20), target_protocols=(3, 1, 50))
def training_diversity(evidence: VersionEvidence, params: dict) -> Outcome:
    training = [d for d in evidence.datasets if set(d.roles) & {"pretraining", "fine_tuning"}]
    vendors = sorted({str(s.get("manufacturer")) for d in training for s in d.scanners if s.get("manufacturer")})
    protocols = sorted({str(p) for d in training for p in d.protocols})
    if not vendors and not protocols:
        return insufficient_evidence("No training dataset records its scanners or protocols.")
    value = (min(1.0, len(vendors) / params["target_vendors"]) + min(1.0, len(protocols) / params["target_protocols"])) / 2
    return Outcome(
        value=rounded(value),
        status=share_status(value),
        inputs={"vendors": vendors, "protocols": protocols, **{k: params[k] for k in ("target_vendors", "target_protocols")}},
        explanation=f"Training data spans {len(vendors)} scanner vendor(s) and {len(protocols)} protocol(s) "
        f"against targets of {params['target_vendors']:g} and {params['target_protocols']:g}.",
        links=tuple(Link("dataset", d.id, d.name) for d in training),
    )


def _drops(run: RunEvidence, threshold: float) -> list[dict]:
    """Every perturbation condition's drop: a label's AUROC, or a detection run's CPM (its lesions)."""
    sections = [(label, "auroc", section.robustness or {}) for label, section in run_labels(run)]
    if run.report.detection:
        sections.append(("lesions", "cpm", run.report.detection.get("robustness") or {}))
    found = []
    for label, metric, robustness in sections:
        for condition in robustness.get("conditions") or ():
            change = (condition.get("metrics") or {}).get(metric) or {}
            if change.get("change") is None:
                continue
            low = None if change.get("ci_high") is None else -change["ci_high"]
            high = None if change.get("ci_low") is None else -change["ci_low"]
            score, status = threshold_verdict(-change["change"], low, high, threshold)
            found.append(
                {
                    "label": label,
                    "observed": -change["change"],
                    "ci_low": low,
                    "ci_high": high,
                    "score": score,
                    "status": status,
                    "n": robustness.get("n_cases"),
                    "where": f" under {condition['condition']}",
                    "extra": {"condition": condition["condition"], **({"metric": metric} if metric != "auroc" else {})},
                }
            )
    return found


@scoring_rule("perturbation_drop", threshold=(0.10, 0.001, 1.0))
def perturbation_drop(evidence: VersionEvidence, params: dict) -> Outcome:
    run, found = newest_with(evidence, lambda r: _drops(r, params["threshold"]))
    if run is None:
        return insufficient_evidence("No run of this version has a robustness analysis.")
    worst = worst_of(found)
    return threshold_outcome(run, worst, params["threshold"], "Worst CPM drop" if worst["extra"].get("metric") == "cpm" else "Worst AUROC drop")


def _spreads(run: RunEvidence, threshold: float) -> list[dict]:
    found = []
    for label, section in run_labels(run):
        for grouping, data in ((section.generalisation or {}).get("groupings") or {}).items():
            spread = data.get("leave_one_out_spread")
            if spread is None:
                continue
            score, status = threshold_verdict(spread, None, None, threshold)
            found.append(
                {
                    "label": label,
                    "observed": spread,
                    "score": score,
                    "status": status,
                    "n": run.report.dataset.n_patients,
                    "where": f" across {grouping} groups",
                    "extra": {"grouping": grouping},
                }
            )
    return found


def _task_verdict(item: dict, margin: float) -> tuple[float, str]:
    """One task's change: kept, uncertain, forgotten, or not assessable (not re-evaluated, unpaired)."""
    detail = item["detail"]
    if detail.get("unassessed") or None in (detail.get("ci_low"), detail.get("ci_high")):
        return 0.0, "not assessable"
    if detail["ci_high"] < -margin:
        return 0.0, "forgotten"
    if detail["ci_low"] > -margin:
        return 1.0, "kept"
    return 0.5, "uncertain"


@scoring_rule("no_forgetting", margin=(0.02, 0.0, 0.2))
def no_forgetting(evidence: VersionEvidence, params: dict) -> Outcome:
    """Robustness 3 for an adaptation: does it still do what its parent and base could, on the same
    data? Each task (dataset and label) is judged on the paired AUROC change's interval against the
    margin; a task it was not re-evaluated on counts as lost until it is."""
    if evidence.tasks is None:
        return insufficient_evidence("Not a recorded adaptation of a foundation model: there are no tasks of a base to keep.")
    if not evidence.tasks:
        return insufficient_evidence("Neither the parent nor the base has a succeeded run: there is no task to re-evaluate.")
    margin = params["margin"]
    verdicts = [(item, *_task_verdict(item, margin)) for item in evidence.tasks]
    value = sum(v for _, v, _ in verdicts) / len(verdicts)
    counts = {word: sum(1 for *_, w in verdicts if w == word) for word in ("kept", "uncertain", "forgotten", "not assessable")}
    forgotten = [item["what"] for item, _, word in verdicts if word == "forgotten"]
    status = "not_met" if forgotten else share_status(value)
    runs = sorted({item["detail"][key] for item in evidence.tasks for key in ("parent_run", "child_run") if item["detail"].get(key)})
    return Outcome(
        value=rounded(value),
        status=status,
        inputs={"margin": margin, "tasks": len(verdicts), **{k.replace(" ", "_"): n for k, n in counts.items()}, "forgotten": forgotten},
        explanation=f"Of {len(verdicts)} tasks of the parent and base: {counts['kept']} kept, {counts['uncertain']} uncertain, "
        f"{counts['forgotten']} forgotten (AUROC interval entirely more than {margin:g} below the reference), "
        f"{counts['not assessable']} not re-evaluated on the same data" + (f"; forgotten: {'; '.join(forgotten)}." if forgotten else "."),
        links=tuple(Link("run", run_id, f"Run {run_id}") for run_id in runs),
    )


@scoring_rule("generalisation_spread", threshold=(0.05, 0.001, 1.0))
def generalisation_spread(evidence: VersionEvidence, params: dict) -> Outcome:
    run, found = newest_with(evidence, lambda r: _spreads(r, params["threshold"]))
    if run is None:
        return insufficient_evidence("No run of this version has a site or vendor generalisation analysis.")
    return threshold_outcome(run, worst_of(found), params["threshold"], "Largest leave-one-out AUROC spread")


# --- Explainability -----------------------------------------------------------------


@scoring_rule("explainability_needs")
def explainability_needs(evidence: VersionEvidence, params: dict) -> Outcome:
    return documented(evidence, ("explainability_needs",), "explainability needs")


def _curve(difference: dict, sign: int, minimum: float) -> float:
    """1 beats random, 0 worse than random, 0.5 not distinguishable (``sign`` -1: lower is better)."""
    value, low, high = difference.get("value"), difference.get("ci_low"), difference.get("ci_high")
    if value is None or low is None or high is None or abs(value) < minimum:
        return 0.5
    better, worse = (high < 0, low > 0) if sign < 0 else (low > 0, high < 0)
    return 1.0 if better else 0.0 if worse else 0.5


def _scored_methods(label: str | None, explain: dict, minimum: float) -> list[dict]:
    """Each method of one explainability result (a label's own, or ``pooled``: label None) with its score."""
    found = []
    for method, data in (explain.get("methods") or {}).items():
        deletion, insertion = data.get("deletion_difference") or {}, data.get("insertion_difference") or {}
        widths = [d["ci_high"] - d["ci_low"] for d in (deletion, insertion) if d.get("ci_low") is not None and d.get("ci_high") is not None]
        found.append(
            {
                "label": label,
                "method": method,
                "score": (_curve(deletion, -1, minimum) + _curve(insertion, 1, minimum)) / 2,
                "verdict": data.get("verdict"),
                "n": explain.get("n_cases"),
                "ci_width": max(widths, default=None),
                "deletion": rounded(deletion.get("value")),
                "insertion": rounded(insertion.get("value")),
            }
        )
    return found


def _methods(run: RunEvidence, minimum: float) -> list[dict]:
    """The run's ``pooled`` explainability (one shared set of cases, the same in every label's report)
    when it has one: a label's own share of 2-3 cases (14 labels, 32 cases) is too few to judge.
    Reports stored before ``pooled`` existed explained each label's own cases: judged per label."""
    sections = [(label, section.explainability) for label, section in run_labels(run) if section.explainability]
    pooled = next((explain["pooled"] for _, explain in sections if (explain.get("pooled") or {}).get("methods")), None)
    if pooled is not None:
        return _scored_methods(None, pooled, minimum)
    return [m for label, explain in sections for m in _scored_methods(label, explain, minimum)]


@scoring_rule("faithfulness", min_difference=(0.02, 0.0, 0.5))
def faithfulness(evidence: VersionEvidence, params: dict) -> Outcome:
    run, found = newest_with(evidence, lambda r: _methods(r, params["min_difference"]))
    if run is None:
        return insufficient_evidence("No run of this version evaluates its explanations.")
    best = {}
    for m in found:
        if m["label"] not in best or m["score"] > best[m["label"]]["score"]:
            best[m["label"]] = m
    chosen = min(best.values(), key=lambda m: m["score"])
    score = chosen["score"]
    status = {1.0: "met", 0.0: "not_met", 0.5: "uncertain"}.get(score, "partly")
    pooled = chosen["label"] is None
    if not pooled:
        where = label_suffix(run, chosen["label"])
    elif label_suffix(run, ""):
        where = f" on all {chosen['n']} explained cases, shared by the labels (pooled)"
    else:
        where = ""
    return Outcome(
        value=score,
        status=status,
        n=chosen["n"],
        ci_width=rounded(chosen["ci_width"]),
        links=(run_link(run),),
        inputs={
            "run": run.id,
            "label": chosen["label"],
            "pooled": pooled,
            "method": chosen["method"],
            "deletion_difference": chosen["deletion"],
            "insertion_difference": chosen["insertion"],
            "verdict": chosen["verdict"],
            "min_difference": params["min_difference"],
        },
        explanation=f"Best explanation method {chosen['method']}{where}: {chosen['verdict']} "
        f"(deletion {chosen['deletion']}, insertion {chosen['insertion']} against the random baseline; run {run.id}).",
    )


@scoring_rule("explanation_rating", target=(3.5, 1.0, 5.0), min_n=(30, 1, 100000))
def explanation_rating(evidence: VersionEvidence, params: dict) -> Outcome:
    rating = evidence.feedback.ratings.get("explanation_helped") or RatingEvidence(n=0, mean=None, mean_sq=None)
    return rating_outcome(rating, params, "the explanations' help")
