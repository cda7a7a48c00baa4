"""A model version's preprocessing spec, checked once and applied the same way everywhere.

The spec is the JSON stored on the version, for example::

    {"window": {"center": 40, "width": 400},
     "resize": [224, 224],
     "normalise": {"mean": 0.5, "std": 0.25},
     "channels": "3xHxW"}

Every key is optional. Two keys say how files are read (``radtrust_engine.images``):

- ``frames``: what a file of several frames (a multi-frame DICOM object, an animated PNG, a
  4D NIfTI's volumes, an NPY array with a leading axis of frames, ``images.npy_frames``) gives: ``"refuse"`` (the default: the file is skipped, with the reason),
  ``"first"``, ``{"index": k}`` (frame k, from 0), or ``"volume"`` (the frames as the depth of
  a volume; volume specs only). Frames are never read as colour channels.
- ``"window": "header"`` applies the DICOM file's own VOI LUT or window (PS3.3 C.11.2) at read
  time, giving [0, 1]; files without one are skipped, with the reason.

Steps run in a fixed order, whatever the key order:

1. ``window`` (CT): clip to ``center +- width/2`` and scale to [0, 1] (``"header"``: done at read).
2. channel layout: a colour image becomes grey (ITU-R 601 luma) for
   ``"1xHxW"``; the grey image is replicated after resizing for ``"3xHxW"``.
   Without ``channels``, grey stays 1 channel and colour 3.
3. ``resize`` to ``[H, W]``: bilinear, corners aligned, with the output shape,
   sample positions and weights of ``scipy.ndimage.zoom(x, f, order=1,
   mode="nearest", prefilter=False)``, computed separably in float32 by
   ``zoom_bilinear`` (rows, then columns): equal to scipy within float32
   rounding and about eight times faster, which matters because it runs on
   the loader thread, next to the model.
4. ``normalise``: ``(x - mean) / std`` (scalars, or one value per channel),
   or ``"minmax"`` to [0, 1] per image.

Volumes (CT, MR as NIfTI or NPY): a ``resize`` of three sizes ``[D, H, W]``
makes the spec a volume spec. ``apply`` then takes a (D, H, W) or
(1, D, H, W) array and returns float32 (1, D, H, W), resized trilinearly the
same separable way; volumes have one channel.

Plain Python, NumPy and SciPy (no Django), so a benchmark, a worker, a site
agent and a notebook produce the same tensor from the same image.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SPEC_KEYS = ("resize", "window", "normalise", "channels", "frames")
CHANNEL_LAYOUTS = {"1xHxW": 1, "3xHxW": 3}
FRAME_RULES = ("refuse", "first", "volume")  # or {"index": k}
HEADER_WINDOW = "header"  # "window": "header": the DICOM file's own VOI LUT or window
# Bounds that keep a spec from asking for more than a worker can hold (a resize of [1, 10**12] is
# refused when the version is registered, not when a run allocates it) or for values that overflow
# float32: the largest side of a resize, the most values one channel may have after it (8192 x 8192,
# or a 512 x 512 x 256 volume), and the magnitude of a window or normalisation value.
MAX_SIZE = 8192
MAX_VALUES = MAX_SIZE * MAX_SIZE
MAX_MAGNITUDE = 1e6
MIN_SCALE = 1e-6  # the smallest window width or standard deviation
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _number(value: Any, where: str, low: float = -MAX_MAGNITUDE, high: float = MAX_MAGNITUDE) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"preprocessing {where} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"preprocessing {where} must lie between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _numbers(value: Any, where: str, low: float = -MAX_MAGNITUDE) -> tuple[float, ...]:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"preprocessing {where} must not be an empty list")
        return tuple(_number(v, where, low) for v in value)
    return (_number(value, where, low),)


@dataclass(frozen=True)
class Window:
    center: float
    width: float


@dataclass(frozen=True)
class Preprocessing:
    """A checked preprocessing spec; build it with ``from_spec``."""

    resize: tuple[int, ...] | None = None  # (H, W), or (D, H, W) for volumes
    window: Window | str | None = None  # a Window, or HEADER_WINDOW
    normalise: str | tuple[tuple[float, ...], tuple[float, ...]] | None = None  # "minmax" or (mean, std)
    channels: int | None = None
    frames: str | int = "refuse"  # one of FRAME_RULES, or a frame index

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> Preprocessing:
        """Check a spec; unknown keys or bad values raise ``ValueError`` naming them.

        The registry checks a version's spec with this when it is registered, and a run or a site
        agent again before using it: one rule, at the way in and at run time.
        """
        if spec is None:
            spec = {}
        if not isinstance(spec, Mapping):
            raise ValueError(f"the preprocessing spec must be a JSON object ({{...}}), not {type(spec).__name__}")
        spec = dict(spec)
        unknown = [key for key in spec if key not in SPEC_KEYS]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), SPEC_KEYS, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"unknown preprocessing key(s): {', '.join(hints)}; allowed: {', '.join(SPEC_KEYS)}")

        resize = None
        if "resize" in spec:
            value = spec["resize"]
            if (
                not isinstance(value, (list, tuple))
                or len(value) not in (2, 3)
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIZE for v in value)
            ):
                raise ValueError(
                    f"preprocessing 'resize' must be [height, width] (or [depth, height, width] for volumes) of whole numbers "
                    f"from 1 to {MAX_SIZE}, got {value!r}"
                )
            if math.prod(value) > MAX_VALUES:
                raise ValueError(
                    f"preprocessing 'resize' {list(value)!r} asks for {math.prod(value)} values per channel; at most {MAX_VALUES} are allowed"
                )
            resize = tuple(int(v) for v in value)

        window: Window | str | None = None
        if "window" in spec:
            value = spec["window"]
            if value == HEADER_WINDOW:
                window = HEADER_WINDOW
            elif not isinstance(value, Mapping) or set(value) != {"center", "width"}:
                raise ValueError(f"preprocessing 'window' must be {{'center': c, 'width': w}} or 'header', got {value!r}")
            else:
                width = _number(value["width"], "'window.width'", MIN_SCALE)
                window = Window(center=_number(value["center"], "'window.center'"), width=width)

        channels = None
        if "channels" in spec:
            value = spec["channels"]
            if not isinstance(value, str) or value not in CHANNEL_LAYOUTS:
                raise ValueError(f"preprocessing 'channels' must be one of {', '.join(CHANNEL_LAYOUTS)}, got {value!r}")
            channels = CHANNEL_LAYOUTS[value]

        normalise: str | tuple[tuple[float, ...], tuple[float, ...]] | None = None
        if "normalise" in spec:
            value = spec["normalise"]
            if value == "minmax":
                normalise = "minmax"
            elif isinstance(value, Mapping) and set(value) == {"mean", "std"}:
                mean = _numbers(value["mean"], "'normalise.mean'")
                std = _numbers(value["std"], "'normalise.std'", MIN_SCALE)
                for name, values in (("mean", mean), ("std", std)):
                    if len(values) not in ((1, channels) if channels else (1, 3)):
                        raise ValueError(f"preprocessing 'normalise.{name}' has {len(values)} values; give one, or one per channel ({channels or 3})")
                normalise = (mean, std)
            else:
                raise ValueError(f"preprocessing 'normalise' must be 'minmax' or {{'mean': m, 'std': s}}, got {value!r}")
        if resize is not None and len(resize) == 3 and (channels or 1) != 1:
            raise ValueError("preprocessing for volumes ('resize' of three sizes) has one channel; drop 'channels' or set '1xHxW'")
        frames = _frame_rule(spec.get("frames", "refuse"))
        if frames == "volume" and (resize is None or len(resize) != 3):
            raise ValueError("preprocessing 'frames': 'volume' reads frames as the depth of a volume; it needs 'resize' as [depth, height, width]")
        return cls(resize=resize, window=window, normalise=normalise, channels=channels, frames=frames)

    def to_dict(self) -> dict[str, Any]:
        """The canonical spec, suitable for ``from_spec``."""
        spec: dict[str, Any] = {}
        if self.resize is not None:
            spec["resize"] = list(self.resize)
        if isinstance(self.window, Window):
            spec["window"] = {"center": self.window.center, "width": self.window.width}
        elif self.window is not None:
            spec["window"] = self.window
        if self.normalise == "minmax":
            spec["normalise"] = "minmax"
        elif self.normalise is not None:
            mean, std = self.normalise
            spec["normalise"] = {
                "mean": mean[0] if len(mean) == 1 else list(mean),
                "std": std[0] if len(std) == 1 else list(std),
            }
        if self.channels is not None:
            spec["channels"] = f"{self.channels}xHxW"
        if self.frames != "refuse":  # the default is left out, so specs written before the rule read back the same
            spec["frames"] = {"index": self.frames} if isinstance(self.frames, int) else self.frames
        return spec

    @property
    def volume(self) -> bool:
        return self.resize is not None and len(self.resize) == 3

    def output_shape(self, image_shape: Sequence[int]) -> tuple[int, ...]:
        """The (C, H, W), or (1, D, H, W) for volumes, that ``apply`` yields for an image of this shape."""
        if self.volume:
            return (1, *self.resize)
        height, width, channels = _layout(tuple(image_shape))
        if self.resize is not None:
            height, width = self.resize
        return (self.channels or channels, height, width)

    def check_image(self, shape: Sequence[int], *, volume: bool | None = None) -> None:
        """Raise ``ValueError`` saying why an image of this shape does not fit the spec: a volume spec
        takes (D, H, W) or (1, D, H, W), a 2D spec (H, W), (H, W, 3|4) or (1|3, H, W). ``volume`` is
        what the file says it is (several NIfTI slices, DICOM frames read as a volume), so that three
        slices are never taken for three colour channels; None where the file cannot say (NPY)."""
        shape = tuple(shape)
        text = "x".join(map(str, shape))
        if self.volume:
            if volume is False or not (len(shape) == 3 or (len(shape) == 4 and shape[0] == 1)):
                raise ValueError(f"a volume spec needs a DxHxW volume, got {'a 2D image' if volume is False else 'an array'} of shape {text}")
        elif volume:
            raise ValueError(
                f"a volume of shape {text} does not fit a 2D spec: for volumes, give 'resize' as [depth, height, width]; "
                "for one frame of a multi-frame image, set 'frames'"
            )
        else:
            _layout(shape)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Preprocess one 2D image ((H, W), (H, W, 3|4) or (1|3, H, W)) to float32 (C, H, W),
        or, with a volume spec, one volume ((D, H, W) or (1, D, H, W)) to (1, D, H, W)."""
        image = np.asarray(image)
        self.check_image(image.shape)
        if self.volume:
            x = image.astype(np.float32, copy=False).reshape(image.shape[-3:])[None]
        else:
            x = _channels_first(image.astype(np.float32, copy=False))

        if isinstance(self.window, Window):
            low = self.window.center - self.window.width / 2
            x = (np.clip(x, low, low + self.window.width) - np.float32(low)) / np.float32(self.window.width)

        if self.channels == 1 and x.shape[0] == 3:
            x = np.tensordot(_LUMA, x, axes=1)[None]

        if self.resize is not None and x.shape[1:] != self.resize:
            x = zoom_bilinear(x, self.resize)
            if x.shape[1:] != self.resize:  # zoom rounds the output shape; never off by more than one
                x = _fit(x, self.resize)

        if self.channels == 3 and x.shape[0] == 1:
            x = np.repeat(x, 3, axis=0)

        if self.normalise == "minmax":
            low, high = float(x.min()), float(x.max())
            x = (x - low) / (high - low) if high > low else np.zeros_like(x)
        elif self.normalise is not None:
            mean, std = self.normalise
            if len(mean) not in (1, x.shape[0]) or len(std) not in (1, x.shape[0]):
                raise ValueError(
                    f"preprocessing 'normalise' gives {len(mean)} mean and {len(std)} std values for an image with {x.shape[0]} channels"
                )
            per_channel = (-1,) + (1,) * (x.ndim - 1)
            x = (x - np.asarray(mean, np.float32).reshape(per_channel)) / np.asarray(std, np.float32).reshape(per_channel)
        return np.ascontiguousarray(x, dtype=np.float32)


