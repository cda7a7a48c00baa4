"""The sections of a detection or volume segmentation run, and the readers' agreement of any run, as
the tables their page and their technical documentation show: numbers rounded for people with their
intervals, codes in words, suppressed groups without a count (``report_tables`` does the same for
the classification and 2D segmentation labels). Nothing is recomputed: the figures are the report's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.readable import metric, number
from radtrust_engine.disclosure import SUPPRESSION_REASONS
from radtrust_engine.perturbations import PERTURBATIONS
from validation.report_tables import ATTRIBUTE_VALUES, Table

VOLUME_METRICS = (("dice", "Dice"), ("hd95", "HD95 (mm)"), ("surface_dice", "Surface Dice"), ("volume_error", "Volume error"))


@dataclass
class TaskSection:
    """A run's detection or volume results: a heading, sentences that say what was measured, and tables."""

    title: str
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    detection_charts: bool = False  # the run's FROC curve and its scores' reliability diagram go with it


def _rate(rate: float) -> str:
    return f"{rate:g}" if rate >= 1 else f"1/{round(1 / rate)}"


def _interval(value: Any, low: Any, high: Any) -> str:
    return metric({"value": value, "ci_low": low, "ci_high": high})


def _at(froc: Mapping[str, Any], rate: float) -> str:
    """The sensitivity of a FROC section at ``rate`` false positives per image, with its interval."""
    rates = list(froc.get("fp_per_image") or [])
    if rate not in rates:
        return "—"
    j = rates.index(rate)
    return _interval(froc["sensitivity"][j], froc["low"][j], froc["high"][j])


def _cpm(froc: Mapping[str, Any]) -> str:
    cpm = froc.get("cpm") or {}
    return _interval(cpm.get("value"), cpm.get("low"), cpm.get("high"))


def detection_section(results: Mapping[str, Any] | None, *, summary_only: bool = False) -> TaskSection | None:
    """The detection section of a stored report: sensitivity at each FP rate and CPM, lesion-size
    strata, subgroups (suppressed ones without counts) and the detection scores' calibration."""
    detection = (results or {}).get("detection")
    if not isinstance(detection, Mapping) or not isinstance(detection.get("overall"), Mapping):
        return None
    overall = detection["overall"]
    config = detection.get("config") or {}
    if config.get("match_by") == "distance":
        matching = f"a detection finds a lesion when its centre lies within {number(config.get('max_distance'))} of the lesion's centre"
    else:
        matching = f"a detection finds a lesion when their boxes overlap with an IoU of at least {number(config.get('iou_threshold'))}"
    section = TaskSection(
        title=f"Lesion detection ({detection.get('dimensions') or '2D'})",
        detection_charts=True,
        notes=[
            f"{number(overall.get('n_lesions'))} lesions in {number(overall.get('n_cases'))} images or volumes of "
            f"{number(overall.get('n_patients'))} patients; {number(overall.get('n_detections'))} detections after non-maximum suppression "
            f"(IoU above {number(config.get('nms_iou'))} suppressed, at most {number(config.get('max_detections'))} per case).",
            f"Matching: {matching}; each lesion counts once, a second detection of it is a false positive. "
            "Intervals: patients resampled with replacement (BCa).",
        ],
    )
    rates = list(overall.get("fp_per_image") or [])
    rows = [[_rate(r), _at(overall, r)] for r in rates]
    rows.append(["CPM (mean of the seven)", _cpm(overall)])
    section.tables.append(Table("Sensitivity at false positives per image (FROC)", ["False positives per image", "Sensitivity (CI)"], rows))
    if summary_only:
        return section
    strata = [
        [str(s.get("size")), number(s.get("n_lesions")), _at(s, 1.0), _cpm(s)] for s in detection.get("size_strata") or [] if isinstance(s, Mapping)
    ]
    if strata:
        head = ["Lesion size (largest side, pixels or voxels)", "Lesions", "Sensitivity at 1 FP per image", "CPM"]
        section.tables.append(Table("By lesion size", head, strata))
    groups = []
    for g in detection.get("subgroups") or []:
        if not isinstance(g, Mapping):
            continue
        value = ATTRIBUTE_VALUES.get(g.get("attribute"), {}).get(g.get("value"), g.get("value"))
        name = f"{str(g.get('attribute', '')).replace('_', ' ')} = {value}"
        if g.get("suppressed"):
            why = SUPPRESSION_REASONS.get(g.get("reason"), "suppressed")
            groups.append([name, f"suppressed: {why}", "—", "—", "—"])
        else:
            groups.append([name, number(g.get("n_patients")), number(g.get("n_lesions")), _at(g, 1.0), _cpm(g)])
    if groups:
        section.tables.append(Table("By subgroup", ["Group", "Patients", "Lesions", "Sensitivity at 1 FP per image", "CPM"], groups))
    _robustness(section, detection.get("robustness"))
    calibration = detection.get("calibration")
    if isinstance(calibration, Mapping) and "error" in calibration:
        section.notes.append(f"Calibration of the detection scores: not computed ({calibration['error']}).")
    elif isinstance(calibration, Mapping):
        section.notes.append(
            f"Calibration of the detection scores (is a detection of score p a true lesion with probability p?): "
            f"ECE {metric(calibration.get('ece'))}, Brier score {metric(calibration.get('brier'))} over {number(calibration.get('n'))} detections."
        )
    return section


