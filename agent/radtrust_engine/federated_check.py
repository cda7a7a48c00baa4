"""The server's validator of a site summary: ``payload_check``.

Plain Python (no Django). Whatever an agent sends, the server stores a payload only
when this returns no message. It is a strict whitelist, read together with the
format in ``radtrust_engine.federated_payload``:

1. A scan of the whole object, whatever its shape: only JSON types; no list longer
   than the number of score bins; no key, and no string, that reads like an
   identifier, a path or a file; no string longer than a category label.
2. The schema: exactly the known keys at every level (so no extra field can carry
   per-case data), the known enumerations, names and values that are short
   category labels, integers where counts belong.
3. The arithmetic: counts non-negative and consistent (histograms decode to the bin
   count and add up to the class counts, confusion and calibration counts agree
   with them, metric values with the counts and histograms), every shown stratum
   and class at or above the minimum, and no suppressed count recoverable below the
   minimum by subtracting published counts (``radtrust_engine.disclosure``).

Each message names the place in the payload and what is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from radtrust_engine.disclosure import CLASS_SPLIT, KINDS, DisclosureSystem, determined_pairs, partition_equations
from radtrust_engine.federated_payload import (
    CALIBRATION_BINS,
    CLASSES,
    DEFAULT_MIN_PATIENTS,
    DIGIT_RUN,
    FILE_SUFFIX,
    LABEL_REASONS,
    MAX_ATTRIBUTES,
    MAX_INTERSECTIONS,
    MAX_LABELS,
    MAX_RESAMPLES,
    MAX_STRATA,
    MAX_VALUES_PER_ATTRIBUTE,
    METRICS,
    SCHEMA,
    SCORE_BINS,
    SE_UNITS,
    STRATUM_REASONS,
    edge_index,
    identifying,
    n_score_bins,
    name_problem,
    rle_decode,
    score_bin_edges,
    stratum_name,
    value_problem,
)

_MAX_STRING = 64
_MAX_DEPTH = 8
_TOP = ("schema", "score_bins", "calibration_bins", "min_patients", "confidence", "n_resamples", "labels", "attributes", "intersections", "strata")
_SHOWN_STRATUM = ("attributes", "values", "suppressed", "n_cases", "n_patients", "labels")
_HIDDEN_STRATUM = ("attributes", "values", "suppressed", "reason")
_SHOWN_LABEL = ("suppressed", "cases", "patients", "histogram", "confusion", "calibration", "metrics")
_ESTIMATE = ("value", "se", "ci_low", "ci_high")
_CONFUSION = ("tp", "fp", "tn", "fn")
_CALIBRATION = ("count", "positives", "mean_predicted")
# Keys of the format itself; any other key is a label name (checked as one) or refused.
_KNOWN_KEYS = frozenset(
    _TOP + _SHOWN_STRATUM + _HIDDEN_STRATUM + _SHOWN_LABEL + _ESTIMATE + _CONFUSION + _CALIBRATION + CLASSES + METRICS + ("threshold",)
)
_COUNTED = {"n": "cases", "positive": "positive cases", "negative": "negative cases"}


class _Checker:
    """Collects the messages of one payload; the minimum rises to the payload's own if higher."""

    def __init__(self, min_patients: int):
        self.errors: list[str] = []
        self.minimum = min_patients
        self.n_bins = n_score_bins()

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path or 'payload'}: {message}")

    # -- 1. the shape-blind scan ------------------------------------------------

    def scan(self, obj: Any, path: str, depth: int = 0) -> None:
        if depth > _MAX_DEPTH:
            self.error(path, f"nested deeper than {_MAX_DEPTH} levels")
        elif isinstance(obj, dict):
            for key, value in obj.items():
                sub = f"{path}.{key}" if path else str(key)
                if not isinstance(key, str):
                    self.error(sub, "keys must be strings")
                elif key not in _KNOWN_KEYS and identifying(key):
                    self.error(sub, "key names per-case data (identifiers, patients, cases, paths, files, scores or rows never leave a site)")
                elif len(key) > _MAX_STRING:
                    self.error(sub, f"key longer than {_MAX_STRING} characters")
                self.scan(value, sub, depth + 1)
        elif isinstance(obj, list):
            if len(obj) > self.n_bins:
                self.error(path, f"list of {len(obj)} items, longer than the {self.n_bins} score bins: per-case data is not accepted")
            for i, value in enumerate(obj):
                self.scan(value, f"{path}[{i}]", depth + 1)
        elif isinstance(obj, str):
            if len(obj) > _MAX_STRING:
                self.error(path, f"string longer than {_MAX_STRING} characters")
            elif any(ch in obj for ch in "/\\:~") or FILE_SUFFIX.search(obj):
                self.error(path, f"{obj!r} looks like a path or file name")
            elif DIGIT_RUN.search(obj):
                self.error(path, f"{obj!r} looks like an identifier (five or more digits in a row)")
        elif isinstance(obj, float):
            if not math.isfinite(obj):
                self.error(path, "not a finite number")
        elif obj is not None and not isinstance(obj, (bool, int)):
            self.error(path, f"{type(obj).__name__} is not a JSON value")

    # -- 2. the schema ------------------------------------------------------------

    def keys(self, obj: Any, path: str, expected: tuple[str, ...]) -> bool:
        if not isinstance(obj, dict):
            self.error(path, "must be an object")
            return False
        for key in obj:
            if key not in expected and (not isinstance(key, str) or key in _KNOWN_KEYS or not identifying(key)):  # else the scan said why
                self.error(f"{path}.{key}" if path else str(key), "unknown key")
        missing = [k for k in expected if k not in obj]
        if missing:
            self.error(path, f"missing {', '.join(missing)}")
        return not missing and set(obj) == set(expected)

    def count(self, obj: Any, path: str, minimum: int = 0) -> bool:
        if isinstance(obj, bool) or not isinstance(obj, int):
            self.error(path, "must be an integer count")
            return False
        if obj < minimum:
            self.error(path, f"{obj} is under {'the minimum of ' if minimum > 1 else ''}{minimum}")
            return False
        return True

    def unit(self, obj: Any, path: str, nullable: bool = False) -> bool:
        if obj is None and nullable:
            return True
        if isinstance(obj, bool) or not isinstance(obj, (int, float)) or not 0.0 <= obj <= 1.0:
            self.error(path, "must be a number in [0, 1]" + (" or null" if nullable else ""))
            return False
        return True

    def label_name(self, obj: Any, path: str) -> bool:
        problem = name_problem(obj)
        if problem:
            self.error(path, problem)
        return problem is None

    def payload(self, d: Any) -> dict | None:
        """The checked header, or None when it is not usable."""
        optional = ("se_unit",) if isinstance(d, dict) and "se_unit" in d else ()  # absent: an older agent's image-level SEs
        if not self.keys(d, "", _TOP + optional):
            return None
        if optional and d["se_unit"] not in SE_UNITS:
            self.error("se_unit", f"must be one of {list(SE_UNITS)}")
            return None
        ok = True
        for key, expected in (("schema", SCHEMA), ("score_bins", SCORE_BINS), ("calibration_bins", CALIBRATION_BINS)):
            if d[key] != expected:
                self.error(key, f"must be {expected!r}")
                ok = False
        if self.count(d["min_patients"], "min_patients", self.minimum):
            self.minimum = max(self.minimum, d["min_patients"])
        else:
            ok = False
        ok &= self.count(d["n_resamples"], "n_resamples")
        if isinstance(d["n_resamples"], int) and d["n_resamples"] > MAX_RESAMPLES:
            self.error("n_resamples", f"at most {MAX_RESAMPLES}")
        if not (isinstance(d["confidence"], float) and 0.0 < d["confidence"] < 1.0):
            self.error("confidence", "must be a number in (0, 1)")
        labels = d["labels"]
        if not isinstance(labels, dict) or not 1 <= len(labels) <= MAX_LABELS:
            self.error("labels", f"must be an object of 1 to {MAX_LABELS} labels")
            return None
        for name, spec in labels.items():
            ok &= self.label_name(name, f"labels.{name}")
            if self.keys(spec, f"labels.{name}", ("threshold",)):
                ok &= self.unit(spec["threshold"], f"labels.{name}.threshold")
            else:
                ok = False
        attrs = d["attributes"]
        if not isinstance(attrs, list) or len(attrs) > MAX_ATTRIBUTES or len(set(map(str, attrs))) != len(attrs):
            self.error("attributes", f"must be a list of at most {MAX_ATTRIBUTES} distinct names")
            return None
        for i, a in enumerate(attrs):
            ok &= self.label_name(a, f"attributes[{i}]")
        inters = d["intersections"]
        if not isinstance(inters, list) or len(inters) > MAX_INTERSECTIONS:
            self.error("intersections", f"must be a list of at most {MAX_INTERSECTIONS} intersections")
            return None
        for i, inter in enumerate(inters):
            if not isinstance(inter, list) or len(inter) < 2 or len(set(map(str, inter))) != len(inter) or any(a not in attrs for a in inter):
                self.error(f"intersections[{i}]", "must list two or more distinct declared attributes")
                ok = False
        if ok and len({tuple(i) for i in inters}) != len(inters):
            self.error("intersections", "an intersection is declared twice")
            ok = False
        if not isinstance(d["strata"], list) or len(d["strata"]) > MAX_STRATA:
            self.error("strata", f"must be a list of at most {MAX_STRATA} strata")
            return None
        return d if ok else None

    def stratum(self, s: Any, path: str, groupings: set[tuple[str, ...]], labels: Mapping[str, Any]) -> bool:
        if not isinstance(s, dict):
            self.error(path, "must be an object")
            return False
        suppressed = s.get("suppressed")
        if not isinstance(suppressed, bool):
            self.error(f"{path}.suppressed", "must be true or false")
            return False
        if not self.keys(s, path, _HIDDEN_STRATUM if suppressed else _SHOWN_STRATUM):
            return False
        attrs, values = s["attributes"], s["values"]
        if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs) or tuple(attrs) not in groupings:
            self.error(f"{path}.attributes", "must be [] or a declared attribute or intersection")
            return False
        if not isinstance(values, list) or len(values) != len(attrs):
            self.error(f"{path}.values", "must hold one value per attribute")
            return False
        ok = True
        for i, v in enumerate(values):
            if problem := value_problem(v):
                self.error(f"{path}.values[{i}]", problem)
                ok = False
        if suppressed:
            if not isinstance(s["reason"], str) or s["reason"] not in STRATUM_REASONS:
                self.error(f"{path}.reason", f"must be one of {sorted(STRATUM_REASONS)}")
                return False
            return ok
        ok &= self.count(s["n_patients"], f"{path}.n_patients", self.minimum)
        if ok and self.count(s["n_cases"], f"{path}.n_cases"):
            if s["n_cases"] < s["n_patients"]:
                self.error(f"{path}.n_cases", "fewer cases than patients")
                return False
            if not isinstance(s["labels"], dict) or set(s["labels"]) != set(labels):
                self.error(f"{path}.labels", f"must hold exactly the labels {sorted(labels)}")
                return False
            for name, block in s["labels"].items():
                ok &= self.label(block, f"{path}.labels.{name}", s, labels[name]["threshold"])
            return ok
        return False

    def label(self, b: Any, path: str, stratum: Mapping[str, Any], threshold: float) -> bool:
        if not isinstance(b, dict) or not isinstance(b.get("suppressed"), bool):
            self.error(path, "must be an object with suppressed true or false")
            return False
        if b["suppressed"]:
            if not self.keys(b, path, ("suppressed", "reason")):
                return False
            if not isinstance(b["reason"], str) or b["reason"] not in LABEL_REASONS:
                self.error(f"{path}.reason", f"must be one of {sorted(LABEL_REASONS)}")
                return False
            return True
        if not (
            self.keys(b, path, _SHOWN_LABEL)
            and self.keys(b["cases"], f"{path}.cases", CLASSES)
            and self.keys(b["patients"], f"{path}.patients", CLASSES)
            and self.keys(b["histogram"], f"{path}.histogram", CLASSES)
            and self.keys(b["confusion"], f"{path}.confusion", _CONFUSION)
            and self.keys(b["calibration"], f"{path}.calibration", _CALIBRATION)
            and self.keys(b["metrics"], f"{path}.metrics", METRICS)
        ):
            return False
        cases, hist = {}, {}
        for k in CLASSES:
            if not (
                self.count(b["cases"][k], f"{path}.cases.{k}", self.minimum) and self.count(b["patients"][k], f"{path}.patients.{k}", self.minimum)
            ):
                return False
            cases[k] = b["cases"][k]
            if b["patients"][k] > min(cases[k], stratum["n_patients"]):
                self.error(f"{path}.patients.{k}", "more patients than cases, or than the stratum has")
                return False
            try:
                hist[k] = rle_decode(b["histogram"][k], self.n_bins) if isinstance(b["histogram"][k], list) else None
            except ValueError as exc:
                self.error(f"{path}.histogram.{k}", str(exc))
                return False
            if hist[k] is None or int(hist[k].sum()) != cases[k]:
                self.error(f"{path}.histogram.{k}", f"must be runs of counts adding up to cases.{k}")
                return False
        if cases["positive"] + cases["negative"] != stratum["n_cases"]:
            self.error(f"{path}.cases", "positive and negative cases do not add up to n_cases")
            return False
        return (
            self.confusion(b["confusion"], f"{path}.confusion", hist, threshold)
            and self.calibration(b["calibration"], f"{path}.calibration", cases)
            and self.metrics(b["metrics"], f"{path}.metrics", b["confusion"], cases, hist)
        )

    def confusion(self, c: Mapping[str, Any], path: str, hist: Mapping[str, np.ndarray], threshold: float) -> bool:
        if not all(self.count(c[k], f"{path}.{k}") for k in _CONFUSION):
            return False
        if c["tp"] + c["fn"] != hist["positive"].sum() or c["fp"] + c["tn"] != hist["negative"].sum():
            self.error(path, "counts do not add up to the class counts")
            return False
        i = edge_index(threshold)  # on an edge the counts are exact; else the threshold's bin is split
        lo = min(int(np.searchsorted(score_bin_edges(), threshold, side="right")) - 1, self.n_bins - 1)
        for key, k in (("tp", "positive"), ("fp", "negative")):
            above = int(hist[k][lo + 1 :].sum()) if i is None else int(hist[k][i:].sum())
            if not above <= c[key] <= above + (0 if i is not None else int(hist[k][lo])):
                self.error(f"{path}.{key}", "disagrees with the histogram at the threshold")
                return False
        return True

    def calibration(self, c: Mapping[str, Any], path: str, cases: Mapping[str, int]) -> bool:
        lists = [c[k] for k in _CALIBRATION]
        if not all(isinstance(x, list) and len(x) == CALIBRATION_BINS for x in lists):
            self.error(path, f"count, positives and mean_predicted must be lists of {CALIBRATION_BINS}")
            return False
        edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
        for b, (n, p, m) in enumerate(zip(*lists)):
            if not (self.count(n, f"{path}.count[{b}]") and self.count(p, f"{path}.positives[{b}]")):
                return False
            if p > n:
                self.error(f"{path}.positives[{b}]", "more positives than cases in the bin")
                return False
            if (m is None) != (n == 0) or (
                m is not None and not (self.unit(m, f"{path}.mean_predicted[{b}]") and edges[b] - 1e-4 <= m <= edges[b + 1] + 1e-4)
            ):
                self.error(f"{path}.mean_predicted[{b}]", "must be null for an empty bin, else inside the bin")
                return False
        if sum(lists[0]) != cases["positive"] + cases["negative"] or sum(lists[1]) != cases["positive"]:
            self.error(path, "bin counts do not add up to the stratum's cases and positives")
            return False
        return True

    def metrics(
        self, m: Mapping[str, Any], path: str, confusion: Mapping[str, int], cases: Mapping[str, int], hist: Mapping[str, np.ndarray]
    ) -> bool:
        for name in METRICS:
            if not self.keys(m[name], f"{path}.{name}", _ESTIMATE):
                return False
            if not all(self.unit(m[name][k], f"{path}.{name}.{k}", nullable=True) for k in _ESTIMATE):
                return False
        pos, neg = cases["positive"], cases["negative"]
        expected = {"sensitivity": confusion["tp"] / pos, "specificity": confusion["tn"] / neg, "prevalence": pos / (pos + neg)}
        for name, value in expected.items():
            if m[name]["value"] is None or abs(m[name]["value"] - value) > 1e-5:
                self.error(f"{path}.{name}.value", "disagrees with the counts")
                return False
        # The exact AUROC differs from the binned one by at most half the same-bin pairs.
        p, n = hist["positive"].astype(np.float64), hist["negative"].astype(np.float64)
        below = np.cumsum(n) - n
        binned = float((p * (below + 0.5 * n)).sum() / (pos * neg))
        slack = float((p * n).sum() / (2 * pos * neg)) + 1e-5
        if m["auroc"]["value"] is None or abs(m["auroc"]["value"] - binned) > slack:
            self.error(f"{path}.auroc.value", "disagrees with the histograms")
            return False
        return True

    # -- 3. what subtraction recovers -------------------------------------------

    def disclosure(self, d: Mapping[str, Any]) -> None:
        strata = d["strata"]
        keys = [(tuple(s["attributes"]), tuple(s["values"])) for s in strata]
        groupings = [(), *((a,) for a in d["attributes"]), *(tuple(i) for i in d["intersections"])]
        equations = partition_equations(keys, groupings)
        names = [stratum_name(*k) for k in keys]
        shown = np.array([not s["suppressed"] for s in strata])
        n = np.array([0 if s["suppressed"] else s["n_cases"] for s in strata], dtype=np.float64)
        self.recoverable(DisclosureSystem.build(len(keys), equations), shown, n, names, ("n",), "")
        joint = DisclosureSystem.build(len(keys), equations, KINDS, CLASS_SPLIT)
        for label in d["labels"]:
            blocks = [None if s["suppressed"] else s["labels"][label] for s in strata]
            visible = np.array([b is not None and not b["suppressed"] for b in blocks])
            counts = [np.array([b["cases"][k] if v else 0 for b, v in zip(blocks, visible)], dtype=np.float64) for k in CLASSES]
            self.recoverable(joint, np.concatenate([shown, visible, visible]), np.concatenate([n, *counts]), names, CLASSES, f" of {label!r}")

    def recoverable(self, system: DisclosureSystem, known: np.ndarray, values: np.ndarray, names: list[str], kinds: tuple[str, ...], of: str) -> None:
        """Refuse sums that do not add up, suppressed members of a sum that hold fewer than the
        minimum together, and suppressed counts, alone or two together, that the equations
        determine below the minimum."""
        for kind in kinds:
            for total, members in system.equations:
                t = system.var(kind, total)
                if not known[t]:
                    continue
                hidden = [m for m in members if not known[system.var(kind, m)]]
                rest = values[t] - sum(values[system.var(kind, m)] for m in members if m not in hidden)
                if not hidden and rest != 0:
                    self.error("strata", f"the {_COUNTED[kind]}{of} of the cells under {names[total]} do not add up to its own")
                elif hidden and rest < self.minimum:
                    self.error(
                        "strata",
                        f"the suppressed cells under {names[total]} "
                        f"({'; '.join(names[m] for m in hidden)}) hold fewer than {self.minimum} "
                        f"{_COUNTED[kind]}{of} together: subtraction reveals them",
                    )
        derivable, derived = system.recover(known, values)
        for v in np.flatnonzero(derivable):
            if derived[v] < self.minimum - 1e-6:
                kind, cell = system.kinds[v // system.n_cells], v % system.n_cells
                self.error(
                    "strata",
                    f"{names[cell]} is suppressed, but its {_COUNTED[kind]}{of} can be "
                    f"recovered from published counts and are under the minimum of {self.minimum}",
                )
        for a, b, total in determined_pairs(system, known, values):
            if total < self.minimum - 1e-6:
                kind = system.kinds[a // system.n_cells]
                self.error(
                    "strata",
                    f"{names[a % system.n_cells]} and {names[b % system.n_cells]} are suppressed, but their "
                    f"{_COUNTED[kind]}{of} together can be recovered from published counts and are under the minimum of {self.minimum}",
                )


def payload_check(payload: Any, *, min_patients: int = DEFAULT_MIN_PATIENTS) -> list[str]:
    """Why the server must refuse this site summary; an empty list means it may be stored.

    ``min_patients`` is the server's minimum; a payload may declare a higher one (never a
    lower one), and its counts are checked against the higher of the two.
    """
    c = _Checker(min_patients)
    c.scan(payload, "")
    d = c.payload(payload)
    if d is None:
        return c.errors
    labels = d["labels"]
    groupings = {(), *((a,) for a in d["attributes"]), *(tuple(i) for i in d["intersections"])}
    ok = True
    seen: set = set()
    per_grouping: dict[tuple, int] = {}
    for i, s in enumerate(d["strata"]):
        if not c.stratum(s, f"strata[{i}]", groupings, labels):
            ok = False
            continue
        key = (tuple(s["attributes"]), tuple(s["values"]))
        if key in seen:
            c.error(f"strata[{i}]", f"{stratum_name(*key)} is listed twice")
            ok = False
        seen.add(key)
        per_grouping[key[0]] = per_grouping.get(key[0], 0) + 1
    if ok and ((), ()) not in seen:
        c.error("strata", "the overall stratum is missing")
        ok = False
    for attrs, count in per_grouping.items():
        if count > MAX_VALUES_PER_ATTRIBUTE ** len(attrs):
            c.error("strata", f"{' x '.join(attrs)} has {count} cells: attributes are categories with at most {MAX_VALUES_PER_ATTRIBUTE} values")
            ok = False
    if ok and not c.errors:
        c.disclosure(d)
    return c.errors
