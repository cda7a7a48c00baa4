"""Data efficiency of a foundation model's embeddings: how well a simple probe on them does with
few labelled cases, against a comparator (another version's embeddings, or a model trained from
scratch), and whether the embeddings of new data drifted.

The headline claim of a foundation model is good performance from few labels; this checks it
(docs/methods.md, "Probes and label efficiency"):

1. Patients are split into ``folds`` groups (all of a patient's cases in one fold), once per
   repeat with its own seed.
2. For each fraction of the labelled training patients (1%, 2%, 5%, ... 100%) and each fold, a
   random subset of that share of the other folds' patients (at least one of each class) trains an
   L2-regularised logistic regression probe (``fit_logistic``: scikit-learn's objective at
   ``C``, fitted by Newton's method or L-BFGS with SciPy, so the engine needs no scikit-learn); the held-out fold is
   scored, and the AUROC is taken over all folds' held-out scores pooled.
3. The curve is the mean AUROC per fraction over the repeats, with a t interval across repeats
   (the spread that the choice of labelled cases and folds gives). The comparator is fitted on
   exactly the same patients and folds, so the difference is paired repeat by repeat.
4. The labelled cases needed to reach a target AUROC are read off the mean curve, interpolated
   linearly between fractions (None when the curve never reaches it).

``knn_scores`` is a k-nearest-neighbour probe (cosine similarity, the share of positive
neighbours), and ``mmd_test`` a maximum-mean-discrepancy test between two sets of embeddings
(Gaussian kernel at the median distance, patients averaged first so the permutation p-value
treats patients as the independent units). Plain NumPy and SciPy (no Django, no scikit-learn).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import minimize

from radtrust_engine.metrics import auroc

DEFAULT_FRACTIONS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.10, 0.25, 0.50, 1.00)
# The curve's fits stop at this gradient norm: AUROCs then agree with a fit to 1e-10 to far below
# the spread between repeats, in a fraction of the iterations.
CURVE_TOLERANCE = 1e-6
NEWTON_MAX_FEATURES = 256  # above it a Newton step (n d^2) costs more than L-BFGS's extra iterations (n d each)


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = 1.0, tol: float = 1e-10) -> tuple[np.ndarray, float]:
    """Weights and intercept minimising ``sum(log-loss) + ||w||^2 / (2 C)`` (the intercept not
    penalised), scikit-learn's ``LogisticRegression(C=c)`` objective.

    With more cases than features and at most ``NEWTON_MAX_FEATURES`` of them, Newton's method
    with a backtracking line search (embeddings are ill-conditioned: on the demo ViT's 64
    dimensions L-BFGS took ~300 iterations where Newton takes ~6); otherwise L-BFGS, whose
    iterations cost ``n d`` where Newton's cost ``n d^2``. Both stop at gradient max-norm ``tol``.
    """
    x = np.asarray(x, dtype=np.float64)
    sign = 2.0 * np.asarray(y, dtype=np.float64) - 1.0
    n_features = x.shape[1]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:n_features], theta[n_features]
        margin = sign * (x @ w + b)
        value = float(np.logaddexp(0.0, -margin).sum() + 0.5 * w @ w / c)
        slope = -sign * np.exp(-np.logaddexp(0.0, margin))  # d loss / d (x w + b)
        return value, np.r_[x.T @ slope + w / c, slope.sum()]

    if n_features <= NEWTON_MAX_FEATURES and x.shape[0] > n_features + 1:
        theta = _newton(loss, np.c_[x, np.ones(x.shape[0])], np.r_[np.full(n_features, 1.0 / c), 0.0], tol)
    else:
        theta = minimize(loss, np.zeros(n_features + 1), jac=True, method="L-BFGS-B", options={"gtol": tol, "ftol": 1e-15, "maxiter": 5000}).x
    return theta[:n_features], float(theta[n_features])


def _newton(loss, design: np.ndarray, penalty: np.ndarray, tol: float, max_iter: int = 100) -> np.ndarray:
    """Newton's method on the penalised log-loss: Hessian ``X' S X + diag(penalty)`` with ``S`` the
    logistic variances, solved by Cholesky (least squares if that fails), halving the step until
    the loss falls enough (Armijo)."""
    theta = np.zeros(design.shape[1])
    value, grad = loss(theta)
    for _ in range(max_iter):
        if np.abs(grad).max() <= tol:
            break
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        hessian = (design * (p * (1.0 - p))[:, None]).T @ design + np.diag(penalty)
        try:
            step = cho_solve(cho_factor(hessian), grad)
        except np.linalg.LinAlgError:  # an unpenalised direction with no curvature (all scores saturated)
            step = np.linalg.lstsq(hessian, grad, rcond=None)[0]
        t = 1.0
        while True:
            new_value, new_grad = loss(theta - t * step)
            if new_value <= value - 1e-4 * t * float(grad @ step) or t < 1e-10:
                break
            t /= 2
        if new_value > value:  # no descent left at machine precision
            break
        theta, value, grad = theta - t * step, new_value, new_grad
    return theta


def probe_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, c: float = 1.0, tol: float = 1e-10) -> np.ndarray:
    """Probabilities of the logistic probe fitted on the training cases, for the test cases."""
    w, b = fit_logistic(train_x, train_y, c, tol)
    return 1.0 / (1.0 + np.exp(-(np.asarray(test_x, dtype=np.float64) @ w + b)))


def knn_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, k: int = 20) -> np.ndarray:
    """Share of positive cases among each test case's ``k`` nearest training cases (cosine similarity)."""

    def unit(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    similarity = unit(test_x) @ unit(train_x).T
    k = min(k, similarity.shape[1])
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    return np.asarray(train_y, dtype=np.float64)[nearest].mean(axis=1)


@dataclass(frozen=True)
class CurvePoint:
    """The probe's AUROC at one labelled fraction: mean over repeats with its t interval."""

    fraction: float
    n_labelled: float  # mean labelled training cases per fit
    auroc: float | None
    ci_low: float | None
    ci_high: float | None
    repeats: tuple[float, ...]


@dataclass(frozen=True)
class LabelEfficiency:
    """A label-efficiency curve, the comparator's, their paired difference and the cases needed to reach a target."""

    probe: str
    curve: tuple[CurvePoint, ...]
    comparator: tuple[CurvePoint, ...] | None
    difference: tuple[CurvePoint, ...] | None
    target_auroc: float | None
    labelled_to_target: float | None
    comparator_labelled_to_target: float | None
    folds: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _t_interval(values: np.ndarray, confidence: float) -> tuple[float | None, float | None, float | None]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None, None
    mean = float(values.mean())
    if values.size < 2:
        return mean, None, None
    from scipy.stats import t  # imported on first use: SciPy's stats module is slow to import

    half = float(t.ppf(0.5 + confidence / 2, values.size - 1)) * float(values.std(ddof=1)) / math.sqrt(values.size)
    return mean, mean - half, mean + half


def _labelled_subset(rng: np.random.Generator, train_patients: np.ndarray, fraction: float, patient_positive: np.ndarray) -> np.ndarray:
    """A random ``fraction`` of the training patients, at least one with a positive and one without."""
    n = max(2, int(round(fraction * train_patients.size)))
    chosen = rng.permutation(train_patients)[:n]
    for wanted in (True, False):
        if not (patient_positive[chosen] == wanted).any():
            pool = train_patients[patient_positive[train_patients] == wanted]
            if pool.size:
                chosen = np.r_[chosen[1:] if chosen.size > 2 else chosen, rng.choice(pool)]
    return chosen


def _scores_for(probe: str, x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, c: float, k: int) -> np.ndarray:
    if probe == "knn":
        return knn_scores(x[train], y[train], x[test], k)
    return probe_scores(x[train], y[train], x[test], c, CURVE_TOLERANCE)


def label_efficiency(
    embeddings: np.ndarray,
    y: Sequence[int],
    patients: Sequence[str],
    *,
    comparator: np.ndarray | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    repeats: int = 5,
    folds: int = 5,
    target_auroc: float | None = None,
    probe: str = "logistic",
    c: float = 1.0,
    k: int = 20,
    seed: int = 0,
    confidence: float = 0.95,
) -> LabelEfficiency:
    """The label-efficiency curve of ``embeddings`` (and of ``comparator``, the same cases' embeddings
    from another model, fitted on the same patients) as the module docstring describes."""
    if probe not in ("logistic", "knn"):
        raise ValueError(f"probe is logistic or knn, not {probe!r}")
    x = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(y, dtype=np.int8)
    keys, patient_idx = np.unique(np.asarray(patients, dtype=str), return_inverse=True)
    if x.ndim != 2 or x.shape[0] != labels.size or labels.size != patient_idx.size:
        raise ValueError("embeddings, labels and patients must describe the same cases")
    if comparator is not None and np.asarray(comparator).shape[0] != labels.size:
        raise ValueError("the comparator's embeddings must be of the same cases")
    if keys.size < folds:
        raise ValueError(f"{keys.size} patients cannot make {folds} folds")
    patient_positive = np.bincount(patient_idx, weights=labels, minlength=keys.size) > 0
    sets = {"main": x, **({"comparator": np.asarray(comparator, dtype=np.float64)} if comparator is not None else {})}
    results = {name: np.full((len(fractions), repeats), np.nan) for name in sets}
    n_labelled = np.zeros((len(fractions), repeats))
    for r in range(repeats):
        rng = np.random.default_rng([seed, r])
        fold_of = rng.permutation(keys.size) % folds
        for f, fraction in enumerate(fractions):
            held = {name: np.full(labels.size, np.nan) for name in sets}
            for fold in range(folds):
                train_patients = np.flatnonzero(fold_of != fold)
                chosen = _labelled_subset(rng, train_patients, fraction, patient_positive)
                train = np.flatnonzero(np.isin(patient_idx, chosen))
                test = np.flatnonzero(fold_of[patient_idx] == fold)
                n_labelled[f, r] += train.size / folds
                if np.unique(labels[train]).size < 2:
                    continue
                for name, data in sets.items():
                    held[name][test] = _scores_for(probe, data, labels, train, test, c, k)
            for name in sets:
                scored = np.isfinite(held[name])
                value = auroc(labels[scored], held[name][scored]) if scored.any() else None
                results[name][f, r] = np.nan if value is None else value

    def curve(values: np.ndarray) -> tuple[CurvePoint, ...]:
        points = []
        for f, fraction in enumerate(fractions):
            mean, low, high = _t_interval(values[f], confidence)
            points.append(CurvePoint(float(fraction), float(n_labelled[f].mean()), mean, low, high, tuple(float(v) for v in values[f])))
        return tuple(points)

    main = curve(results["main"])
    other = curve(results["comparator"]) if comparator is not None else None
    difference = curve(results["main"] - results["comparator"]) if comparator is not None else None
    return LabelEfficiency(
        probe=probe,
        curve=main,
        comparator=other,
        difference=difference,
        target_auroc=target_auroc,
        labelled_to_target=labelled_to_reach(main, target_auroc),
        comparator_labelled_to_target=labelled_to_reach(other, target_auroc) if other else None,
        folds=folds,
        confidence=confidence,
    )


def labelled_to_reach(curve: Sequence[CurvePoint] | None, target: float | None) -> float | None:
    """Labelled cases at which the mean curve first reaches ``target``, interpolated linearly between
    fractions; None when it never does (or no target was set)."""
    if not curve or target is None:
        return None
    previous = None
    for point in curve:
        if point.auroc is not None and point.auroc >= target:
            if previous is None or previous.auroc is None:
                return point.n_labelled
            share = (target - previous.auroc) / (point.auroc - previous.auroc)
            return previous.n_labelled + share * (point.n_labelled - previous.n_labelled)
        previous = point
    return None


@dataclass(frozen=True)
class MmdResult:
    """Maximum mean discrepancy between two sets of embeddings, with its permutation p-value."""

    mmd2: float
    p_value: float
    n_reference: int  # patients
    n_current: int
    bandwidth: float
    n_permutations: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _patient_means(x: np.ndarray, patients: Sequence[str] | None) -> np.ndarray:
    if patients is None:
        return x
    keys, idx = np.unique(np.asarray(patients, dtype=str), return_inverse=True)
    sums = np.zeros((keys.size, x.shape[1]))
    np.add.at(sums, idx, x)
    return sums / np.bincount(idx, minlength=keys.size)[:, None]


def _mmd2(kernel: np.ndarray, in_first: np.ndarray) -> float:
    """Unbiased MMD² from the pooled kernel matrix and a mask of the first sample's rows."""
    a, b = in_first, ~in_first
    n, m = int(a.sum()), int(b.sum())
    kaa, kbb, kab = kernel[np.ix_(a, a)], kernel[np.ix_(b, b)], kernel[np.ix_(a, b)]
    return float((kaa.sum() - np.trace(kaa)) / (n * (n - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1)) - 2 * kab.mean())


def mmd_test(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    reference_patients: Sequence[str] | None = None,
    current_patients: Sequence[str] | None = None,
    n_permutations: int = 1000,
    seed: int = 0,
) -> MmdResult:
    """Whether ``current`` embeddings come from the same distribution as ``reference`` (module docstring)."""
    first = _patient_means(np.asarray(reference, dtype=np.float64), reference_patients)
    second = _patient_means(np.asarray(current, dtype=np.float64), current_patients)
    if first.shape[0] < 2 or second.shape[0] < 2:
        raise ValueError("each sample needs at least two patients")
    pooled = np.vstack([first, second])
    squared = np.maximum(np.sum(pooled**2, 1)[:, None] + np.sum(pooled**2, 1)[None, :] - 2 * pooled @ pooled.T, 0.0)
    off_diagonal = squared[np.triu_indices_from(squared, k=1)]
    bandwidth = float(np.median(off_diagonal)) or 1.0
    kernel = np.exp(-squared / bandwidth)
    mask = np.r_[np.ones(first.shape[0], bool), np.zeros(second.shape[0], bool)]
    observed = _mmd2(kernel, mask)
    rng = np.random.default_rng(seed)
    exceed = sum(_mmd2(kernel, rng.permutation(mask)) >= observed for _ in range(n_permutations))
    return MmdResult(observed, (exceed + 1) / (n_permutations + 1), first.shape[0], second.shape[0], bandwidth, n_permutations)


def _aligned_comparator(rows: np.ndarray, comparator_rows: np.ndarray, comparator: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in this run of the cases the comparator also embedded, and the comparator's rows for them."""
    position = {int(row): i for i, row in enumerate(comparator_rows)}
    mine = np.asarray([i for i, row in enumerate(rows) if int(row) in position], dtype=np.int64)
    return mine, comparator[[position[int(rows[i])] for i in mine]] if mine.size else comparator[:0]


def efficiency_section(
    embeddings: np.ndarray,
    labels: np.ndarray,
    label_names: Sequence[str],
    patient_keys: np.ndarray,
    rows: np.ndarray,
    *,
    embedding_output: str,
    comparator: tuple[np.ndarray, np.ndarray] | None = None,
    comparator_source: dict[str, Any] | None = None,
    comparator_problem: str = "",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    repeats: int = 5,
    folds: int = 5,
    target_auroc: float | None = None,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """A run's data-efficiency section: per label the logistic and kNN probes' label-efficiency curves
    on the run's embeddings (the comparator's beside them when given), JSON-ready.

    ``comparator`` is ``(case rows, embeddings)`` of another version's run on the same manifest;
    the curves are then fitted on the cases both runs embedded, so the difference is paired. A
    label whose curve cannot be fitted (too few patients for the folds, one class only) carries
    its reason and the other labels stand.
    """
    keep = np.arange(rows.size)
    other = None
    if comparator is not None:
        keep, other = _aligned_comparator(rows, *comparator)
        if keep.size == 0:
            comparator_problem, other, keep = "the comparator run embedded none of this run's cases", None, np.arange(rows.size)
    per_label: dict[str, Any] = {}
    for k, name in enumerate(label_names):
        curves: dict[str, Any] = {}
        try:
            for probe in ("logistic", "knn"):
                curves[probe] = label_efficiency(
                    embeddings[keep],
                    labels[keep, k],
                    patient_keys[keep],
                    comparator=other,
                    fractions=fractions,
                    repeats=repeats,
                    folds=folds,
                    target_auroc=target_auroc,
                    probe=probe,
                    seed=seed,
                    confidence=confidence,
                ).to_dict()
        except ValueError as exc:
            curves = {"error": str(exc)}
        per_label[name] = curves
    return {
        "embedding_output": embedding_output,
        "dimensions": int(embeddings.shape[1]),
        "n_cases": int(keep.size),
        "n_patients": int(np.unique(patient_keys[keep]).size),
        "fractions": [float(f) for f in fractions],
        "repeats": repeats,
        "folds": folds,
        "target_auroc": target_auroc,
        "comparator": {**(comparator_source or {}), "n_cases_paired": int(keep.size)} if other is not None else None,
        "comparator_problem": comparator_problem or None,
        "labels": per_label,
    }
