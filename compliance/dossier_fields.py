"""The dossier catalogue: every field of a version's technical documentation, structured as
AI Act Annex IV (sections 1-9) plus the data-governance practices of Art. 10(2), the
instructions for use of Art. 13(3) and the human-oversight measures of Art. 14(4).

Plain Python (no Django), so the catalogue can be read by the API, the pages, the trust rules
and tests alike.

1. A field is either written by an officer (``source="officer"``: free text, up to
   ``max_length`` characters) or shown from evidence (``source="evidence"``: read-only, named by
   one provider in ``EVIDENCE_SOURCES``, which ``compliance.dossier_evidence`` implements). Where
   the registry knows something and an officer must also judge it, there are two fields.
2. Evidence is required only where every version that can be approved has it (its model, its
   identity, its data, its validation runs and their accuracy per group, which Annex IV 3 asks for). Deployments, feedback, incidents and the change
   log do not exist yet for a first version before approval, so they are shown, not required.
3. ``completeness`` counts required fields only: an evidence field is filled when its provider
   returned something; an officer field when its text has substance and, for an identifier, the
   right form (``field_problem``: ``compliance.field_checks``). A one-line answer or a bare "see
   section X" is not filled. The MDR identification fields are required of a medical device only
   (the registry names an MDR class).
4. ``validate_values`` refuses at save what can never be right (an unknown key, text too long, an
   identifier in the wrong form); substance is judged at submission, so a draft can be saved half
   written.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field

from compliance import field_checks as checks

SOURCES = ("officer", "evidence")
DEFAULT_MAX_LENGTH = 10_000
DEFAULT_MIN_LENGTH = 50  # about one substantive sentence; a name or a "yes" is not an answer

# Evidence providers, by name, with what each shows (compliance.dossier_evidence.PROVIDERS implements them).
EVIDENCE_SOURCES: dict[str, str] = {
    "model_description": "The foundation model as registered: provider, intended purpose and users, body region, modality, task, MDR class, instructions for use, known limitations.",
    "version_identity": "The version: label, artifact sha256, ONNX opset, parameter count, inputs, outputs, preprocessing, lineage to earlier versions.",
    "provenance": "Linked datasets with their role (training, tuning, validation, testing), steward institution and datasheet completeness.",
    "validation_runs": "Succeeded validation runs on this version's test data: dataset, finish time, artifact and manifest hashes, headline metrics with confidence intervals, and whether each is declared.",
    "subgroup_performance": "Subgroup results (sex, age band, site, scanner) and fairness gaps with confidence intervals, from the declared runs (before any is pinned, the newest run that has them).",
    "robustness": "Worst cases under image perturbations, and generalisation across sites and scanners.",
    "detection_volumes": "Lesion detection (FROC, sensitivity at 1/8 to 8 false positives per image, CPM, lesion-size strata, subgroups) and 3D segmentation (Dice, HD95, surface Dice, volume error per structure), with patient-level intervals and the readers' agreement.",
    "calibration_uncertainty": "Calibration (ECE, Brier, binning) and per-case uncertainty with the referral rate.",
    "explainability": "Saliency faithfulness (deletion and insertion AUC against a random baseline) and its interpretation.",
    "trust_scores": "The newest FUTURE-AI trust assessment: score, status and strength per principle.",
    "deployments": "Active deployments: institution, since when, revalidation cadence and state.",
    "post_market_feedback": "Clinician feedback counts, disagreement, and open monitoring alerts.",
    "incidents": "Incidents with type, legal basis, reporting deadline and status.",
    "change_log": "What changed against the parent version: artifact, preprocessing, thresholds, data and metrics.",
    "declared_performance": "The release evidence an officer pinned: the runs on the intended population, the operating point, and their metrics with confidence intervals.",
    "post_market_runs": "Runs that are not release evidence: deployments' revalidations and runs on data not declared as this version's test data.",
    "audit": "Whether the audit chain verifies, how many events were checked, and where it broke if it did.",
    "risk_file": "The risk management file: hazards, hazardous situations and harms, their estimates, controls with their verification, residual risks and the benefit-risk conclusion.",
    "inherited_items": "For an adaptation of a foundation model: the known weaknesses of its base and of the data the base was trained on, and the hazards of the base's risk file, numbered, each an item the dossier must answer.",
    "qms_register": "The provider's quality management register: standards applied with editions and harmonised status, procedures with owners and review dates per Art. 17(1).",
}

_SLUG = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")


@dataclass(frozen=True)
class DossierField:
    """One item of the dossier and the provision it answers."""

    key: str
    title: str
    article: str
    guidance: str
    source: str = "officer"
    evidence: str | None = None
    required: bool = True
    max_length: int = DEFAULT_MAX_LENGTH
    min_length: int = DEFAULT_MIN_LENGTH
    check: Callable[[str], str | None] | None = dataclass_field(default=None, compare=False)
    device_only: bool = False
    example: str = ""

    def __post_init__(self) -> None:
        # A bad entry should fail at import, not when an officer opens the dossier.
        if not _SLUG.match(self.key):
            raise ValueError(f"Dossier field key {self.key!r} must be a lowercase slug (letters, digits, underscores).")
        if self.source not in SOURCES:
            raise ValueError(f"Dossier field {self.key}: source must be one of {SOURCES}, not {self.source!r}.")
        if self.source == "evidence" and self.evidence not in EVIDENCE_SOURCES:
            raise ValueError(f"Dossier field {self.key}: evidence {self.evidence!r} is not in EVIDENCE_SOURCES.")
        if self.source == "officer" and self.evidence is not None:
            raise ValueError(f"Dossier field {self.key}: an officer-written field names no evidence source.")

    @property
    def editable(self) -> bool:
        return self.source == "officer"

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "check"}


@dataclass(frozen=True)
class DossierSection:
    """A part of the dossier: one Annex IV section, or Art. 10(2), 13(3) or 14(4)."""

    key: str
    title: str
    article: str
    fields: tuple[DossierField, ...]

    def to_dict(self) -> dict:
        return {"key": self.key, "title": self.title, "article": self.article, "fields": [f.to_dict() for f in self.fields]}


def _officer(
    key: str,
    title: str,
    article: str,
    guidance: str,
    *,
    required: bool = True,
    min_length: int = DEFAULT_MIN_LENGTH,
    check: Callable[[str], str | None] | None = None,
    example: str = "",
) -> DossierField:
    return DossierField(
        key=key, title=title, article=article, guidance=guidance, required=required, min_length=min_length, check=check, example=example
    )


def _identifier(
    key: str,
    title: str,
    article: str,
    guidance: str,
    check: Callable[[str], str | None],
    example: str,
    *,
    required: bool = True,
    device_only: bool = False,
) -> DossierField:
    """A short, structured answer: its form is checked (``compliance.field_checks``), not its length."""
    return DossierField(
        key=key,
        title=title,
        article=article,
        guidance=guidance,
        required=required,
        min_length=3,
        check=check,
        device_only=device_only,
        example=example,
    )


def _evidence(key: str, title: str, article: str, evidence: str, guidance: str, *, required: bool = False) -> DossierField:
    return DossierField(key=key, title=title, article=article, guidance=guidance, source="evidence", evidence=evidence, required=required)


SECTIONS: tuple[DossierSection, ...] = (
    DossierSection(
        "annex_iv_1",
        "General description of the AI system",
        "Annex IV 1",
        (
            _evidence(
                "1a_intended_purpose",
                "Intended purpose as registered",
                "Annex IV 1(a)",
                "model_description",
                "The intended purpose, users, body region, modality and task recorded for the foundation model. If it is wrong, correct the registry entry rather than this dossier.",
                required=True,
            ),
            _officer(
                "1a_purpose_statement",
                "Clinical claim",
                "Annex IV 1(a)",
                "State the clinical claim in one paragraph: target finding, patient population (e.g. adults with erect PA or AP chest radiographs), care setting and role (triage, second read, worklist prioritisation). Say what the system must not be used for, e.g. paediatric or lateral films.",
            ),
            _evidence(
                "1a_version_identity",
                "Provider, version and earlier versions",
                "Annex IV 1(a)",
                "version_identity",
                "The version label, its artifact sha256 and its lineage of earlier versions, as registered.",
                required=True,
            ),
            _officer(
                "1b_interactions",
                "Interaction with other hardware, software and AI systems",
                "Annex IV 1(b)",
                "Describe how the system exchanges data with the PACS, RIS, reporting system and any other AI (DICOM, DICOMweb, HL7 or FHIR), and which of them it depends on. Name other AI systems whose output it receives or feeds.",
            ),
            _evidence(
                "1c_software_versions",
                "Software version and runtime format",
                "Annex IV 1(c)",
                "version_identity",
                "The ONNX opset, parameter count, inputs, outputs and preprocessing recorded for this version.",
                required=True,
            ),
            _officer(
                "1c_update_requirements",
                "Dependencies and update requirements",
                "Annex IV 1(c)",
                "List runtime dependencies (ONNX Runtime, inference server, DICOM toolkit) with their versions, and how updates reach sites: who installs them and whether a site may defer one.",
            ),
            _officer(
                "1d_forms_supplied",
                "Forms in which it is supplied",
                "Annex IV 1(d)",
                "How the system is placed on the market: on-premises container, PACS plug-in, cloud API or download, with the package names deployers receive.",
            ),
            _identifier(
                "1d_licence_link",
                "Licence text",
                "Annex XI 1(f); Annex XII 1(h)",
                "An https link to the licence under which the model is supplied (its name is the registry's). The model card gives it as license_link.",
                checks.url_problem,
                "https://provider.example/licences/model",
            ),
            _officer(
                "1e_hardware",
                "Hardware it runs on",
                "Annex IV 1(e); MDR Annex I 23.4(ab)",
                "Minimum and recommended hardware (CPU cores or GPU, memory in GiB, storage), the IT network and security measures it needs, and the throughput in studies per hour that the validation assumed. The instructions for use quote this.",
                min_length=20,  # the check asks for the processor and the memory: that is the substance
                check=checks.hardware_problem,
                example="2 CPU cores and 4 GiB memory minimum; 1 GiB disk; no GPU needed.",
            ),
            _officer(
                "1f_illustrations",
                "Photographs or illustrations of the product",
                "Annex IV 1(f)",
                "Only where the system is a component of a product: photographs or illustrations of its external features, markings and internal layout. For standalone software write 'Not applicable: software only'.",
                required=False,
            ),
            _officer(
                "1g_user_interface",
                "User interface for the deployer",
                "Annex IV 1(g)",
                "Where the output appears for the radiologist (worklist flag, overlay, heatmap, structured-report text) and what can be dismissed or overridden there. Reference the screenshots by document number.",
            ),
            _evidence(
                "1h_instructions_registered",
                "Instructions for use as registered",
                "Annex IV 1(h)",
                "model_description",
                "The instructions for use and known limitations recorded for the foundation model.",
                required=True,
            ),
            _officer(
                "1h_instructions_reference",
                "Instructions for use delivered",
                "Annex IV 1(h)",
                "The document number, version and language(s) of the instructions for use given to deployers, and where they are published. The contents are itemised in the Art. 13(3) section.",
            ),
        ),
    ),
    DossierSection(
        "annex_iv_2",
        "Elements of the AI system and its development process",
        "Annex IV 2",
        (
            _officer(
                "2a_development_methods",
                "Development methods and steps",
                "Annex IV 2(a)",
                "The steps from data to released artifact. Name pre-trained or foundation models used (name, version, licence) and how they were adapted (fine-tuning, linear probe), and third-party tools with their versions.",
            ),
            _officer(
                "2b_design_specifications",
                "Design specifications",
                "Annex IV 2(b)",
                "The general logic and key design choices with their rationale; assumptions about the patients and readers it is meant for; what it optimises (loss, operating point) and its expected output. State the trade-offs made, e.g. sensitivity against false-positive workload.",
            ),
            _evidence(
                "2c_architecture_facts",
                "Architecture as registered",
                "Annex IV 2(c)",
                "version_identity",
                "Parameter count, inputs and outputs of the registered artifact.",
                required=True,
            ),
            _officer(
                "2c_architecture_resources",
                "System architecture and computational resources",
                "Annex IV 2(c)",
                "How the components fit together (preprocessing, backbone, heads, post-processing) and the compute used to develop, train, test and validate: accelerator type, hours and energy where known.",
            ),
            _evidence(
                "2d_data_provenance",
                "Datasets and their roles",
                "Annex IV 2(d)",
                "provenance",
                "The datasets linked to this version with their role, steward and datasheet completeness. A low completeness means the datasheet needs work before this section can be relied on.",
                required=True,
            ),
            _officer(
                "2d_data_requirements",
                "Data requirements and datasheets",
                "Annex IV 2(d)",
                "Summarise how the data were selected, labelled and cleaned: reference standard, number and experience of annotators, inter-rater agreement, exclusions. Point to the datasheets for detail (CLAIM: data sources, partitions, de-identification).",
            ),
            _officer(
                "2e_oversight_assessment",
                "Assessment of human-oversight measures",
                "Annex IV 2(e)",
                "Assess the Art. 14 measures: which are built into the system, which the deployer must put in place, and what shows radiologists can use them (e.g. a reader study or usability test).",
            ),
            _officer(
                "2f_change_plan",
                "Pre-determined change plan",
                "Annex IV 2(f)",
                "The changes planned in advance (e.g. threshold recalibration per site, re-training on new data, new scanner vendors), the performance bounds each must keep and how each is validated before release. Explain why these are not substantial modifications (Art. 43(4)).",
            ),
            _evidence(
                "2g_validation_runs",
                "Validation and test logs",
                "Annex IV 2(g)",
                "validation_runs",
                "Each succeeded run on this version's test data is a dated test log: dataset, time, artifact and manifest hashes, headline metrics with confidence intervals, and whether it is declared.",
                required=True,
            ),
            _evidence(
                "2g_subgroup_performance",
                "Potentially discriminatory impacts",
                "Annex IV 2(g)",
                "subgroup_performance",
                "Performance per subgroup and the largest gaps (AUROC, equalised odds, underdiagnosis rate) with confidence intervals.",
            ),
            _evidence(
                "2g_robustness",
                "Robustness",
                "Annex IV 2(g)",
                "robustness",
                "Worst cases under perturbations (noise, contrast, resolution) and performance across sites and scanners.",
            ),
            _evidence(
                "2g_detection_volumes",
                "Lesion detection and 3D segmentation results",
                "Annex IV 2(g)",
                "detection_volumes",
                "For a detector or a 3D segmentation model: the FROC and CPM or the per-structure volume scores with patient-level intervals, and how far the readers who made the reference agree.",
            ),
            _officer(
                "2g_test_procedures",
                "Validation and testing procedures",
                "Annex IV 2(g)",
                "How the system was tested: internal and external test sets, patient-level splits, reference standard, metrics and acceptance criteria fixed before testing, sample-size rationale. Say who dated and signed the test logs and where the signed logs are kept.",
            ),
            _officer(
                "2g_results_assessment",
                "Assessment of the test results",
                "Annex IV 2(g)",
                "Whether the results meet the acceptance criteria overall, per subgroup and under perturbation; name any subgroup gap or robustness failure and what was decided about it.",
            ),
            _officer(
                "2h_cybersecurity",
                "Cybersecurity measures",
                "Annex IV 2(h)",
                "Measures against data poisoning, model poisoning, adversarial examples and confidentiality attacks (Art. 15(5)), and how the artifact's integrity is verified at the site (sha256, signed releases, network isolation).",
            ),
            _evidence(
                "2h_audit_chain",
                "Audit chain integrity",
                "Annex IV 2(h)",
                "audit",
                "Whether the tamper-evident audit chain verifies; a break must be investigated before signing.",
            ),
        ),
    ),
    DossierSection(
        "annex_iv_3",
        "Monitoring, functioning and control",
        "Annex IV 3",
        (
            _officer(
                "3_capabilities_limitations",
                "Capabilities and limitations",
                "Annex IV 3",
                "What the system does well and where it fails, e.g. small apical pneumothoraces, films with chest drains, portable AP films, patients outside the validated age range.",
            ),
            _evidence(
                "3_accuracy_overall",
                "Accuracy overall",
                "Annex IV 3",
                "declared_performance",
                "The declared performance: the release evidence a compliance officer pinned (the runs on the intended population), the operating point, and the metrics with confidence intervals. Post-market runs never count here.",
                required=True,
            ),
            _evidence(
                "3_accuracy_groups",
                "Accuracy for specific groups",
                "Annex IV 3",
                "subgroup_performance",
                "Metrics for the persons or groups the system is intended for (sex, age band, site, scanner), with confidence intervals (TRIPOD+AI 23a). Required: a run whose dataset records no group attributes leaves this empty.",
                required=True,
            ),
            _officer(
                "3_declared_accuracy",
                "Declared accuracy",
                "Annex IV 3",
                "The accuracy levels the provider declares, overall and for each intended group, with the metric, operating point and confidence interval; these are the figures deployers will see.",
            ),
            _officer(
                "3_unintended_outcomes",
                "Foreseeable unintended outcomes and risks",
                "Annex IV 3",
                "Foreseeable harms to health, safety and fundamental rights: missed findings, false alarms that delay other worklist studies, unequal error rates between groups, automation bias.",
            ),
            _officer(
                "3_oversight_summary",
                "Human-oversight measures",
                "Annex IV 3",
                "Summarise the oversight measures and the technical aids for interpreting output (heatmaps, uncertainty flags, referral); the detail goes in the Art. 14(4) section.",
            ),
            _evidence(
                "3_uncertainty",
                "Calibration and uncertainty",
                "Annex IV 3",
                "calibration_uncertainty",
                "Calibration error and the share of cases referred to a human as uncertain.",
            ),
            _officer(
                "3_input_specifications",
                "Input-data specifications",
                "Annex IV 3",
                "The inputs accepted: modality, views, required DICOM tags, pixel spacing, bit depth, patient age range. Say what happens with an input outside them (rejected, warned, processed).",
            ),
        ),
    ),
    DossierSection(
        "annex_iv_4",
        "Appropriateness of the performance metrics",
        "Annex IV 4",
        (
            _officer(
                "4_metrics_appropriateness",
                "Why these metrics",
                "Annex IV 4",
                "Why the metrics fit the clinical task: AUROC for ranking, sensitivity and specificity at the operating point for triage, the false-negative rate of 'any finding' for underdiagnosis, ECE where probabilities are shown. Say why the thresholds are clinically meaningful.",
            ),
            _evidence(
                "4_calibration",
                "Calibration evidence",
                "Annex IV 4",
                "calibration_uncertainty",
                "Calibration and uncertainty metrics with their binning, supporting the choice of metrics.",
            ),
        ),
    ),
    DossierSection(
        "annex_iv_5",
        "Risk-management system",
        "Annex IV 5; Art. 9",
        (
            _officer(
                "5_risk_identification",
                "Known and foreseeable risks",
                "Art. 9(2)(a)",
                "Risks to health, safety and fundamental rights when used as intended, e.g. a missed pneumothorax, delayed reading of unflagged studies, worse performance in under-represented groups. Reference the risk file (ISO 14971) entries.",
            ),
            _officer(
                "5_risk_estimation",
                "Estimation and evaluation, including misuse",
                "Art. 9(2)(b)",
                "How each risk's probability and severity were estimated, including reasonably foreseeable misuse such as use on children, on CT scout images or as a sole reader.",
            ),
            _officer(
                "5_post_market_risks",
                "Risks emerging from post-market monitoring",
                "Art. 9(2)(c)",
                "How feedback, drift alerts and incidents feed back into the risk file, and what they have shown so far.",
            ),
            _evidence(
                "5_feedback",
                "Post-market feedback and alerts",
                "Art. 9(2)(c)",
                "post_market_feedback",
                "Clinician feedback and open monitoring alerts for this version.",
            ),
            _evidence("5_incidents", "Incidents", "Art. 9(2)(c)", "incidents", "Incidents recorded for this version and their reporting status."),
            _evidence(
                "5_risk_file",
                "Risk table",
                "Art. 9(2)-(5); ISO 14971:2019",
                "risk_file",
                "The version's risk management file: each hazard with its estimate, controls, verification and residual risk.",
            ),
            _officer(
                "5_risk_measures",
                "Risk-management measures",
                "Art. 9(2)(d)",
                "The targeted measures adopted for each risk (design changes, input checks, uncertainty referral, training, warnings in the instructions for use) and the evidence that they work.",
            ),
            _officer(
                "5_residual_risk",
                "Residual risk",
                "Art. 9(5)",
                "The residual risks after the measures, why each is judged acceptable, and how they are communicated to deployers.",
            ),
            _officer(
                "5_testing_thresholds",
                "Testing against prior defined metrics",
                "Art. 9(8)",
                "The metrics and probabilistic thresholds fixed before testing, and whether the tests met them.",
            ),
            _officer(
                "5_mdr_integration",
                "Integration with the MDR risk process",
                "Art. 9(10)",
                "Where risk management is merged with the MDR process, name the risk-management file and the procedure that covers both.",
                required=False,
            ),
            _evidence(
                "5_inherited_items",
                "Risks and weaknesses inherited from the base",
                "Annex IV 5; Art. 9(2)(a)",
                "inherited_items",
                "For an adaptation only: what its base is known to do badly and the hazards of the base's risk file, numbered. Each must be answered below.",
            ),
            _officer(
                "5_inherited_items_addressed",
                "Inherited risks addressed",
                "Annex IV 5; Art. 9(2)(a)",
                "For an adaptation, one paragraph per inherited item, starting with its number (for example '2. The labelled data included 300 portable films; sensitivity on them is reported in section 3.'): how this adaptation controls the risk, or why it does not apply to its intended purpose. A submission is refused while an item is unanswered.",
                required=False,
            ),
            _evidence(
                "5_trust_assessment",
                "FUTURE-AI trust assessment",
                "Annex IV 5",
                "trust_scores",
                "The newest FUTURE-AI assessment per principle; weak principles point to risks worth naming above.",
            ),
        ),
    ),
    DossierSection(
        "annex_iv_6",
        "Changes through the lifecycle",
        "Annex IV 6",
        (
            _evidence(
                "6_change_log",
                "Changes against the parent version",
                "Annex IV 6",
                "change_log",
                "What differs from the parent version: artifact, preprocessing, thresholds, data and metrics. Empty for a first version.",
            ),
            _officer(
                "6_changes",
                "Relevant changes",
                "Annex IV 6",
                "Describe each relevant change and its effect on performance, and whether it lies within the pre-determined change plan (2(f)) or is a substantial modification needing a new conformity assessment (Art. 43(4)). Write 'First version' when there is no parent.",
                min_length=len("First version"),
            ),
        ),
    ),
    DossierSection(
        "annex_iv_7",
        "Standards applied",
        "Annex IV 7",
        (
            _officer(
                "7_standards",
                "Harmonised standards or other solutions",
                "Annex IV 7",
                "The standards and common specifications applied, in full or in part (e.g. ISO 14971, IEC 62304, IEC 62366-1, ISO 13485, ISO/IEC 42001), with their editions and whether each is harmonised. Where none covers a requirement, describe the other solution used.",
            ),
            _evidence(
                "7_qms_register",
                "Quality management register",
                "Art. 17(1); Annex IV 7",
                "qms_register",
                "The standards and procedures of the provider's quality management system as registered, with overdue reviews flagged.",
            ),
        ),
    ),
    DossierSection(
        "annex_iv_8",
        "EU declaration of conformity",
        "Annex IV 8; Annex V; MDR Annex IV",
        (
            _officer(
                "8_v1_identification",
                "AI system name, type and traceability reference",
                "Annex V(1); MDR Annex IV(4)",
                "The system's product and trade name and type, and a reference that identifies this version unambiguously (its version label; the UDI-DI is added from the device identification).",
            ),
            _officer(
                "8_v2_provider",
                "Provider and authorised representative",
                "Annex V(2); MDR Annex IV(1)",
                "The provider's name or registered trade name, and the name and address of its authorised representative where there is one. The provider's address and SRN are added from the fields that hold them.",
                min_length=3,
            ),
            _officer(
                "8_v3_sole_responsibility",
                "Statement of sole responsibility",
                "Annex V(3); MDR Annex IV(2)",
                "The statement that the declaration is issued under the sole responsibility of the provider.",
            ),
            _officer(
                "8_v4_conformity",
                "Statement of conformity",
                "Annex V(4); MDR Annex IV(6)",
                "The statement that the system conforms with Regulation (EU) 2024/1689 and the other Union law that applies, notably the MDR (Regulation (EU) 2017/745): one single declaration covers both (Art. 47(3)), so a medical device's statement cites both.",
                example="The AI system described above is in conformity with Regulation (EU) 2024/1689 and with Regulation (EU) 2017/745 on medical devices.",
            ),
            _officer(
                "8_v5_data_protection",
                "Data-protection statement",
                "Annex V(5)",
                "Radiology AI processes personal health data: state compliance with Regulation (EU) 2016/679 (and 2018/1725 where relevant).",
            ),
            _officer(
                "8_v6_standards",
                "Standards or common specifications",
                "Annex V(6); MDR Annex IV(7)",
                "The harmonised standards and common specifications, with their editions, in relation to which conformity is declared: named here, not by reference to another section.",
            ),
            _officer(
                "8_v7_notified_body",
                "Notified body, procedure and certificate",
                "Annex V(7); MDR Annex IV(8)",
                "The notified body's name and number, the conformity-assessment procedure followed (the MDR route, Art. 43(3)) and the certificate number.",
            ),
            _officer(
                "8_additional_information",
                "Additional information",
                "MDR Annex IV(9)",
                "Where applicable, anything else the declaration must say, e.g. that the device is software only, or the other Union law it also conforms with.",
                required=False,
            ),
            _officer(
                "8_v8_issue_and_signatory",
                "Place, date and signatory",
                "Annex V(8); MDR Annex IV(10)",
                "Place and date of issue, the name and function of the person who signed, and for whom. Reference the signed original.",
            ),
        ),
    ),
    DossierSection(
        "mdr_identification",
        "Medical device identification and class",
        "MDR Art. 27, 31; Annex VI, VIII",
        (
            _identifier(
                "mdr_class_rule",
                "Device class and classification rule",
                "MDR Annex VIII; MDR Annex IV(5)",
                "The class under the MDR and the Annex VIII rule that gives it, e.g. 'Class IIa, Annex VIII Rule 11: software providing information used for diagnosis'. It must match the class in the registry, and a class IIa or higher device is high-risk under the AI Act (Art. 6(1)).",
                checks.mdr_class_rule_problem,
                "Class IIa, Annex VIII Rule 11: software that provides information used to take diagnostic decisions.",
                device_only=True,
            ),
            _identifier(
                "mdr_basic_udi_di",
                "Basic UDI-DI",
                "MDR Art. 27; MDR Annex VI Part C; MDR Annex IV(3)",
                "The Basic UDI-DI of the device model, as assigned by your issuing entity: a GS1 Global Model Number (its check characters are verified) or a HIBCC code.",
                checks.basic_udi_di_problem,
                "1987654Ad4X4bL5ttr2310c2K",
                device_only=True,
            ),
            _identifier(
                "mdr_udi_di",
                "UDI-DI of this version",
                "MDR Art. 27; MDR Annex VI Part C 6.5",
                "The UDI-DI of this software version (a new one for each change of the algorithm or of the outputs, Annex VI Part C 6.5.2): a GS1 GTIN (check digit verified) or a HIBCC code. Deployers find it in the instructions for use; the software version is its production identifier.",
                checks.udi_di_problem,
                "04012345000016",
                device_only=True,
            ),
            _identifier(
                "mdr_srn",
                "Manufacturer's single registration number (SRN)",
                "MDR Art. 31; MDR Annex IV(1)",
                "The SRN EUDAMED issued to the provider as manufacturer, e.g. DE-MF-000012345.",
                checks.srn_problem,
                "DE-MF-000012345",
                device_only=True,
            ),
            _identifier(
                "mdr_notified_body_number",
                "Notified body number on the CE marking",
                "MDR Art. 20(5); MDR Annex IV(8)",
                "The four-digit identification number of the notified body, printed after the CE marking. Required for class IIa, IIb and III; a class I device carries the CE marking alone.",
                checks.notified_body_problem,
                "0123",
                required=False,
            ),
        ),
    ),
    DossierSection(
        "annex_iv_9",
        "Post-market monitoring",
        "Annex IV 9; Art. 72",
        (
            _officer(
                "9_monitoring_plan",
                "Post-market monitoring plan",
                "Art. 72(3)",
                "What is collected from deployers (feedback, disagreement rate, drift alerts, incidents), how often it is reviewed, and which thresholds trigger re-validation or corrective action. Say how the plan merges with MDR post-market surveillance and PMCF.",
            ),
            _evidence(
                "9_deployments",
                "Deployments",
                "Annex IV 9",
                "deployments",
                "Where this version is in use, since when, and the state of each site's revalidation.",
            ),
            _evidence(
                "9_feedback",
                "Feedback and alerts",
                "Annex IV 9",
                "post_market_feedback",
                "Clinician feedback counts, disagreement and open monitoring alerts collected so far.",
            ),
            _evidence(
                "9_post_market_runs",
                "Post-market evidence",
                "Annex IV 9; Art. 72",
                "post_market_runs",
                "Runs that are not release evidence: deployments' revalidations and runs on data not declared as this version's test data (drift checks on later data). They are monitoring, never the declared performance.",
            ),
            _evidence("9_incidents", "Incidents", "Annex IV 9", "incidents", "Incidents recorded for this version, with deadlines and status."),
            _officer(
                "9_incident_reporting",
                "Serious-incident reporting",
                "Art. 73",
                "Who reports serious incidents, to whom and within which deadlines: MDR vigilance for health harm, the AI Act route for fundamental-rights infringements (Art. 73(10)).",
            ),
        ),
    ),
    DossierSection(
        "art_10_2",
        "Data governance and management practices",
        "Art. 10(2)",
        (
            _officer(
                "10_2a_design_choices",
                "Design choices",
                "Art. 10(2)(a)",
                "The data design choices: which studies, views and labels, why these sites and scanners, and the split into training, tuning and test sets at patient level.",
            ),
            _officer(
                "10_2b_collection",
                "Collection, origin and original purpose",
                "Art. 10(2)(b)",
                "How and where the images and reports were collected, over which period, and the original purpose of the personal data (clinical care), with the legal basis for secondary use and the de-identification applied.",
            ),
            _evidence(
                "10_2b_provenance",
                "Datasets and datasheets",
                "Art. 10(2)(b)",
                "provenance",
                "The linked datasets with their steward institution and datasheet completeness.",
            ),
            _officer(
                "10_2c_preparation",
                "Preparation",
                "Art. 10(2)(c)",
                "Annotation and labelling (report-mined labels, radiologist consensus, follow-up imaging or pathology), cleaning, updating, enrichment and aggregation steps.",
            ),
            _officer(
                "10_2d_assumptions",
                "Assumptions about what the data represent",
                "Art. 10(2)(d)",
                "What the labels measure and represent, e.g. that report-mined labels record what a radiologist wrote rather than the true state, and that 'no finding' may hide findings not reported.",
            ),
            _officer(
                "10_2e_availability",
                "Availability, quantity and suitability",
                "Art. 10(2)(e)",
                "Patients, studies and prevalence per dataset and site, and why this is enough for the intended purpose and for subgroup estimates with useful confidence intervals.",
            ),
            _officer(
                "10_2f_bias_examination",
                "Examination for possible biases",
                "Art. 10(2)(f)",
                "Which biases were looked for (sex, age, ethnicity, socio-economic status, site, scanner) and how, including feedback loops where outputs shape future inputs, e.g. prioritised studies getting reported and labelled first.",
            ),
            _evidence(
                "10_2f_subgroups",
                "Subgroup results",
                "Art. 10(2)(f)",
                "subgroup_performance",
                "Subgroup performance and fairness gaps from validation.",
            ),
            _officer(
                "10_2g_bias_measures",
                "Measures against bias",
                "Art. 10(2)(g)",
                "The measures taken to detect, prevent and mitigate the biases found (re-sampling, re-weighting, per-group thresholds, warnings), and their measured effect.",
            ),
            _officer(
                "10_2h_data_gaps",
                "Data gaps and shortcomings",
                "Art. 10(2)(h)",
                "Known gaps (e.g. few patients over 80, one scanner vendor, no paediatric data) and how each is addressed, in the data or in the instructions for use.",
            ),
        ),
    ),
    DossierSection(
        "art_13_3",
        "Instructions for use",
        "Art. 13(3)",
        (
            _officer(
                "13_3a_provider",
                "Provider identity and contact",
                "Art. 13(3)(a)",
                "The provider's identity and contact details (telephone, e-mail, website), and those of its authorised representative where there is one.",
            ),
            _identifier(
                "13_3a_provider_address",
                "Provider's postal address",
                "Art. 13(3)(a); Annex V(2); MDR Annex I 23.2(d)",
                "The address of the provider's registered place of business: street and number, postcode and town, country. The instructions for use and the declaration of conformity print it.",
                checks.address_problem,
                "Example Street 1, 10115 Berlin, Germany",
            ),
            _evidence(
                "13_3b_i_intended_purpose",
                "Intended purpose",
                "Art. 13(3)(b)(i)",
                "model_description",
                "The intended purpose and users as registered.",
                required=True,
            ),
            _evidence(
                "13_3b_ii_accuracy",
                "Accuracy and its metrics",
                "Art. 13(3)(b)(ii)",
                "declared_performance",
                "The declared accuracy at the operating threshold, with metrics and confidence intervals, from the pinned release evidence.",
                required=True,
            ),
            _officer(
                "13_3b_ii_robustness_security",
                "Accuracy, robustness and cybersecurity declared",
                "Art. 13(3)(b)(ii)",
                "The levels of accuracy, robustness and cybersecurity declared to deployers, and the known circumstances that may affect them (scanner vendor, protocol, positioning, implants, image quality).",
            ),
            _officer(
                "13_3b_iii_risk_circumstances",
                "Circumstances that may lead to risks",
                "Art. 13(3)(b)(iii)",
                "Known or foreseeable circumstances of use or misuse that may lead to risks, e.g. use as a sole reader, on patients outside the validated population, or on a new scanner before local validation.",
            ),
            _evidence(
                "13_3b_iv_explainability",
                "Explanation evidence",
                "Art. 13(3)(b)(iv)",
                "explainability",
                "How faithful the saliency maps were in validation.",
            ),
            _officer(
                "13_3b_iv_explanations",
                "Capabilities to explain output",
                "Art. 13(3)(b)(iv)",
                "What explanations the system gives (heatmaps, uncertainty) and what a radiologist may and may not conclude from them.",
            ),
            _evidence(
                "13_3b_v_group_performance",
                "Performance for specific groups",
                "Art. 13(3)(b)(v)",
                "subgroup_performance",
                "Performance for the persons or groups the system is intended for.",
            ),
            _officer(
                "13_3b_v_group_statement",
                "Group performance told to deployers",
                "Art. 13(3)(b)(v)",
                "The group-level performance stated in the instructions, and the groups for which deployers should take extra care.",
            ),
            _officer(
                "13_3b_vi_input_and_data",
                "Input specifications and data information",
                "Art. 13(3)(b)(vi)",
                "The input specifications and the information on training, validation and test data given to deployers, at a level they can check against their own population.",
            ),
            _officer(
                "13_3b_vii_output_interpretation",
                "Interpreting the output",
                "Art. 13(3)(b)(vii)",
                "What the score means, the operating threshold and how to change it, whether probabilities are calibrated, and what an uncertainty or referral flag asks the reader to do.",
            ),
            _officer(
                "13_3c_changes",
                "Pre-determined changes",
                "Art. 13(3)(c)",
                "The pre-determined changes of 2(f) as explained to deployers, and how they are told when one is released.",
            ),
            _officer(
                "13_3d_oversight",
                "Human-oversight measures",
                "Art. 13(3)(d)",
                "The oversight measures of Art. 14 deployers must put in place, including the technical aids for interpreting outputs.",
            ),
            _officer(
                "13_3e_resources_lifetime",
                "Resources, maintenance and updates",
                "Art. 13(3)(e)",
                "The computational resources needed in use, and the maintenance and update measures with their frequency, including periodic local revalidation. The hardware is stated under Annex IV 1(e), the lifetime below.",
            ),
            _identifier(
                "13_3e_lifetime",
                "Expected lifetime",
                "Art. 13(3)(e)",
                "The expected lifetime as a duration and what ends it, e.g. '24 months from release, or until a substantial modification replaces it'.",
                checks.duration_problem,
                "24 months from release, or until a substantial modification replaces this version.",
            ),
            _officer(
                "13_3f_logs",
                "Collecting, storing and interpreting logs",
                "Art. 13(3)(f)",
                "How deployers collect, store (at least 6 months, Art. 26(6)) and interpret the logs of Art. 12.",
            ),
        ),
    ),
    DossierSection(
        "art_14_4",
        "Human oversight",
        "Art. 14(4)",
        (
            _officer(
                "14_4a_understand_and_monitor",
                "Understanding capacities and detecting anomalies",
                "Art. 14(4)(a)",
                "How radiologists learn the system's capacities and limitations (training, instructions) and how anomalies, dysfunctions and unexpected performance are detected and signalled (uncertainty flags, drift alerts, feedback).",
            ),
            _officer(
                "14_4b_automation_bias",
                "Awareness of automation bias",
                "Art. 14(4)(b)",
                "Measures that keep readers aware of automation bias, e.g. reading before seeing the AI output, training with cases the AI gets wrong, and no unflagged-means-normal messaging.",
            ),
            _officer(
                "14_4c_interpretation",
                "Correct interpretation of the output",
                "Art. 14(4)(c)",
                "The tools and training that let readers interpret the output correctly: calibrated scores, heatmaps with their limits, examples of typical errors.",
            ),
            _officer(
                "14_4d_override",
                "Deciding not to use, override or reverse",
                "Art. 14(4)(d)",
                "How a reader disregards, overrides or reverses an output in the reporting workflow, and how that decision is recorded as feedback.",
            ),
            _officer(
                "14_4e_stop",
                "Intervening and stopping",
                "Art. 14(4)(e)",
                "How a site suspends the system safely (stop button, deployment pause) so that studies fall back to the normal reading workflow, and who may do it.",
            ),
        ),
    ),
)


def _index(sections: tuple[DossierSection, ...]) -> dict[str, DossierField]:
    index: dict[str, DossierField] = {}
    for section in sections:
        for f in section.fields:
            if f.key in index:
                raise ValueError(f"Dossier field key {f.key!r} appears twice; keys are stored in dossier values and must be unique.")
            index[f.key] = f
    return index


FIELDS: dict[str, DossierField] = _index(SECTIONS)
SECTION_BY_KEY: dict[str, DossierSection] = {s.key: s for s in SECTIONS}
SECTION_OF: dict[str, DossierSection] = {f.key: s for s in SECTIONS for f in s.fields}  # where the editor shows each field


def field_label(key: str) -> str:
    """How a person reads a field's name: its title and where it is (``Clinical claim (General
    description of the AI system, Annex IV 1(a))``); never the stored key."""
    f = FIELDS[key]
    return f"{f.title} ({SECTION_OF[key].title}, {f.article})"


def field(key: str) -> DossierField:
    """The field with ``key``; a KeyError names the nearest keys when there is none."""
    try:
        return FIELDS[key]
    except KeyError:
        close = difflib.get_close_matches(key, FIELDS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"No dossier field {key!r}.{hint} The keys are listed in compliance.dossier_fields.FIELDS.") from None


def field_problem(f: DossierField, value: object) -> str | None:
    """Why an officer's text does not yet answer ``f`` (step 3), or None; "Not filled in." when blank."""
    if not isinstance(value, str) or not value.strip():
        return "Not filled in."
    return checks.substance_problem(value, f.min_length) or (f.check(value) if f.check else None)