def _frame_rule(value: Any) -> str | int:
    """A checked ``frames`` rule: one of ``FRAME_RULES``, or ``{"index": k}`` given as ``k``."""
    if isinstance(value, str) and value in FRAME_RULES:
        return value
    if isinstance(value, Mapping) and set(value) == {"index"}:
        index = value["index"]
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index <= MAX_SIZE:
            return index
    raise ValueError(f"preprocessing 'frames' must be 'refuse', 'first', 'volume' or {{'index': k}} with k from 0 to {MAX_SIZE}, got {value!r}")


def _layout(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W, C) of an image shape that ``apply`` accepts, or a ValueError saying why not."""
    if len(shape) == 2:
        return shape[0], shape[1], 1
    if len(shape) == 3 and shape[-1] in (3, 4):
        return shape[0], shape[1], 3
    if len(shape) == 3 and shape[0] in (1, 3):
        return shape[1], shape[2], shape[0]
    raise ValueError(
        f"image of shape {'x'.join(map(str, shape))} is not a 2D image: expected HxW, HxWx3 or 1|3xHxW "
        "(for volumes, give 'resize' as [depth, height, width])"
    )


def _channels_first(x: np.ndarray) -> np.ndarray:
    if x.ndim == 2:
        return x[None]
    if x.shape[-1] in (3, 4):
        return np.moveaxis(x[..., :3], -1, 0)
    return x


def _zoom_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The two source indices and weights of each output sample along one axis,
    computed the way scipy's ``NI_ZoomShift`` does for order 1, mode "nearest".

    Coordinate ``o * (n_in - 1) / (n_out - 1)``, not clamped (it may pass the
    last sample by a rounding error); weights ``1 - frac`` and ``1 - (1 - frac)``;
    a neighbour past the end is the last sample.
    """
    zoom = (n_in - 1) / (n_out - 1) if n_out > 1 else 1.0
    coordinate = np.arange(n_out, dtype=np.float64) * zoom
    start = np.floor(coordinate)
    w_low = 1.0 - (coordinate - start)
    low = np.minimum(start.astype(np.intp), n_in - 1)
    return low, np.minimum(low + 1, n_in - 1), w_low, 1.0 - w_low


