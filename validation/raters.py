"""The datasheet's raters from what a run measured: a run whose manifest carries several readers'
labels fills the dataset's ``rater_count`` and ``rater_agreement`` where the datasheet leaves them
blank (what the data steward wrote stays), so the documentation names the measured agreement and
the run it comes from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.readable import number
from registry.models import Dataset
from registry.services import record_update
from validation.choices import RunStatus
from validation.models import ValidationRun

_LIMIT = Dataset._meta.get_field("rater_agreement").max_length


def rater_fields(readers: Mapping[str, Any], run_id: int) -> dict[str, Any]:
    """``rater_count`` (the most readers of any label) and ``rater_agreement`` in words from a report's
    ``readers`` section; empty when it holds no agreement."""
    count, parts = 0, []
    for label, section in readers.items():
        if not isinstance(section, Mapping):
            continue
        count = max(count, len(section.get("readers") or []))
        if "dice_ceiling" in section:
            parts += [f"inter-reader Dice {number(v)} on {name}" for name, v in (section["dice_ceiling"] or {}).items() if v is not None]
        elif (section.get("kappa") or {}).get("value") is not None:
            kappa = section["kappa"]
            interval = (
                f" (CI {number(kappa['low'])} to {number(kappa['high'])})" if kappa.get("low") is not None and kappa.get("high") is not None else ""
            )
            parts.append(f"{section.get('statistic', 'kappa')} {number(kappa['value'])}{interval} on {label}")
    if not parts:
        return {}
    text = f"{'; '.join(parts)} (run {run_id})"
    if len(text) > _LIMIT:
        text = text[: _LIMIT - 1] + "…"
    return {"rater_count": count, "rater_agreement": text}


def dataset_raters_record(sender, run: ValidationRun, **kwargs) -> None:
    """On a run's success, fill the blank rater fields of its dataset from the run's readers section."""
    if run.status != RunStatus.SUCCEEDED or not isinstance(run.results, Mapping) or not run.results.get("readers"):
        return
    dataset = Dataset.objects.select_for_update().get(pk=run.dataset_id)
    measured = rater_fields(run.results["readers"], run.pk)
    blank = {name: value for name, value in measured.items() if getattr(dataset, name) in (None, "")}
    if blank:
        record_update(instance=dataset, fields=blank)
