"""Image files: DICOM, PNG, NPY and NIfTI read as float32, and attributes from DICOM headers.

An image that cannot be read, or does not fit the preprocessing spec, is an ``ImageError``
naming the file, the reason and its kind (``failures.ImageProblem``), so the runner skips it
and reports it, or fails the run listing every such file. One function opens a file for a
run (``load_image``) and for a pre-flight check of its header alone (``read_image_header``,
``check_images``): both skip the same files for the same reasons. Every conversion reading
applies (a modality LUT, MONOCHROME1 inverted, palette to RGB, a frame picked) is returned in
words, for the run report. Attributes a manifest leaves empty are filled from DICOM headers
(``fill_attributes_from_headers``); the manifest wins where it has a value.

Plain Python and NumPy (no Django).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image

from radtrust_engine.dicom_pixels import PixelsRefused, decode_dicom, frame_count, plan_dicom, syntax_name
from radtrust_engine.failures import ImageProblem
from radtrust_engine.loading import STUDY_DATE_COLUMN, Manifest, cell_text, parse_age, parse_date
from radtrust_engine.paths import without_paths
from radtrust_engine.preprocessing import HEADER_WINDOW, Preprocessing
from radtrust_engine.report import ImageConversions, SkippedImage

_REASON_CHARS = 300
SKIPPED_LISTED = 100  # how many skipped images a failed run's message names; a count stands for the rest
DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".npy", ".nii", ".nii.gz")

# DICOM header keyword -> manifest attribute it can fill.
DICOM_HEADER_ATTRIBUTES: dict[str, str] = {
    "Manufacturer": "scanner_manufacturer",
    "ManufacturerModelName": "scanner_model",
    "PatientSex": "sex",
    "PatientAge": "age",
    "StudyDate": STUDY_DATE_COLUMN,
}


class ImageError(Exception):
    """An image file that is missing, unreadable, corrupt, or off the preprocessing spec.

    ``reason`` is what a run's readers see, after the image's path relative to its dataset: the
    paths a library's message quotes are cut to the file name, and it is kept short. ``kind``
    says which problem it is (``failures.ImageProblem``).
    """

    def __init__(self, path: str | os.PathLike, reason: str, kind: ImageProblem = ImageProblem.UNREADABLE):
        reason = without_paths(reason, path)[:_REASON_CHARS]
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
        self.kind = kind


# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says a run would read: the array's shape once the spec's frames rule
    is applied, whether the file says it is a volume (None where it cannot say: NPY), and the
    conversions reading applies, in words ("MONOCHROME1 inverted", "frame 0 of 3", ...)."""

    format: str
    shape: tuple[int, ...]
    volume: bool | None
    conversions: tuple[str, ...] = ()


@dataclass
class LoadedImage:
    """Pixel data as float32 with the file's pixel semantics applied (see ``load_image``), the
    conversions that took, and, for DICOM, header attributes under their manifest names
    (``scanner_manufacturer``, ``age`` in years, ...)."""

    path: str
    format: str
    array: np.ndarray
    attributes: dict[str, Any] = field(default_factory=dict)
    conversions: tuple[str, ...] = ()
    volume: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "shape": list(self.array.shape),
            "dtype": str(self.array.dtype),
            "attributes": dict(self.attributes),
            "conversions": list(self.conversions),
        }


@dataclass(frozen=True)
class _Rules:
    """What the preprocessing spec says about reading: the frames rule, the header's VOI window, the spec whose shape to fit."""

    frames: str | int = "refuse"
    voi: bool = False
    spec: Preprocessing | None = None

    @classmethod
    def of(cls, spec: Preprocessing | None) -> _Rules:
        return cls() if spec is None else cls(frames=spec.frames, voi=spec.window == HEADER_WINDOW, spec=spec)


@dataclass
class _Read:
    """One file opened: its header, and with pixels asked for, the array and whether it is finite by construction."""

    header: ImageHeader
    array: np.ndarray | None = None
    finite: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)


def _image_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    if name.endswith(".png"):
        return "png"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if "." not in name:  # DICOM files often have no suffix: look for the magic bytes.
        try:
            with path.open("rb") as handle:
                handle.seek(128)
                if handle.read(4) == b"DICM":
                    return "dicom"
        except OSError:
            pass
    raise ImageError(path, f"unsupported image type (expected one of {', '.join(IMAGE_SUFFIXES)})", ImageProblem.UNSUPPORTED_TYPE)


