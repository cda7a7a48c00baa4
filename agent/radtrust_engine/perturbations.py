"""Acquisition-shift perturbations for the robustness suite, applied to the tensor a model receives.

They mimic what changes between scanners, protocols and sites (dose, noise,
reconstruction kernel, window, calibration, resolution, compression,
positioning, and for MR bias field, motion and undersampling), not weather.

Why the preprocessed tensor: a run perturbs the float32 tensors it already
loaded and preprocessed, so each image is read from disk once per run. Those
tensors are normalised (any mean, any scale), so every perturbation works in
the image's own terms: noise relative to its standard deviation (SNR in dB) or
to its dynamic range (min..max), intensity changes as fractions of that range,
windows as percentiles. Each docstring says which.

Shapes: (C, H, W) images and (C, D, H, W) volumes (C is 1 for volumes).
In-plane operations act on (H, W) of every channel and slice; ``downsample``
also thickens slices along D and ``bias_field`` is smooth in 3D. The k-space
perturbations take rows (H) as the phase-encode direction. Channels that are
copies of one grey image (the "3xHxW" layout) are perturbed once and copied
again, because the acquisition shift happened before that replication.

Each perturbation has severities 1, 2 and 3; ``SEVERITIES`` states the
parameter at each so a report can quote it. ``perturb`` seeds its generator
from (seed, name, severity), so the same call gives the same output, and
raises ``PerturbationError`` for unknown names or severities and for
non-finite input or output: the suite records the message and goes on.

Plain NumPy, SciPy and Pillow (no Django).
"""

from __future__ import annotations

import difflib
import io
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from scipy import fft as sfft
from scipy import ndimage

SEVERITY_LEVELS = (1, 2, 3)
GHOST_PERIODS = (3, 4, 5, 6)  # motion_ghosting: every k-th phase-encode line is displaced, k drawn from these
KSPACE_CENTRE = 0.32  # kspace_undersampling keeps the central KSPACE_CENTRE / R of lines (8% at R=4, as fastMRI)

PerturbationFunction = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


class PerturbationError(ValueError):
    """A perturbation that cannot be applied or gave NaN/inf; the message says which, at what severity, and why."""


@dataclass(frozen=True)
class SeverityScale:
    """What one perturbation's severity means: a parameter (with its unit) and its value at severity 1, 2, 3."""

    parameter: str
    values: tuple[float, float, float]

    def at(self, severity: int) -> float:
        return self.values[severity - 1]


SEVERITIES: dict[str, SeverityScale] = {
    "dose_reduction": SeverityScale("expected photon count at the brightest pixel", (1000, 250, 60)),
    "gaussian_noise": SeverityScale("SNR in dB (image variance over noise variance)", (20, 10, 5)),
    "blur": SeverityScale("in-plane Gaussian sigma in pixels", (0.5, 1.0, 2.0)),
    "windowing": SeverityScale("percentile clipped on each side, then stretched to the range", (1, 5, 10)),
    "contrast": SeverityScale("contrast change around the mean, fraction (direction random)", (0.15, 0.3, 0.5)),
    "gamma": SeverityScale("gamma exponent on the range-normalised image", (1.25, 1.6, 2.0)),
    "intensity_scale_offset": SeverityScale("gain change and offset, each a fraction of the dynamic range (sign random)", (0.05, 0.1, 0.2)),
    "downsample": SeverityScale("resolution loss factor, in-plane and along D for volumes", (2, 3, 4)),
    "jpeg": SeverityScale("JPEG quality of the 8-bit slices", (75, 50, 25)),
    "rotation": SeverityScale("in-plane rotation in degrees (direction random)", (2, 5, 10)),
    "translation": SeverityScale("in-plane shift, fraction of the image size (direction random)", (0.02, 0.05, 0.1)),
    "bias_field": SeverityScale("peak log-gain a of a smooth field (gain between e^-a and e^a)", (0.1, 0.2, 0.4)),
    "motion_ghosting": SeverityScale("displacement along H during every k-th phase-encode line, fraction of the height", (0.01, 0.02, 0.04)),
    "kspace_undersampling": SeverityScale(f"acceleration R: 1 in R phase-encode lines kept, the central {KSPACE_CENTRE:.0%}/R always", (2, 3, 4)),
}