def is_required(f: DossierField, *, medical_device: bool) -> bool:
    return f.required and (medical_device or not f.device_only)


def _ratio(filled: int, required: int) -> float:
    return round(filled / required, 4) if required else 1.0


def completeness(values: Mapping[str, str | None], evidence_present: Mapping[str, bool], *, medical_device: bool = True) -> dict:
    """Required fields filled, per section and overall (see step 3): ``missing`` lists every required
    field not filled, ``problems`` says why for those with text that is not yet an answer."""
    sections, total_filled, total_required = {}, 0, 0
    for section in SECTIONS:
        required = [f for f in section.fields if is_required(f, medical_device=medical_device)]
        missing, problems = [], {}
        for f in required:
            if f.source == "evidence":
                if not evidence_present.get(f.evidence, False):
                    missing.append(f.key)
                continue
            problem = field_problem(f, values.get(f.key))
            if problem:
                missing.append(f.key)
                if str(values.get(f.key) or "").strip():
                    problems[f.key] = problem
        filled = len(required) - len(missing)
        sections[section.key] = {
            "filled": filled,
            "required": len(required),
            "missing": missing,
            "problems": problems,
            "ratio": _ratio(filled, len(required)),
        }
        total_filled += filled
        total_required += len(required)
    return {"sections": sections, "overall": {"filled": total_filled, "required": total_required, "ratio": _ratio(total_filled, total_required)}}


def validate_values(values: Mapping[str, object]) -> dict[str, str]:
    """Errors by key for values an officer may not save: unknown, not text, too long, or evidence (read-only)."""
    errors: dict[str, str] = {}
    for key, value in values.items():
        f = FIELDS.get(key)
        if f is None:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            errors[key] = "Unknown dossier field." + (f" Did you mean {close[0]}?" if close else "")
        elif f.source == "evidence":
            errors[key] = f"Read-only: this field shows the {f.evidence} evidence; correct the registry or runs instead."
        elif not isinstance(value, str):
            errors[key] = f"Must be text, not {type(value).__name__}; send an empty string to clear it."
        elif len(value) > f.max_length:
            errors[key] = f"Too long: {len(value)} characters, at most {f.max_length}."
        elif value.strip() and f.check is not None and (problem := f.check(value)):
            errors[key] = problem
    return errors