def _dicom_attributes(ds: Any) -> dict[str, Any]:
    """Header values under manifest attribute names; unusable values are left out."""
    found: dict[str, Any] = {}
    for keyword, name in DICOM_HEADER_ATTRIBUTES.items():
        raw = cell_text(ds.get(keyword))
        if raw is None:
            continue
        try:
            if name == "age":
                found[name] = parse_age(raw)
            elif name == STUDY_DATE_COLUMN:
                found[name] = parse_date(raw)
            else:
                found[name] = raw
        except ValueError:
            continue  # a malformed header value is no worse than an absent one
    return found


def read_dicom_attributes(path: str | os.PathLike) -> dict[str, Any]:
    """Header attributes of a DICOM file without decoding its pixels."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types for a bad file
        raise ImageError(path, f"unreadable DICOM: {type(exc).__name__}: {exc}") from None
    return _dicom_attributes(ds)


def _frame(path: Path, rule: str | int, n_frames: int) -> int | None:
    """The frame the spec's frames rule picks from a file of ``n_frames``; None for all of them
    (one frame, or the frames of a volume)."""
    if n_frames == 1 or rule == "volume":
        return None
    if rule == "refuse":
        reason = (
            f"{n_frames} frames, refused by the preprocessing spec's 'frames' rule ('refuse', the default): set 'frames' to "
            "'first', {'index': k} or, with a volume spec, 'volume'"
        )
        raise ImageError(path, reason, ImageProblem.MULTI_FRAME)
    index = 0 if rule == "first" else int(rule)
    if index >= n_frames:
        raise ImageError(
            path, f"the 'frames' rule asks for frame {index}, but the file has {n_frames} (0 to {n_frames - 1})", ImageProblem.NO_SUCH_FRAME
        )
    return index


def _dicom(path: Path, rules: _Rules, pixels: bool, attributes: bool = True) -> _Read:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=not pixels)
    except Exception as exc:  # not DICOM, truncated header, ...
        raise ImageError(path, f"unreadable DICOM: {type(exc).__name__}: {exc}") from None
    try:
        plan = plan_dicom(ds, frame=_frame(path, rules.frames, frame_count(ds)), voi=rules.voi)
        header = ImageHeader("dicom", plan.shape, plan.n_frames > 1 and plan.frame is None, plan.conversions)
        if not pixels:
            return _Read(header)
        array, finite = decode_dicom(ds, plan)
    except PixelsRefused as exc:
        raise ImageError(path, exc.reason, exc.kind) from None
    except ImageError:
        raise
    except Exception as exc:  # a decoder's error: corrupt stream, truncated pixel data, ...
        syntax = syntax_name(str(ds.file_meta.TransferSyntaxUID))
        raise ImageError(path, f"unreadable DICOM ({syntax}): {type(exc).__name__}: {exc}") from None
    return _Read(header, array, finite, _dicom_attributes(ds) if attributes else {})


_PNG_GREY = ("L", "I;16", "I;16B", "I;16L", "I", "F")  # read as they are
_PNG_CONVERSIONS = {"1": ("bilevel → grey 0/255",), "LA": ("alpha dropped",), "P": ("palette → RGB",), "PA": ("palette → RGB", "alpha dropped")}


def _png(path: Path, rules: _Rules, pixels: bool) -> _Read:
    try:
        with Image.open(path) as image:
            n_frames = getattr(image, "n_frames", 1)
            if n_frames > 1 and rules.frames == "volume":
                raise ImageError(path, f"an animated PNG of {n_frames} frames is not read as a volume", ImageProblem.MULTI_FRAME)
            frame = _frame(path, rules.frames, n_frames)
            if frame:
                image.seek(frame)
            mode = image.mode
            grey = mode in _PNG_GREY or mode in ("1", "LA")
            conversions = (f"frame {frame} of {n_frames}",) if frame is not None else ()
            conversions += _PNG_CONVERSIONS.get(mode, () if mode in _PNG_GREY or mode == "RGB" else (f"{mode} → RGB",))
            header = ImageHeader("png", (image.height, image.width) if grey else (image.height, image.width, 3), False, conversions)
            if not pixels:
                return _Read(header)
            image.load()
            if mode in ("1", "LA"):
                image = image.convert("L")
            elif not grey and mode != "RGB":
                image = image.convert("RGB")  # P, RGBA (alpha dropped), CMYK, YCbCr, ...
            return _Read(header, np.asarray(image, dtype=np.float32), False)
    except ImageError:
        raise
    except Exception as exc:  # Pillow raises several types for truncated or corrupt files
        raise ImageError(path, f"unreadable PNG: {type(exc).__name__}: {exc}") from None


def npy_frames(shape: tuple[int, ...], spec: Preprocessing | None) -> int:
    """How many frames an NPY array of ``shape`` holds along its leading axis, as its spec reads it
    (an array cannot say what its axes are): with a 2D spec, a 3D array (F, H, W) whose first axis
    is no channel axis (not 1 or 3) and whose last is none (not 3 or 4), or any 4D array (F, ...);
    with a volume spec, a 4D array (F, D, H, W). 1 otherwise, and without a spec (masks, any shape)."""
    if spec is None:
        return 1
    if spec.volume:
        return shape[0] if len(shape) == 4 else 1
    if len(shape) == 4 or (len(shape) == 3 and shape[0] not in (1, 3) and shape[-1] not in (3, 4)):
        return shape[0]
    return 1


def _npy(path: Path, rules: _Rules, pixels: bool) -> _Read:
    try:
        # Never unpickle: a pickle in a dataset would run code on the worker. The header alone is memory-mapped.
        array = np.load(path, allow_pickle=False, mmap_mode=None if pixels else "r")
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "python objects" in str(exc).lower():
            reason = "NPY holds Python objects (a pickle); refused, only numeric arrays are read"
            raise ImageError(path, reason) from None
        raise ImageError(path, f"unreadable NPY: {exc}") from None
    except Exception as exc:
        raise ImageError(path, f"unreadable NPY: {type(exc).__name__}: {exc}") from None
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_) or np.iscomplexobj(array):
        raise ImageError(path, f"NPY has dtype {array.dtype}; expected a real numeric array")
    shape = tuple(array.shape)
    n_frames = npy_frames(shape, rules.spec)
    if n_frames > 1 and rules.frames == "volume" and len(shape) == 4:
        text = "x".join(map(str, shape))
        raise ImageError(
            path, f"an NPY of shape {text} holds {n_frames} volumes; pick one with 'frames': 'first' or {{'index': k}}", ImageProblem.MULTI_FRAME
        )
    frame = _frame(path, rules.frames, n_frames)
    conversions: tuple[str, ...] = ()
    if frame is not None:
        array, shape, conversions = array[frame], shape[1:], (f"frame {frame} of {n_frames}",)
    header = ImageHeader("npy", shape, None, conversions)  # an array says nothing of what its axes are
    return _Read(header, array.astype(np.float32) if pixels else None, False)


def _nifti(path: Path, rules: _Rules, pixels: bool) -> _Read:
    """A NIfTI image in nibabel's (x, y, z) order, for images and masks alike: 2D when z is 1, else
    a volume; a 4D file's fourth axis holds frames (volumes over time), which the frames rule picks from."""
    try:
        import nibabel  # only NIfTI volumes need it
    except ImportError:
        raise ImageError(path, "NIfTI images need nibabel, which is not installed: pip install nibabel") from None
    try:
        image = nibabel.load(path)
        shape = tuple(int(n) for n in image.shape)
        scaling = getattr(image.header, "get_slope_inter", None)  # a CIFTI-2 header has none
        slope, intercept = scaling() if scaling else (None, None)
    except Exception as exc:
        raise ImageError(path, f"unreadable NIfTI: {type(exc).__name__}: {exc}") from None
    text = "x".join(map(str, shape))
    if any(n != 1 for n in shape[4:]):
        raise ImageError(path, f"a NIfTI of shape {text} has more than four dimensions", ImageProblem.SHAPE)
    n_frames = shape[3] if len(shape) > 3 else 1
    if n_frames > 1 and rules.frames == "volume":
        raise ImageError(
            path, f"a 4D NIfTI ({text}) holds {n_frames} volumes; pick one with 'frames': 'first' or {{'index': k}}", ImageProblem.MULTI_FRAME
        )
    frame = _frame(path, rules.frames, n_frames)
    spatial = list(shape[:3])
    while len(spatial) > 2 and spatial[-1] == 1:
        spatial.pop()  # a 2D image stored as (x, y, 1)
    conversions = (f"frame {frame} of {n_frames}",) if frame is not None else ()
    if slope is not None and intercept is not None and (slope, intercept) != (1, 0):
        conversions += (f"NIfTI scaling slope {slope:g} intercept {intercept:g}",)
    header = ImageHeader("nifti", tuple(spatial), len(spatial) == 3, conversions)
    if not pixels:
        return _Read(header)
    try:
        if frame is None:
            array = image.get_fdata(dtype=np.float32)
        else:
            array = np.asarray(image.dataobj[(slice(None),) * 3 + (frame,) + (0,) * (len(shape) - 4)], dtype=np.float32)
    except Exception as exc:
        raise ImageError(path, f"unreadable NIfTI: {type(exc).__name__}: {exc}") from None
    return _Read(header, np.asarray(array).reshape(header.shape), False)