def _robustness(section: TaskSection, robustness: Any) -> None:
    """The FROC's change under each perturbation (``detection_robustness``), in words, with the worst
    case and the perturbations that do not apply to detection, grouped by their reason."""
    if not isinstance(robustness, Mapping):
        return
    reasons: dict[str, list[str]] = {}
    for n in robustness.get("not_applicable") or []:
        if isinstance(n, Mapping):
            name = n.get("perturbation")
            reasons.setdefault(str(n.get("reason")), []).append(_perturbation(name))
    not_applicable = "".join(f" Not applicable: {'; '.join(names)} (each {why})." for why, names in reasons.items())
    if "error" in robustness:
        section.notes.append(f"Robustness to image perturbations: not computed ({robustness['error']}).{not_applicable}")
        return
    worst = robustness.get("worst_case") or {}
    worst_cpm = (worst.get("metrics") or {}).get("cpm") or {}
    worst_text = f" The largest CPM change was under {_condition(worst)}: {_change(worst_cpm)}." if worst else ""
    section.notes.append(
        f"Robustness to image perturbations: {number(robustness.get('n_cases'))} cases of {number(robustness.get('n_patients'))} patients "
        f"perturbed and detected again, matched to the same lesions; CPM unperturbed {number(robustness.get('cpm'))}. Changes with "
        f"paired patient-level bootstrap intervals (the same resampled patients for the perturbed and the unperturbed detections).{worst_text}{not_applicable}"
    )
    rows = []
    for c in robustness.get("conditions") or []:
        if not isinstance(c, Mapping):
            continue
        metrics = c.get("metrics") or {}
        cpm, sensitivity = metrics.get("cpm") or {}, metrics.get("sensitivity_at_1_fp") or {}
        rows.append([_condition(c), number(cpm.get("value")), _change(cpm), _change(sensitivity)])
    rows += [
        [f"{_perturbation(f.get('perturbation'))}, severity {number(f.get('severity'))}", "failed", str(f.get("error")), "—"]
        for f in robustness.get("failed") or []
        if isinstance(f, Mapping)
    ]
    if rows:
        head = ["Perturbation (severity and its setting)", "CPM", "CPM change (CI)", "Change in sensitivity at 1 FP per image (CI)"]
        section.tables.append(Table("Robustness: the FROC under image perturbations", head, rows))


def _perturbation(name: Any) -> str:
    return PERTURBATIONS[name].description if name in PERTURBATIONS else str(name)


def _condition(condition: Mapping[str, Any]) -> str:
    described = _perturbation(condition.get("perturbation"))
    return f"{described}, severity {number(condition.get('severity'))} ({condition.get('parameter')}: {number(condition.get('setting'))})"


def _change(change: Mapping[str, Any]) -> str:
    if not isinstance(change.get("change"), (int, float)):
        return "not estimable"
    return f"{change['change']:+.3f}" + (
        f" ({change['ci_low']:+.3f} to {change['ci_high']:+.3f})"
        if isinstance(change.get("ci_low"), (int, float)) and isinstance(change.get("ci_high"), (int, float))
        else ""
    )


