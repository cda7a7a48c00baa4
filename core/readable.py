"""Numbers and values in the words a reader needs: counts with separators, other numbers to three
significant figures, metrics with their confidence intervals to the same places, metric names as
people write them, and any mapping or list as plain text, never JSON (a threshold of 0.49412345678
prints 0.494). Every page and document formats through these (core, so that the validation pages
and the compliance documents share them), so a number reads the same everywhere."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

_TITLES = {
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "PPV",
    "npv": "NPV",
    "f1": "F1",
    "fnr": "False-negative rate",
    "fpr": "False-positive rate",
    "dice": "Dice",
    "iou": "IoU",
    "ece": "ECE",
    "brier": "Brier score",
}


def decimals(value: float, figures: int = 3) -> int:
    """The decimal places that show ``value`` to ``figures`` significant figures (0.731, 0.0123, 12.3)."""
    if value == 0 or not math.isfinite(value):
        return figures - 1
    magnitude = math.floor(math.log10(abs(value)))
    places = max(figures - 1 - magnitude, 0)
    if round(abs(value), places) >= 10 ** (magnitude + 1):  # 0.9996 rounds to 1.00, not 1.000
        places = max(places - 1, 0)
    return places


def number(value: Any, figures: int = 3) -> str:
    """A number for people: counts with thousands separators, other numbers to ``figures`` significant
    figures (a threshold of 0.49412345678 prints 0.494), never more digits than the data can carry."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "not finite"
        return f"{value:,.0f}" if abs(value) >= 10**figures else f"{value:.{decimals(value, figures)}f}"
    return str(value)


def metric(value: Any) -> str:
    """``0.912 (0.880 to 0.941)``: the estimate to three significant figures and its interval to the
    same decimal places; "not estimable" when the engine could not compute it."""
    if not isinstance(value, Mapping) or not isinstance(value.get("value"), (int, float)):
        return "not estimable"
    point = float(value["value"])
    places = decimals(point)
    text = number(point)
    low, high = value.get("ci_low"), value.get("ci_high")
    if isinstance(low, (int, float)) and isinstance(high, (int, float)) and abs(point) < 1000:
        text += f" ({float(low):.{places}f} to {float(high):.{places}f})"
    return text


def percent(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


_ACRONYMS = frozenset({"auroc", "auprc", "ppv", "npv", "fnr", "fpr", "ece", "iou"})


def title(key: str) -> str:
    """``auroc`` -> ``AUROC``, ``fnr_gap`` -> ``FNR gap``, ``equalized_odds_difference`` -> ``Equalized odds difference``."""
    if key in _TITLES:
        return _TITLES[key]
    text = " ".join(w.upper() if w in _ACRONYMS else w for w in str(key).split("_"))
    return text[:1].upper() + text[1:]


def date(value: str | None) -> str:
    return (value or "—")[:16].replace("T", " ")


def words(value: Any) -> str:
    """Any value in words: a mapping as ``Key: value; ...``, a list joined, numbers rounded; never JSON."""
    if value in (None, "", [], {}):
        return "—"
    if isinstance(value, Mapping):
        return "; ".join(f"{title(str(k))}: {f'({words(v)})' if isinstance(v, Mapping) and v else words(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(words(v) for v in value)
    return number(value)