def _open(path: str | os.PathLike, spec: Preprocessing | None, pixels: bool, attributes: bool = True) -> _Read:
    """Open one file by its format and check it against the spec: every reason a run skips a
    file, whether only its header is read (a pre-flight check) or its pixels too (a run)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(path, "file not found", ImageProblem.NOT_FOUND)
    kind = _image_format(path)
    rules = _Rules.of(spec)
    if rules.voi and kind != "dicom":
        raise ImageError(path, f"'window': 'header' takes the window from a DICOM header; a {kind.upper()} file has none", ImageProblem.NO_VOI)
    if kind == "dicom":
        read = _dicom(path, rules, pixels, attributes)
    elif kind == "png":
        read = _png(path, rules, pixels)
    elif kind == "npy":
        read = _npy(path, rules, pixels)
    else:
        read = _nifti(path, rules, pixels)
    if math.prod(read.header.shape) == 0:
        raise ImageError(path, f"image is empty (shape {read.header.shape})", ImageProblem.EMPTY)
    if rules.spec is not None:
        try:
            rules.spec.check_image(read.header.shape, volume=read.header.volume)
        except ValueError as exc:
            raise ImageError(path, str(exc), ImageProblem.SHAPE) from None
    return read


def read_image_header(path: str | os.PathLike, spec: Preprocessing | None = None) -> ImageHeader:
    """What a run would read from one file, from its header alone (DICOM without pixel data, a
    NIfTI header, a PNG's chunks, an NPY's array header): ``ImageError`` for a file a run would
    skip, except for what only the pixels show (a corrupt stream, NaN values)."""
    return _open(path, spec, pixels=False).header


def load_image(path: str | os.PathLike, spec: Preprocessing | None = None, *, attributes: bool = True) -> LoadedImage:
    """Read one image by its suffix (DICOM, PNG, NPY, NIfTI) as float32, as ``spec`` says.

    DICOM: decoded (pylibjpeg's decoders for JPEG, JPEG-LS, JPEG 2000 and RLE), with the
    standard's pixel semantics (``radtrust_engine.dicom_pixels``): the modality LUT, the
    header's VOI window when the spec asks, MONOCHROME1 inverted, palette and YBR colour as
    RGB; header attributes returned. PNG: (H, W) grey or (H, W, 3) RGB (alpha dropped). NPY:
    read without unpickling, a leading axis of frames as ``npy_frames`` says. NIfTI: via nibabel, scaling applied. A file of several frames
    follows the spec's frames rule. Without a spec: frames refused, no window, any shape.
    A file a run would skip raises ``ImageError`` with the path, the reason and its kind.
    ``attributes=False`` leaves the header attributes out: a run's loader has them from its
    headers stage, and converting them again cost a third of a millisecond per image.
    """
    read = _open(path, spec, pixels=True, attributes=attributes)
    array = read.array
    assert array is not None  # pixels were asked for
    if not read.finite and not np.isfinite(array).all():
        raise ImageError(path, "image contains NaN or infinite values", ImageProblem.NON_FINITE)
    return LoadedImage(
        path=str(path),
        format=read.header.format,
        array=array,
        attributes=read.attributes,
        conversions=read.header.conversions,
        volume=read.header.volume,
    )


# ---------------------------------------------------------------------------
# Pre-flight: what a run would skip, from the headers
# ---------------------------------------------------------------------------


def allowed_skips(max_unreadable_share: float, n_images: int) -> int:
    """How many images a run may skip and still go on: the suite's share of the manifest, rounded down."""
    return int(max_unreadable_share * n_images)


def skipped_message(skipped: Sequence[SkippedImage], total: int, allowed: int) -> str:
    """Why a run stopped: every skipped image (the first ``SKIPPED_LISTED``, then a count) as
    ``path (row n): reason``, the files of one reason together, so that many files with one
    problem take one line."""
    by_reason: dict[str, list[SkippedImage]] = {}
    for image in skipped[:SKIPPED_LISTED]:
        by_reason.setdefault(image.reason, []).append(image)
    groups = "; ".join(f"{', '.join(f'{s.image_path} (row {s.row})' for s in images)}: {reason}" for reason, images in by_reason.items())
    rest = len(skipped) - SKIPPED_LISTED
    return (
        f"{len(skipped)} of {total} images could not be read or do not fit the preprocessing spec "
        f"(the suite's max_unreadable_share allows {allowed}): {groups}" + (f"; and {rest} more" if rest > 0 else "")
    )


@dataclass(frozen=True)
class ImagesCheck:
    """A manifest's images checked from their headers: those a run would skip, with the reason,
    and the conversions reading would apply to the others."""

    n_images: int
    skipped: tuple[SkippedImage, ...]
    conversions: ImageConversions

    def exceeds(self, max_unreadable_share: float) -> bool:
        """Whether a run with this share would fail for these images."""
        return len(self.skipped) > allowed_skips(max_unreadable_share, self.n_images)

    def problems(self) -> dict[str, int]:
        """How many images each kind of problem would skip."""
        return dict(Counter(str(image.kind) for image in self.skipped))


def check_images(manifest: Manifest, spec: Preprocessing | None) -> ImagesCheck:
    """Read every image's header as a run with ``spec`` would (``read_image_header``), without
    decoding pixels or running a model: the pre-flight check of ``manage.py check_dataset``."""
    skipped: list[SkippedImage] = []
    converted: list[tuple[int, tuple[str, ...]]] = []
    for index in range(len(manifest)):
        try:
            header = read_image_header(manifest.absolute_path(index), spec)
        except ImageError as exc:
            skipped.append(SkippedImage(row=index + 1, image_path=manifest.image_paths[index], reason=exc.reason, kind=exc.kind))
            continue
        converted.append((index + 1, header.conversions))
    return ImagesCheck(n_images=len(manifest), skipped=tuple(skipped), conversions=ImageConversions.collect(converted))


# ---------------------------------------------------------------------------
# Filling manifest attributes from DICOM headers
# ---------------------------------------------------------------------------


@dataclass
class HeaderFill:
    """A manifest with attributes filled from DICOM headers, how many cells were
    filled per attribute, and the headers that could not be read (row, reason)."""

    manifest: Manifest
    filled: dict[str, int]
    unreadable: list[tuple[int, str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "filled": dict(self.filled),
            "unreadable": [{"row": row, "reason": reason} for row, reason in self.unreadable],
        }


def fill_attributes_from_headers(
    manifest: Manifest,
    *,
    read_header: Callable[[Path], dict[str, Any]] = read_dicom_attributes,
) -> HeaderFill:
    """Fill attributes the manifest leaves empty (scanner manufacturer and
    model, sex, age, study date) from the headers of its DICOM images.

    The manifest wins where it has a value. Only DICOM rows are read, headers
    only (no pixels). A header that cannot be read leaves its row as it was
    and is reported, so the runner decides whether to skip or fail.
    """
    columns = {**manifest.attributes, STUDY_DATE_COLUMN: manifest.study_dates}
    found: dict[str, dict[int, Any]] = {name: {} for name in DICOM_HEADER_ATTRIBUTES.values()}  # row -> value read
    unreadable: list[tuple[int, str]] = []
    for index in range(len(manifest)):
        missing = [name for name in DICOM_HEADER_ATTRIBUTES.values() if columns[name][index] is None]
        if not missing:
            continue  # its path is checked when its image is read
        path = manifest.absolute_path(index)
        try:
            if _image_format(path) != "dicom":
                continue
            header = read_header(path)
        except ImageError as exc:
            unreadable.append((index + 1, f"{manifest.image_paths[index]}: {exc.reason}"))
            continue
        for name in missing:
            if header.get(name) is not None:
                found[name][index] = header[name]
    for name, cells in found.items():  # columns are rebuilt only where a header filled a cell
        if cells:
            values = list(columns[name])
            for index, value in cells.items():
                values[index] = value
            columns[name] = values
    study_dates = columns.pop(STUDY_DATE_COLUMN)
    return HeaderFill(
        manifest=replace(manifest, attributes=columns, study_dates=study_dates),
        filled={name: len(cells) for name, cells in found.items()},
        unreadable=unreadable,
    )