def volume_section(results: Mapping[str, Any] | None, *, summary_only: bool = False) -> TaskSection | None:
    """The volume segmentation section: per structure the mean scores with patient intervals, and per volume its scores."""
    volumes = (results or {}).get("volumes")
    if not isinstance(volumes, Mapping) or not isinstance(volumes.get("structures"), Mapping):
        return None
    settings = volumes.get("settings") or {}
    spacing = " x ".join(number(v) for v in settings.get("spacing") or [])
    patch = " x ".join(number(v) for v in settings.get("patch") or [])
    section = TaskSection(
        title="Volume segmentation (3D)",
        notes=[
            f"{number(volumes.get('n_volumes'))} volumes of {number(volumes.get('n_patients'))} patients, resampled to {spacing} mm (z, y, x) "
            f"and segmented in windows of {patch} voxels overlapping by {number(settings.get('overlap'))}, blended with Gaussian weights; "
            f"scored on each volume's own grid. Surface Dice at a tolerance of {number(settings.get('tolerance_mm'))} mm; volume error is "
            "(predicted - true) / true volume. Means over volumes with patient-level intervals (BCa).",
        ],
    )
    rows = []
    for name, scores in volumes["structures"].items():
        cells = [
            metric(
                {"value": (scores.get(k) or {}).get("mean"), "ci_low": (scores.get(k) or {}).get("low"), "ci_high": (scores.get(k) or {}).get("high")}
            )
            for k, _ in VOLUME_METRICS
        ]
        rows.append([name, *cells, number((scores.get("dice") or {}).get("n_volumes"))])
    section.tables.append(Table("Per structure (mean over volumes, CI)", ["Structure", *[t for _, t in VOLUME_METRICS], "Volumes"], rows))
    if summary_only:
        return section
    per_volume = []
    for v in volumes.get("volumes") or []:
        for name in volumes["structures"]:
            s = v.get(name) or {}
            shown = v.get("image_path") or "(withheld: a case of another hospital)"
            per_volume.append(
                [
                    shown,
                    name,
                    number(s.get("dice")),
                    number(s.get("hd95_mm")),
                    number(s.get("surface_dice")),
                    number(s.get("volume_ml")),
                    number(s.get("truth_ml")),
                ]
            )
    if per_volume:
        head = ["Volume", "Structure", "Dice", "HD95 (mm)", "Surface Dice", "Volume (ml)", "True volume (ml)"]
        section.tables.append(Table("Per volume", head, per_volume))
    return section


def reader_section(results: Mapping[str, Any] | None) -> TaskSection | None:
    """The readers' agreement: per label the kappa with its interval and the model among the readers;
    for volumes the inter-reader Dice, the ceiling the model's Dice is read against."""
    readers = (results or {}).get("readers")
    if not isinstance(readers, Mapping) or not readers:
        return None
    section = TaskSection(title="Reader variability")
    labels = []
    for label, r in readers.items():
        if not isinstance(r, Mapping):
            continue
        if "dice_ceiling" in r:
            ceiling = ", ".join(f"{name} {number(v)}" for name, v in (r.get("dice_ceiling") or {}).items())
            section.notes.append(
                f"Inter-reader Dice (readers {', '.join(r.get('readers') or [])}, {number(r.get('n_cases'))} volumes): {ceiling}. "
                "A model's Dice against one reader is read against this ceiling."
            )
            for s in r.get("skipped") or []:
                section.notes.append(f"Left out of the readers' Dice: {s.get('image_path') or 'a case'}: {s.get('reason')}")
            continue
        kappa = r.get("kappa") or {}
        majority = r.get("model_vs_majority") or {}
        labels.append(
            [
                str(label),
                ", ".join(r.get("readers") or []),
                number(r.get("n_cases")),
                f"{r.get('statistic', 'kappa')} {_interval(kappa.get('value'), kappa.get('low'), kappa.get('high'))}"
                + (" (low agreement)" if r.get("low_agreement") else ""),
                _interval(majority.get("value"), majority.get("low"), majority.get("high")) if majority else "—",
                str(r.get("model_position_label") or "—"),
                number(len(r.get("skipped") or [])),
            ]
        )
    if labels:
        head = [
            "Label",
            "Readers",
            "Cases",
            "Agreement between readers (CI)",
            "Model vs majority (kappa, CI)",
            "Model's operating point",
            "Cases left out",
        ]
        section.tables.append(Table("Agreement between readers, and the model among them", head, labels))
    return section
