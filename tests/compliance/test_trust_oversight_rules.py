"""FUTURE-AI Traceability 6 (human oversight) and Fairness 1 (bias sources) score from what they name:
the oversight and bias fields of the dossier, the clinicians assigned where the version is used,
overrides reported, and the datasheets' known limitations. Pure rules over hand-built evidence."""

from __future__ import annotations

from dataclasses import replace

from compliance.trust.evidence import DatasetEvidence, DeploymentEvidence, DossierEvidence, FeedbackEvidence, VersionEvidence
from compliance.trust.policy import DEFAULT_POLICY, rule_params
from compliance.trust.rules import BIAS_FIELDS, OVERSIGHT_FIELDS, RULES

BARE = VersionEvidence(
    version_id=1,
    label="ChestFM 1.0.0",
    artifact_sha256="",
    artifact_format="onnx",
    model={},
    lineage=(),
    audit_chain_ok=True,
    audit_events_checked=10,
    audit_broken_reason="",
    datasets=(),
    runs=(),
    deployments=(),
    feedback=FeedbackEvidence(),
    baseline_run_id=None,
    today="2026-12-07",
)


def _dossier(*answered: str) -> DossierEvidence:
    return DossierEvidence(id=3, revision=1, status="draft", ratio=0.5, missing=(), frozen=False, answered=answered)


def _deployment(institution: str, clinicians: int, overrides: int = 0) -> DeploymentEvidence:
    return DeploymentEvidence(
        id=hash(institution) % 100,
        institution=institution,
        status="active",
        since="2026-01-01",
        local_run_id=None,
        local_run_before_go_live=False,
        revalidation_overdue=False,
        recent_feedback=0,
        clinicians=clinicians,
        overrides=overrides,
    )


def _dataset(name: str, missing: tuple[str, ...]) -> DatasetEvidence:
    return DatasetEvidence(id=len(name), name=name, roles=("fine_tuning",), institution="north", completeness=0.9, missing_items=missing)


def _apply(rule: str, evidence: VersionEvidence):
    return RULES[rule].function(evidence, rule_params(rule, None))


def test_oversight_has_no_evidence_without_a_dossier_or_a_deployment():
    outcome = _apply("human_oversight", BARE)
    assert outcome.value is None and outcome.status == "no_evidence"


def test_oversight_documented_but_not_deployed_scores_the_fields_and_the_override():
    full = _apply("human_oversight", replace(BARE, dossier=_dossier(*OVERSIGHT_FIELDS)))
    assert full.value == 1.0 and full.status == "met"
    none = _apply("human_oversight", replace(BARE, dossier=_dossier()))
    assert none.value == 0.0 and "override not documented" in none.explanation


def test_oversight_in_use_needs_clinicians_assigned_and_overrides_used():
    evidence = replace(BARE, dossier=_dossier(*OVERSIGHT_FIELDS), deployments=(_deployment("north", 4), _deployment("south", 0)))
    outcome = _apply("human_oversight", evidence)
    # fields 1, clinicians at 1 of 2 sites 0.5, override documented but never used 0.5
    assert outcome.value == round((1 + 0.5 + 0.5) / 3, 4) and outcome.inputs["sites_without_clinician"] == ["south"]
    used = replace(evidence, deployments=(_deployment("north", 4, overrides=7),))
    assert _apply("human_oversight", used).value == 1.0


def test_the_audit_chain_no_longer_stands_for_oversight_in_the_default_policy():
    traceability = [c["rule"] for c in DEFAULT_POLICY["principles"]["traceability"]["criteria"]]
    assert "human_oversight" in traceability and "audit_chain" not in traceability
    broken = replace(BARE, audit_chain_ok=False, dossier=_dossier())
    assert _apply("human_oversight", broken).value == 0.0  # oversight is not the chain: nothing documented, nothing scored


def test_bias_sources_read_the_dossier_and_the_datasheets():
    assert _apply("bias_sources", BARE).status == "no_evidence"
    evidence = replace(BARE, dossier=_dossier(BIAS_FIELDS[0]), datasets=(_dataset("a", ()), _dataset("bb", ("known_limitations",))))
    outcome = _apply("bias_sources", evidence)
    assert outcome.value == 0.5 and "10_2g_bias_measures" in outcome.explanation and "datasheet of bb" in outcome.explanation
    complete = replace(BARE, dossier=_dossier(*BIAS_FIELDS), datasets=(_dataset("a", ()),))
    assert _apply("bias_sources", complete).status == "met"
    assert "bias_sources" in [c["rule"] for c in DEFAULT_POLICY["principles"]["fairness"]["criteria"]]
