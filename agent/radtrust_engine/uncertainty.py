"""Per-case uncertainty in a run: test-time augmentation on the tensors kept from inference,
the coverage-risk curve, the share of cases to refer to a human for a target risk, and the
per-case flags a clinician page can show.

Augmentations are mild and label-preserving for a classifier: the identity, a
left-right flip and shifts of two pixels, alone and combined, in a fixed order
(the first ``n`` are used). A case's uncertainty is the entropy of its mean
probability over the augmentations (total predictive uncertainty, in nats);
the spread and the mutual information (the model's disagreement with itself)
are reported too. Statistics come from ``radtrust_engine.calibration``.

Each view runs through the model once for all labels (``augmented_scores``):
the model's output holds every label, so each label's report reads its
column, and the forward passes do not grow with the number of labels.

Plain NumPy; the caller wraps the model (no Django, no onnxruntime).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from radtrust_engine.calibration import case_flags, coverage_risk, predictive_entropy, referral_for_target_risk, tta_uncertainty

_SHIFT = 2
AUGMENTATIONS: tuple[str, ...] = (
    "identity",
    "flip",
    "shift_right",
    "shift_left",
    "shift_down",
    "shift_up",
    "flip_shift_right",
    "flip_shift_down",
)


def augment(batch: np.ndarray, name: str) -> np.ndarray:
    """One view of an (N, C, ..., H, W) batch; shifts pad with the edge row or column."""
    x = batch[..., ::-1] if name.startswith("flip") else batch
    if name.endswith(("shift_right", "shift_left")):
        step = _SHIFT if name.endswith("right") else -_SHIFT
        x = np.roll(x, step, axis=-1)
        edge = slice(0, step) if step > 0 else slice(step, None)
        x[..., edge] = x[..., _SHIFT : _SHIFT + 1] if step > 0 else x[..., -_SHIFT - 1 : -_SHIFT]
    elif name.endswith(("shift_down", "shift_up")):
        step = _SHIFT if name.endswith("down") else -_SHIFT
        x = np.roll(x, step, axis=-2)
        edge = slice(0, step) if step > 0 else slice(step, None)
        x[..., edge, :] = x[..., _SHIFT : _SHIFT + 1, :] if step > 0 else x[..., -_SHIFT - 1 : -_SHIFT, :]
    return np.ascontiguousarray(x)


@dataclass(frozen=True)
class AugmentedScores:
    """Every label's probabilities under each augmentation: ``samples`` is ``(augmentations, N, L)``."""

    augmentations: tuple[str, ...]
    samples: np.ndarray


def augmented_scores(predict: Callable[[np.ndarray], np.ndarray], tensors: np.ndarray, *, batch_size: int, n_augmentations: int) -> AugmentedScores:
    """The first ``n_augmentations`` views of the kept ``tensors``, each batch scored once for all labels:
    ``predict`` maps a batch to the ``(n, L)`` probabilities of every label."""
    names = AUGMENTATIONS[: max(1, min(n_augmentations, len(AUGMENTATIONS)))]
    samples = [
        np.concatenate([predict(augment(tensors[start : start + batch_size], name)) for start in range(0, len(tensors), batch_size)])
        for name in names
    ]
    return AugmentedScores(augmentations=names, samples=np.stack(samples))


def uncertainty_report(
    augmented: AugmentedScores,
    label: int,
    y_true: np.ndarray,
    rows: Sequence[int],
    image_paths: Sequence[str],
    *,
    threshold: float,
    target_risk: float,
) -> dict[str, Any]:
    """One label's TTA uncertainty, coverage-risk, referral and flags for the kept cases: ``label`` is
    its column in ``augmented``; ``rows`` are manifest rows, 0-based."""
    tta = tta_uncertainty(np.ascontiguousarray(augmented.samples[:, :, label]))
    uncertainty = predictive_entropy(tta.mean_prob)
    curve = coverage_risk(y_true, tta.mean_prob, uncertainty, threshold=threshold)
    referral = referral_for_target_risk(curve, target_risk)
    flags = case_flags(uncertainty, referral.cutoff)
    flagged = np.flatnonzero(flags)
    flagged = flagged[np.argsort(-uncertainty[flagged], kind="stable")]
    return {
        "n_cases": int(augmented.samples.shape[1]),
        "augmentations": list(augmented.augmentations),
        "measure": "entropy of the mean probability over the augmentations (nats)",
        "mean_uncertainty": float(uncertainty.mean()),
        "mean_tta_std": float(tta.std.mean()),
        "mean_mutual_information": float(tta.mutual_information.mean()),
        "coverage_risk": curve.to_dict(),
        "referral": referral.to_dict(),
        "n_flagged": int(flags.sum()),
        "flagged_cases": [
            {
                "row": int(rows[i]) + 1,
                "image_path": image_paths[i],
                "uncertainty": float(uncertainty[i]),
                "probability": float(tta.mean_prob[i]),
                "tta_std": float(tta.std[i]),
            }
            for i in flagged  # at most the kept sample (``sample_max_cases``)
        ],
    }