@functools.lru_cache(maxsize=16)
def _zoom_plan(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One axis's taps and float32 weights (read-only, shared between images)."""
    low, high, w_low, w_high = _zoom_taps(n_in, n_out)
    plan = (low, high, w_low.astype(np.float32), w_high.astype(np.float32))
    for array in plan:
        array.setflags(write=False)
    return plan


def zoom_bilinear(x: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize float32 (C, *spatial) linearly along each spatial axis as ``scipy.ndimage.zoom``
    (order 1, mode "nearest", no prefilter) does: its output shape, taps and weights;
    one axis after the other (rows, then columns; depth first for volumes), in float32."""
    for axis, (n_in, wanted) in enumerate(zip(x.shape[1:], size), start=1):
        n_out = int(round(n_in * (wanted / n_in)))  # zoom's own rounding
        if n_out == n_in:
            continue  # scipy's weights are exactly (1, 0) here
        low, high, w_low, w_high = _zoom_plan(n_in, n_out)
        shape = [1] * x.ndim
        shape[axis] = n_out
        resized = np.take(x, low, axis=axis) * w_low.reshape(shape)
        resized += np.take(x, high, axis=axis) * w_high.reshape(shape)
        x = resized
    return x


def _fit(x: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Crop or edge-pad (C, *spatial) to exactly ``size``."""
    x = x[(slice(None), *(slice(0, n) for n in size))]
    pad = ((0, 0), *((0, n - m) for n, m in zip(size, x.shape[1:])))
    return np.pad(x, pad, mode="edge") if any(p[1] for p in pad) else x


def _shape_text(shape: Sequence[Any]) -> str:
    return "x".join("?" if _dynamic(d) else str(d) for d in shape)


def _dynamic(dim: Any) -> bool:
    """A symbolic or unknown ONNX dimension (None, 'batch', -1, 0) matches anything."""
    return dim is None or isinstance(dim, str) or (isinstance(dim, int) and dim <= 0)


def check_against_signature(shape: Sequence[int], model_input_shape: Sequence[Any]) -> None:
    """Raise ``ValueError`` explaining how a preprocessed (C, H, W) shape differs
    from the model's input signature (with or without its batch dimension)."""
    shape = tuple(shape)
    expected = tuple(model_input_shape)
    if len(expected) == len(shape) + 1:
        expected = expected[1:]  # the batch dimension
    if len(expected) != len(shape):
        raise ValueError(
            f"model expects input {_shape_text(model_input_shape)} ({len(model_input_shape)} dimensions) "
            f"but preprocessing yields {_shape_text(shape)} per image"
        )
    names = ("channels", "height", "width") if len(shape) == 3 else tuple(f"dimension {i}" for i in range(len(shape)))
    problems = [f"{name} {got} != {want}" for name, got, want in zip(names, shape, expected) if not _dynamic(want) and got != want]
    if not problems:
        return
    hints = []
    if len(shape) == 3:
        if not _dynamic(expected[0]) and shape[0] != expected[0] and expected[0] in (1, 3):
            hints.append(f'"channels": "{expected[0]}xHxW"')
        if not any(map(_dynamic, expected[1:])) and shape[1:] != expected[1:]:
            hints.append(f'"resize": [{expected[1]}, {expected[2]}]')
    message = f"model expects {_shape_text(expected)} per image but preprocessing yields {_shape_text(shape)}: {'; '.join(problems)}"
    if hints:
        message += f". Set {' and '.join(hints)} in the version's preprocessing spec"
    raise ValueError(message)