def _range(x: np.ndarray) -> tuple[float, float]:
    return float(x.min()), float(x.max())


def _plane_sigma(x: np.ndarray, sigma: float) -> tuple[float, ...]:
    return (0.0,) * (x.ndim - 2) + (sigma, sigma)


def _random_sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def dose_reduction(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson noise of a lower photon count, relative to the image's own range.

    The image shifted and scaled to [0, 1] by its min and max becomes an
    expected count of up to N photons (brightest pixel), which is sampled and
    scaled back: fewer photons, relatively more noise (variance R^2 s / N for
    a pixel at relative level s in a range R). The darkest pixel stays noiseless.
    """
    lo, hi = _range(x)
    if hi <= lo:
        return x.copy()
    peak = SEVERITIES["dose_reduction"].at(severity)
    counts = rng.poisson((x - lo) * (peak / (hi - lo)))
    return (counts * ((hi - lo) / peak) + lo).astype(np.float32)


def gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise at a set SNR, noise std = image std / 10^(SNR/20).

    The signal power is the image's variance, not its mean square, since a
    normalised image's mean is arbitrary. A constant image gets no noise.
    """
    snr_db = SEVERITIES["gaussian_noise"].at(severity)
    noise_std = float(x.std()) / 10 ** (snr_db / 20)
    return x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(noise_std)


def blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A smoother reconstruction kernel or focal spot: in-plane Gaussian blur, sigma in pixels (scale-free)."""
    sigma = SEVERITIES["blur"].at(severity)
    return ndimage.gaussian_filter(x, _plane_sigma(x, sigma), mode="nearest")


def windowing(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A narrower display/export window: clip to the p..100-p percentiles, stretch back to the image's min..max.

    So the tensor keeps its range but gains contrast and saturates at both
    ends, as a model sees after a site windows tighter. A window that
    collapses to one value (mostly constant image) leaves the image unchanged.
    """
    p = SEVERITIES["windowing"].at(severity)
    lo, hi = _range(x)
    w_lo, w_hi = (float(v) for v in np.percentile(x, (p, 100 - p)))
    if w_hi <= w_lo:
        return x.copy()
    return ((np.clip(x, w_lo, w_hi) - w_lo) * ((hi - lo) / (w_hi - w_lo)) + lo).astype(np.float32)


def contrast(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Contrast raised or lowered (direction random): deviations from the image's mean scaled by 1 +- c."""
    factor = 1.0 + _random_sign(rng) * SEVERITIES["contrast"].at(severity)
    mean = float(x.mean())
    return ((x - mean) * factor + mean).astype(np.float32)


def gamma(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A non-linear detector or display response: u^gamma on the image scaled to [0, 1] by its min and max."""
    lo, hi = _range(x)
    if hi <= lo:
        return x.copy()
    u = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return (np.power(u, SEVERITIES["gamma"].at(severity)) * (hi - lo) + lo).astype(np.float32)


def intensity_scale_offset(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Scanner calibration: gain 1 +- f above the image's minimum plus an offset of +- f of its range (one sign)."""
    f = _random_sign(rng) * SEVERITIES["intensity_scale_offset"].at(severity)
    lo, hi = _range(x)
    return (x + f * ((x - lo) + (hi - lo))).astype(np.float32)


def downsample(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Resolution loss: anti-aliased down by a factor, then linearly back to the same shape (scale-free).

    For volumes D is reduced too, as thicker slices. A constant image stays constant.
    """
    factor = SEVERITIES["downsample"].at(severity)
    sigma = (0.0,) + ((factor - 1) / 2,) * (x.ndim - 1)
    small = (x.shape[0],) + tuple(max(1, round(n / factor)) for n in x.shape[1:])
    down = ndimage.zoom(
        ndimage.gaussian_filter(x, sigma, mode="nearest"),
        [s / n for s, n in zip(small, x.shape)],
        order=1,
        mode="nearest",
    )
    return ndimage.zoom(down, [n / s for n, s in zip(x.shape, down.shape)], order=1, mode="nearest")


def jpeg(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Lossy compression: each 2D slice scaled to 8 bits by the image's min and max, JPEG-coded by Pillow, mapped back.

    The 8-bit quantisation is part of the effect, as for a site that exports
    lossy 8-bit images.
    """
    quality = int(SEVERITIES["jpeg"].at(severity))
    lo, hi = _range(x)
    if hi <= lo:
        return x.copy()
    scale = 255.0 / (hi - lo)
    planes = np.clip(np.rint((x - lo) * scale), 0, 255).astype(np.uint8).reshape(-1, *x.shape[-2:])
    out = np.empty(planes.shape, np.float32)
    for i, plane in enumerate(planes):
        buffer = io.BytesIO()
        Image.fromarray(plane).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[i] = np.asarray(decoded, dtype=np.float32)
    return (out.reshape(x.shape) / np.float32(scale) + np.float32(lo)).astype(np.float32)


def rotation(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Patient positioning: in-plane rotation about the centre by a small angle (direction random).

    Bilinear, same shape (``reshape=False``); corners filled with the image's minimum (background).
    """
    angle = _random_sign(rng) * SEVERITIES["rotation"].at(severity)
    return ndimage.rotate(x, angle, axes=(x.ndim - 1, x.ndim - 2), reshape=False, order=1, mode="constant", cval=float(x.min()))


def translation(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Patient positioning: in-plane shift by a fraction of the image size in a random direction.

    Bilinear; the uncovered edge is filled with the image's minimum (background).
    """
    fraction = SEVERITIES["translation"].at(severity)
    direction = rng.uniform(0.0, 2 * math.pi)
    height, width = x.shape[-2:]
    shift = (0.0,) * (x.ndim - 2) + (fraction * height * math.sin(direction), fraction * width * math.cos(direction))
    return ndimage.shift(x, shift, order=1, mode="constant", cval=float(x.min()))


def bias_field(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """MR coil inhomogeneity: a smooth multiplicative field on the image above its minimum.

    The log-field is a random polynomial of degree 2 over the spatial axes
    (3D for volumes), scaled so its peak magnitude is a: the gain lies in
    [e^-a, e^a]. The background (the image's minimum) is unchanged.
    """
    a = SEVERITIES["bias_field"].at(severity)
    grids = np.meshgrid(*(np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in x.shape[1:]), indexing="ij")
    terms = list(grids) + [g * h for i, g in enumerate(grids) for h in grids[i:]]
    field = sum(np.float32(c) * t for c, t in zip(rng.standard_normal(len(terms)), terms))
    field = field / max(float(np.abs(field).max()), 1e-12)
    lo = float(x.min())
    return (lo + (x - lo) * np.exp(np.float32(a) * field)).astype(np.float32)


def _from_kspace(kspace: np.ndarray, lo: float) -> np.ndarray:
    """The magnitude image (what an MR scanner shows) shifted back to the original minimum."""
    return (np.abs(sfft.ifft2(kspace, axes=(-2, -1))) + lo).astype(np.float32)


def motion_ghosting(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """MR periodic motion: every k-th phase-encode line acquired with the patient displaced, giving ghosts.

    The image above its minimum is Fourier transformed per slice; lines with
    index = offset (mod k), k in ``GHOST_PERIODS`` and offset random (a
    breathing cycle), get the linear phase of a shift along H by a fraction of
    the height (sign random); the magnitude image is returned. Ghosts repeat
    every H/k pixels and brighten with the displacement.
    """
    fraction = SEVERITIES["motion_ghosting"].at(severity)
    lo = float(x.min())
    height = x.shape[-2]
    period = int(rng.choice(GHOST_PERIODS))
    displaced = np.arange(height) % period == rng.integers(period)
    cycles = sfft.fftfreq(height) * height  # cycles per image height of each line
    shift = _random_sign(rng) * fraction * height
    phase = np.where(displaced, np.exp(-2j * np.pi * cycles * shift / height), 1.0).astype(np.complex64)
    return _from_kspace(sfft.fft2(x - lo, axes=(-2, -1)) * phase[:, None], lo)


def kspace_undersampling(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """MR acceleration: keep 1 in R phase-encode lines, always the central ``KSPACE_CENTRE / R``, the rest at random.

    The centre shrinks as R grows (16%, 11%, 8% of the lines), as in
    fastMRI's masks; with a fixed centre, luck in which lines next to it were
    dropped outweighed R, and severity was not monotone. Missing lines are
    zero-filled and the magnitude image returned (the image above its
    minimum, shifted back): smooth content lives in the kept centre and
    survives, fine detail aliases or disappears.
    """
    acceleration = SEVERITIES["kspace_undersampling"].at(severity)
    lo = float(x.min())
    height = x.shape[-2]
    n_keep = max(1, round(height / acceleration))
    n_centre = min(n_keep, max(1, round(KSPACE_CENTRE / acceleration * height)))
    by_distance = np.argsort(np.abs(sfft.fftfreq(height)), kind="stable")  # DC first
    kept = np.zeros(height, dtype=bool)
    kept[by_distance[:n_centre]] = True
    kept[rng.choice(by_distance[n_centre:], size=n_keep - n_centre, replace=False)] = True
    kspace = sfft.fft2(x - lo, axes=(-2, -1))
    kspace[..., ~kept, :] = 0
    return _from_kspace(kspace, lo)


@dataclass(frozen=True)
class Perturbation:
    """One acquisition shift: its function, the modalities it applies to ("all" or "MR"), what it
    mimics, and whether it moves the anatomy (then a lesion's ground-truth box no longer marks it,
    so detection robustness leaves it out)."""

    name: str
    function: PerturbationFunction
    modality: str
    description: str
    moves_anatomy: bool = False

    @property
    def severity_scale(self) -> SeverityScale:
        return SEVERITIES[self.name]

    def to_dict(self) -> dict[str, Any]:
        scale = self.severity_scale
        return {
            "name": self.name,
            "modality": self.modality,
            "description": self.description,
            "moves_anatomy": self.moves_anatomy,
            "parameter": scale.parameter,
            "severity_values": list(scale.values),
        }


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation("dose_reduction", dose_reduction, "all", "simulated dose reduction (Poisson noise)"),
        Perturbation("gaussian_noise", gaussian_noise, "all", "Gaussian noise at a set SNR"),
        Perturbation("blur", blur, "all", "Gaussian blur (smoother kernel, focal spot)"),
        Perturbation("windowing", windowing, "all", "narrower intensity window"),
        Perturbation("contrast", contrast, "all", "contrast raised or lowered around the mean"),
        Perturbation("gamma", gamma, "all", "non-linear intensity response (gamma)"),
        Perturbation("intensity_scale_offset", intensity_scale_offset, "all", "scanner calibration: gain and offset"),
        Perturbation("downsample", downsample, "all", "lower resolution (and thicker slices for volumes)"),
        Perturbation("jpeg", jpeg, "all", "lossy 8-bit JPEG compression"),
        Perturbation("rotation", rotation, "all", "small in-plane rotation (positioning)", moves_anatomy=True),
        Perturbation("translation", translation, "all", "small in-plane shift (positioning)", moves_anatomy=True),
        Perturbation("bias_field", bias_field, "MR", "smooth multiplicative bias field (coil inhomogeneity)"),
        Perturbation("motion_ghosting", motion_ghosting, "MR", "motion ghosting (k-space phase errors)"),
        Perturbation("kspace_undersampling", kspace_undersampling, "MR", "k-space undersampling (acceleration)"),
    )
}


def perturbations_for(modality: str) -> list[Perturbation]:
    """The perturbations that apply to a modality (DICOM code, e.g. "CT", "MR"): MR gets the MR-specific ones too."""
    is_mr = modality.strip().upper() == "MR"
    return [p for p in PERTURBATIONS.values() if p.modality == "all" or is_mr]


def _lookup(name: str, severity: int) -> Perturbation:
    if name not in PERTURBATIONS:
        close = difflib.get_close_matches(str(name), PERTURBATIONS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PerturbationError(f"unknown perturbation {name!r}{hint}; valid: {', '.join(PERTURBATIONS)}")
    if isinstance(severity, bool) or severity not in SEVERITY_LEVELS:
        raise PerturbationError(f"unknown severity {severity!r} for perturbation {name!r}; valid: {', '.join(map(str, SEVERITY_LEVELS))}")
    return PERTURBATIONS[name]


def _count_non_finite(x: np.ndarray) -> int:
    return int(x.size - np.count_nonzero(np.isfinite(x)))


def image_seed(seed: int, index: int) -> int:
    """The seed of the image at position ``index`` of a run perturbed with ``seed`` (what ``perturb_batch`` uses)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0])


def perturb(x: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """One image or volume perturbed: float32, same shape, input untouched, the same for the same (seed, name, severity).

    Raises ``PerturbationError`` for an unknown name or severity, a bad shape
    or seed, an input with NaN/inf, or a result with NaN/inf (for example
    intensities so large that scaling overflows float32).
    """
    perturbation = _lookup(name, severity)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PerturbationError(f"perturbation seed must be a non-negative integer, got {seed!r}")
    image = np.array(x, dtype=np.float32)  # a copy: the caller's array is never written
    if image.ndim not in (3, 4) or image.size == 0:
        raise PerturbationError(f"perturbation {name!r} needs a (C, H, W) image or (C, D, H, W) volume, got shape {tuple(image.shape)}")
    bad = _count_non_finite(image)
    if bad:
        raise PerturbationError(f"perturbation {name!r} at severity {severity}: the input has {bad} non-finite value(s) (NaN/inf)")
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), severity])
    replicated = image.shape[0] > 1 and bool((image == image[:1]).all())
    with np.errstate(all="ignore"):  # overflow is caught below, with a message, rather than warned about
        out = perturbation.function(image[:1] if replicated else image, severity, rng)
    if replicated:
        out = np.repeat(out, image.shape[0], axis=0)
    out = np.asarray(out, dtype=np.float32)
    bad = _count_non_finite(out)
    if bad:
        lo, hi = _range(image)
        raise PerturbationError(
            f"perturbation {name!r} at severity {severity} produced {bad} non-finite value(s) (NaN/inf) "
            f"of {out.size}, from an input spanning {lo:.4g}..{hi:.4g}"
        )
    return out


def perturb_batch(batch: np.ndarray, name: str, severity: int, seed: int, *, start: int = 0) -> np.ndarray:
    """An (N, C, H, W) or (N, C, D, H, W) batch perturbed image by image.

    Image i uses ``image_seed(seed, start + i)``, where ``start`` is the run
    position of ``batch[0]``: an image's perturbation does not depend on how
    the run was split into batches. A failing image raises
    ``PerturbationError`` naming its position.
    """
    _lookup(name, severity)
    batch = np.asarray(batch)
    if batch.ndim not in (4, 5):
        raise PerturbationError(f"perturb_batch needs an (N, C, H, W) or (N, C, D, H, W) batch, got shape {tuple(batch.shape)}")
    out = np.empty(batch.shape, dtype=np.float32)
    for i, image in enumerate(batch):
        try:
            out[i] = perturb(image, name, severity, image_seed(seed, start + i))
        except PerturbationError as error:
            raise PerturbationError(f"image {start + i}: {error}") from error
    return out
