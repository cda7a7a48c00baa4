"""Finding extraction from report text (``radtrust_engine.report_findings``) and the evaluation of
generated reports against reference findings (``radtrust_engine.report_evaluation``):
negation, uncertainty, the documented sentence table, confabulation and omission rates with
patient-level intervals, subgroups under the disclosure rules, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from radtrust_engine.report_evaluation import NOT_APPLICABLE, ReportInputError, evaluate_reports, read_reports, reference_from_reports
from radtrust_engine.report_findings import FINDINGS, OBSERVATIONS, Assertion, extract_findings, report_mentions, sentences
from radtrust_engine.report_sentences import SENTENCES, expected, extractor_accuracy, extractor_errors

P, U, A, N = Assertion.PRESENT, Assertion.UNCERTAIN, Assertion.ABSENT, Assertion.NOT_MENTIONED


def test_the_fourteen_chexpert_observations_are_read():
    assert len(OBSERVATIONS) == 14
    assert set(FINDINGS) | {"No Finding"} == set(OBSERVATIONS)


def test_sentence_table_is_large_and_covers_every_finding_and_assertion():
    assert len(SENTENCES) >= 150
    seen = {(name, a) for _, codes in SENTENCES for name, a in expected(codes).items()}
    for name in FINDINGS:
        assert (name, P) in seen and (name, A) in seen, name
    assert {a for _, a in seen} == {P, U, A, N}


def test_extractor_reads_the_documented_table():
    assert extractor_errors() == []
    assert extractor_accuracy() >= 0.95


@pytest.mark.parametrize(
    ("text", "finding", "assertion"),
    [
        ("No pleural effusion.", "Pleural Effusion", A),
        ("Pleural effusion is not seen.", "Pleural Effusion", A),
        ("Cannot exclude a small pneumothorax.", "Pneumothorax", U),
        ("A small pneumothorax cannot be excluded.", "Pneumothorax", U),
        ("No change in the small left effusion.", "Pleural Effusion", P),
        ("Interval resolution of the consolidation.", "Consolidation", A),
        ("Right lower lobe pneumonia has resolved.", "Pneumonia", A),
        ("Lungs are clear without edema.", "Edema", A),
        ("Pericardial effusion.", "Pleural Effusion", N),
        ("Consistent with atelectasis.", "Support Devices", N),
    ],
)
def test_negation_uncertainty_and_pseudo_negation(text, finding, assertion):
    assert extract_findings(text)[finding] is assertion


def test_a_terminator_ends_the_scope_of_a_negation():
    found = extract_findings("No pneumothorax but there is a small right effusion.")
    assert found["Pneumothorax"] is A and found["Pleural Effusion"] is P


def test_a_post_trigger_hedges_only_the_finding_it_follows():
    found = extract_findings("Moderate effusion with adjacent atelectasis, underlying pneumonia not excluded.")
    assert (found["Pleural Effusion"], found["Atelectasis"], found["Pneumonia"]) == (P, P, U)
    both = extract_findings("Atelectasis or pneumonia cannot be excluded.")
    assert both["Atelectasis"] is U and both["Pneumonia"] is U


def test_present_beats_uncertain_beats_absent_across_mentions():
    assert extract_findings("No edema. Possible mild edema.")["Edema"] is U
    assert extract_findings("Possible edema. Moderate edema at the bases.")["Edema"] is P


def test_no_finding_ignores_support_devices():
    assert extract_findings("Endotracheal tube in place. No pneumothorax.")["No Finding"] is P
    assert extract_findings("Possible pneumonia.")["No Finding"] is A


def test_decimal_points_do_not_split_sentences_and_mentions_name_their_rule():
    assert sentences("A 1.5 cm nodule. No effusion") == ["a 1.5 cm nodule", "no effusion"]
    (mention,) = report_mentions("Pneumothorax has resolved.")
    assert mention.assertion is A and mention.trigger == "has resolved"


# --- evaluation --------------------------------------------------------------------------------

FINDING_TEXT = {"Cardiomegaly": "Moderate cardiomegaly.", "Pleural Effusion": "Small left pleural effusion.", "Edema": "Mild pulmonary edema."}
NEGATED_TEXT = {"Cardiomegaly": "Heart size is normal.", "Pleural Effusion": "No pleural effusion.", "Edema": "No pulmonary edema."}


def _cohort(n_patients=120, per_patient=2, seed=1):
    """Reference labels and faithful reports (every reference finding stated, the others negated)."""
    rng = np.random.default_rng(seed)
    reference, reports, patients, sex = {}, {}, {}, {}
    for p in range(n_patients):
        for k in range(per_patient):
            case = f"c{p:03d}-{k}"
            labels = {name: int(rng.random() < 0.3) for name in FINDING_TEXT}
            reference[case] = labels
            reports[case] = " ".join(FINDING_TEXT[n] if v else NEGATED_TEXT[n] for n, v in labels.items())
            patients[case] = f"p{p}"
            sex[case] = "F" if p % 2 else "M"
    return reference, reports, patients, {"sex": sex}


def test_faithful_reports_have_no_confabulation_or_omission():
    reference, reports, patients, attributes = _cohort()
    result = evaluate_reports(reports, reference, patients, attributes, n_resamples=200)
    for f in result.findings:
        if f.finding in FINDING_TEXT:
            assert f.sensitivity.value == 1.0 and f.specificity.value == 1.0 and f.f1.value == 1.0
            assert f.confabulation_rate.value == 0.0 and f.omission_rate.value == 0.0
    assert result.overall.confabulating_reports.value == 0.0
    assert result.not_applicable == NOT_APPLICABLE and "not applicable" in NOT_APPLICABLE["explainability"].lower()


def test_planted_hallucinations_give_the_planted_confabulation_rate():
    reference, reports, patients, attributes = _cohort(n_patients=200)
    negatives = sorted(c for c in reports if not reference[c]["Edema"])
    planted = set(negatives[: len(negatives) // 4])  # a quarter of the edema-free reports
    for case in planted:
        reports[case] = reports[case].replace("No pulmonary edema.", "Mild pulmonary edema.")
    result = evaluate_reports(reports, reference, patients, attributes, n_resamples=400)
    edema = next(f for f in result.findings if f.finding == "Edema")
    assert edema.confabulation_rate.value == pytest.approx(len(planted) / len(negatives))
    assert edema.confabulation_rate.ci_low < edema.confabulation_rate.value < edema.confabulation_rate.ci_high
    assert edema.omission_rate.value == 0.0
    assert result.overall.confabulating_reports.value == pytest.approx(len(planted) / len(reports))
    assert result.overall.confabulations_per_report.value == pytest.approx(len(planted) / len(reports))
    other = next(f for f in result.findings if f.finding == "Cardiomegaly")
    assert other.confabulation_rate.value == 0.0


def test_omissions_and_uncertain_handling():
    reference = {"a": {"Pneumonia": 1}, "b": {"Pneumonia": 1}, "c": {"Pneumonia": 0}, "d": {"Pneumonia": 0}}
    reports = {"a": "Possible pneumonia.", "b": "Right lower lobe pneumonia.", "c": "No pneumonia.", "d": "Clear lungs."}
    patients = {c: c for c in reports}
    strict = evaluate_reports(reports, reference, patients, n_resamples=50)
    pneumonia = next(f for f in strict.findings if f.finding == "Pneumonia")
    assert pneumonia.omission_rate.value == 0.5 and pneumonia.sensitivity.value == 0.5
    assert strict.overall.omitting_reports.value == 0.5
    lenient = evaluate_reports(reports, reference, patients, uncertain_as_present=True, n_resamples=50)
    assert next(f for f in lenient.findings if f.finding == "Pneumonia").sensitivity.value == 1.0


def test_reports_of_one_patient_are_resampled_together():
    """Two reports per patient that agree double the cases but not the information: the interval
    is no narrower than with one report per patient."""
    reference, reports, patients, _ = _cohort(n_patients=80, per_patient=1)
    doubled_ref, doubled_rep, doubled_pat = {}, {}, {}
    for case in reports:
        if int(case[1:4]) % 7 == 0:
            reports[case] = "Moderate cardiomegaly. Small left pleural effusion. Mild pulmonary edema."
        for k in ("x", "y"):
            doubled_ref[case + k], doubled_rep[case + k], doubled_pat[case + k] = reference[case], reports[case], patients[case]
    one = evaluate_reports(reports, reference, patients, n_resamples=400).overall.confabulating_reports
    two = evaluate_reports(doubled_rep, doubled_ref, doubled_pat, n_resamples=400).overall.confabulating_reports
    assert (two.ci_high - two.ci_low) > 0.85 * (one.ci_high - one.ci_low)


def test_subgroups_follow_the_disclosure_rules():
    reference, reports, patients, attributes = _cohort(n_patients=60)
    rare = sorted(reports)[:6]  # three patients
    attributes["site"] = {c: ("B" if c in rare else "A") for c in reports}
    result = evaluate_reports(reports, reference, patients, attributes, min_patients=10, n_resamples=100)
    by_name = {g.name: g for g in result.subgroups}
    assert not by_name["sex=F"].suppressed and by_name["sex=F"].n_patients == 30
    assert by_name["site=B"].suppressed and by_name["site=B"].reason == "too_few_patients"
    assert by_name["site=B"].n_reports is None
    assert by_name["site=A"].suppressed and by_name["site=A"].reason == "complementary"


def test_reference_reports_are_read_by_the_same_extractor():
    ref = reference_from_reports({"a": "Small right effusion. No pneumothorax."})
    assert ref["a"]["Pleural Effusion"] == 1 and ref["a"]["Pneumothorax"] == 0 and ref["a"]["No Finding"] == 0


# --- bad input ---------------------------------------------------------------------------------


def _jsonl(*rows):
    return "\n".join(json.dumps(r) for r in rows).encode()


def test_read_reports_accepts_a_good_file():
    data = _jsonl({"case_id": "a", "report": "No effusion."}, {"case_id": "b", "report": "Cardiomegaly."})
    assert read_reports(data, ["a", "b"]) == {"a": "No effusion.", "b": "Cardiomegaly."}


@pytest.mark.parametrize(
    ("data", "known", "message"),
    [
        (b'{"case_id": "a", "report": "ok"}\n\xff\xfe', None, "not UTF-8 text (first bad byte on line 2)"),
        (_jsonl({"case_id": "a", "report": "ok"}, {"case_id": "b", "report": "  "}), None, "Empty report text on line 2 (b)"),
        (_jsonl({"case_id": "a", "report": "x"}, {"case_id": "a", "report": "y"}), None, "given twice on line 2 (a)"),
        (_jsonl({"case_id": "a", "report": "x"}, {"case_id": "z", "report": "y"}), ["a"], "not in the dataset manifest: z"),
        (_jsonl({"case_id": "a", "report": "x"}), ["a", "b"], "without a generated report: b"),
        (b'{"case_id": "a", "report": "x"}\nnot json', None, "Lines 2 are not JSON objects"),
        (b"", None, "holds no reports"),
    ],
)
def test_read_reports_refuses_bad_files_naming_the_rows(data, known, message):
    with pytest.raises(ReportInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_reports(data, known)


def test_evaluation_refuses_reference_values_other_than_0_and_1():
    with pytest.raises(ReportInputError, match="must be 0 or 1"):
        evaluate_reports({"a": "No effusion."}, {"a": {"Pleural Effusion": 2}}, {"a": "p"}, n_resamples=10)
