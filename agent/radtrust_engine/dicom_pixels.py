"""DICOM pixel semantics: from the stored values to what the image shows (PS3.3 C.7.6.3, C.11).

``plan_dicom`` decides from the header alone what reading a file takes: whether a decoder for
its transfer syntax is installed, whether its photometric interpretation is one the engine
converts, the shape it gives and the conversions it needs. ``decode_dicom`` then applies the plan
to the pixels. A pre-flight check (``images.read_image_header``) and a run (``images.load_image``)
both go through ``plan_dicom``, so they skip the same files for the same reasons and count the
same conversions.

The steps, in the standard's order:

1. Decode (pydicom with the pylibjpeg plugins): bits stored, pixel representation, byte order,
   planar configuration and chroma subsampling are the decoder's; YBR colour becomes RGB there.
2. Grey images: the modality LUT (rescale slope and intercept, or a modality LUT table; an
   enhanced object's per-frame or shared functional group where the top level has none).
3. With ``"window": "header"`` in the spec: the file's VOI LUT table or its first window
   (LINEAR, LINEAR_EXACT or SIGMOID), giving [0, 1].
4. MONOCHROME1 (lowest value white) is inverted, so that higher always means brighter: across
   the full range the stored bits can hold, taken through the modality LUT, or ``1 - y`` after
   a VOI window. The same image stored as MONOCHROME1 and as MONOCHROME2 reads the same.
5. Palette colour: the palette's red, green and blue tables give an RGB image.

Plain Python, NumPy and pydicom (no Django).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder, pixel_array
from pydicom.uid import UID, ExplicitVRBigEndian

from radtrust_engine.failures import ImageProblem

GREY = ("MONOCHROME1", "MONOCHROME2")
PALETTE = "PALETTE COLOR"
TO_RGB = ("YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")  # the decoder gives RGB for these
PHOTOMETRIC = (*GREY, PALETTE, "RGB", *TO_RGB)
_NATIVE_LITTLE_ENDIAN = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}  # Implicit VR, Explicit VR
_PIXEL_DATA = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class PixelsRefused(Exception):
    """A DICOM file whose pixels the engine does not read, with the kind of problem and the reason."""

    def __init__(self, kind: ImageProblem, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class DicomPlan:
    """How one DICOM file is read: the frame decoded (None: every frame, for a single-frame file or
    a volume), the array's shape, and the conversions applied, in words."""

    photometric: str
    n_frames: int
    frame: int | None
    shape: tuple[int, ...]
    voi: bool
    conversions: tuple[str, ...]


def syntax_name(uid: str) -> str:
    """A transfer syntax as a reader knows it: its name and UID, or the UID alone when it has no standard name."""
    name = UID(uid).name
    return f"{name} ({uid})" if name != uid else f"{uid} (not a standard transfer syntax)"


def frame_count(ds: Any) -> int:
    try:
        count = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        raise PixelsRefused(ImageProblem.UNREADABLE, f"Number of Frames {ds.get('NumberOfFrames')!r} is not a whole number") from None
    if count < 1:
        raise PixelsRefused(ImageProblem.UNREADABLE, f"Number of Frames is {count}")
    return count


def plan_dicom(ds: Any, *, frame: int | None, voi: bool) -> DicomPlan:
    """The plan for ``ds`` (a header is enough: pixels are not touched), given the frame the spec's
    frames rule picked (None: all of them) and whether it takes the VOI window from the header.
    Raises ``PixelsRefused`` for a file a run would skip."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if not syntax:
        raise PixelsRefused(ImageProblem.UNREADABLE, "the file meta has no Transfer Syntax UID")
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise PixelsRefused(ImageProblem.NO_DECODER, f"transfer syntax {syntax_name(syntax)} cannot be decoded: no decoder exists for it") from None
    if not decoder.is_available:
        raise PixelsRefused(ImageProblem.NO_DECODER, f"transfer syntax {syntax_name(syntax)} cannot be decoded: no decoder for it is installed")
    if len(ds) == 0:
        raise PixelsRefused(ImageProblem.UNREADABLE, "no data elements after the file meta information (a truncated file?)")
    if not all(k in ds for k in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation")):
        what = ds.get("Modality") or "object"
        raise PixelsRefused(ImageProblem.NO_PIXELS, f"a DICOM {what} without an image (no Image Pixel module)")
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if photometric not in PHOTOMETRIC:
        raise PixelsRefused(
            ImageProblem.PHOTOMETRIC, f"photometric interpretation {photometric!r} is not one the engine converts ({', '.join(PHOTOMETRIC)})"
        )
    if samples != (1 if photometric in (*GREY, PALETTE) else 3):
        raise PixelsRefused(ImageProblem.PHOTOMETRIC, f"photometric interpretation {photometric} with {samples} samples per pixel")
    n_frames = frame_count(ds)
    rows, columns = int(ds.Rows), int(ds.Columns)
    colour = photometric not in GREY  # palette colour reads as RGB
    if frame is None and n_frames > 1 and colour:
        raise PixelsRefused(ImageProblem.SHAPE, f"{n_frames} colour frames cannot be read as a volume: volumes are grey")

    conversions: list[str] = []
    if n_frames > 1:
        conversions.append(f"frame {frame} of {n_frames}" if frame is not None else f"volume of {n_frames} frames")
    if photometric in GREY:
        frames = range(n_frames) if frame is None else (frame,)
        modality = (_modality_text(ds, k) for k in frames)  # per frame: an enhanced object's groups may differ
        conversions.extend(dict.fromkeys(text for text in modality if text))
        if voi:
            conversions.append(_voi_text(ds, frame or 0))
        if photometric == "MONOCHROME1":
            conversions.append("MONOCHROME1 inverted")
    elif voi:
        raise PixelsRefused(ImageProblem.NO_VOI, f"'window': 'header' applies to grey images; this one is {photometric}")
    elif photometric == PALETTE:
        conversions.append("palette → RGB")
    elif photometric in TO_RGB:
        conversions.append(f"{photometric} → RGB")
    shape = (rows, columns) if frame is not None or n_frames == 1 else (n_frames, rows, columns)
    return DicomPlan(
        photometric=photometric,
        n_frames=n_frames,
        frame=frame,
        shape=shape + ((3,) if colour else ()),
        voi=voi,
        conversions=tuple(conversions),
    )


def decode_dicom(ds: Any, plan: DicomPlan) -> tuple[np.ndarray, bool]:
    """The pixels of ``ds`` as float32 with the plan's conversions applied, and whether they are
    finite by construction (integers through finite transforms: the per-pixel check can be skipped)."""
    if not any(k in ds for k in _PIXEL_DATA):
        raise PixelsRefused(ImageProblem.NO_PIXELS, "the file has no pixel data")
    pixels = native_pixels(ds) if plan.n_frames == 1 else None
    if pixels is None:
        pixels = pixel_array(ds, index=plan.frame)
    integers = pixels.dtype.kind in "iu"
    if plan.photometric == PALETTE:
        return _palette(pixels, ds), True
    if plan.photometric not in GREY:
        return pixels.astype(np.float32), integers
    if plan.frame is None and plan.n_frames > 1:
        slices = [_grey(frame_pixels, ds, plan, k) for k, frame_pixels in enumerate(pixels)]
        return np.stack([s[0] for s in slices]), integers and all(s[1] for s in slices)
    array, bounded = _grey(pixels, ds, plan, plan.frame or 0)
    return array, integers and bounded


def native_pixels(ds: Any) -> np.ndarray | None:
    """Pixels of an uncompressed single-frame grey image straight from the buffer, as pydicom
    would decode them (unused high bits masked, or sign-extended for signed data); None for
    anything else, which goes through pydicom's decoders. About 0.7 ms less per 512x512 image."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(getattr(meta, "TransferSyntaxUID", "")) if meta is not None else ""
    allocated, stored = ds.get("BitsAllocated"), ds.get("BitsStored")
    if (
        syntax not in _NATIVE_LITTLE_ENDIAN
        or ds.get("SamplesPerPixel", 1) != 1
        or int(ds.get("NumberOfFrames", 1) or 1) != 1
        or allocated not in (8, 16)
        or not stored
        or stored > allocated
        or "PixelData" not in ds
    ):
        return None
    signed = ds.get("PixelRepresentation", 0) == 1
    dtype = np.dtype(f"{'i' if signed else 'u'}{allocated // 8}").newbyteorder("<")
    count = int(ds.Rows) * int(ds.Columns)
    data = ds.PixelData
    if len(data) < count * dtype.itemsize:
        return None  # let pydicom say what is wrong
    pixels = np.frombuffer(data, dtype=dtype, count=count).reshape(int(ds.Rows), int(ds.Columns))
    unused = allocated - stored
    if unused:
        pixels = (pixels << unused) >> unused if signed else pixels & np.array((1 << stored) - 1, dtype=dtype)
    return pixels


def _palette(pixels: np.ndarray, ds: Any) -> np.ndarray:
    """Palette indices through the red, green and blue tables (PS3.3 C.7.6.3.1.5-6) as float32 RGB
    (plain or segmented tables; an alpha table is dropped).

    pydicom 3.0 reads a plain table's 16-bit entries in the machine's byte order; a big-endian
    file's are byte-swapped here first, so that it reads as the same file stored little-endian.
    """
    tables = {c: ds.get(f"{c}PaletteColorLookupTableData") for c in ("Red", "Green", "Blue")}
    entries = int(ds.RedPaletteColorLookupTableDescriptor[0]) or 65536
    big_endian = ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    if big_endian and tables["Red"] is not None and len(tables["Red"]) == 2 * entries:
        swapped = Dataset()  # a new dataset: the file's own is left as read
        for colour, table in tables.items():
            if table is not None:
                descriptor = f"{colour}PaletteColorLookupTableDescriptor"
                setattr(swapped, descriptor, ds[descriptor].value)
                setattr(swapped, f"{colour}PaletteColorLookupTableData", np.frombuffer(table, ">u2").astype("<u2").tobytes())
        ds = swapped
    return apply_color_lut(pixels, ds)[..., :3].astype(np.float32)  # an alpha table, if any, is dropped


# --- Grey images: modality LUT, VOI, MONOCHROME1 ---------------------------------------------


def _functional_item(ds: Any, sequence: str, frame: int) -> Any | None:
    """The first item of ``sequence`` that applies to ``frame`` of an enhanced multi-frame object:
    its per-frame functional group's, else the shared one's (PS3.3 C.7.6.16)."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items and index < len(items):
            inner = items[index].get(sequence)
            if inner:
                return inner[0]
    return None


def _rescale(ds: Any, frame: int) -> tuple[float, float]:
    """Rescale slope and intercept of ``frame``: the top level's, else the functional groups'; (1, 0) when none."""
    source = ds if "RescaleSlope" in ds or "RescaleIntercept" in ds else _functional_item(ds, "PixelValueTransformationSequence", frame)
    if source is None:
        return 1.0, 0.0
    try:
        slope, intercept = float(source.get("RescaleSlope", 1) or 1), float(source.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError):
        raise PixelsRefused(ImageProblem.UNREADABLE, "Rescale Slope or Intercept is not a number") from None
    if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0:
        raise PixelsRefused(ImageProblem.UNREADABLE, f"rescale slope {slope:g} and intercept {intercept:g} do not map pixel values")
    return slope, intercept


def _modality_text(ds: Any, frame: int) -> str | None:
    if ds.get("ModalityLUTSequence"):
        return "modality LUT table"
    slope, intercept = _rescale(ds, frame)
    return None if (slope, intercept) == (1.0, 0.0) else f"modality LUT slope {slope:g} intercept {intercept:g}"


def _modality(pixels: np.ndarray, ds: Any, frame: int) -> tuple[np.ndarray, bool]:
    """Stored values through the modality LUT, as float32, and whether the result is bounded (finite)."""
    if ds.get("ModalityLUTSequence"):
        return apply_modality_lut(pixels, ds).astype(np.float32), True
    slope, intercept = _rescale(ds, frame)
    array = pixels.astype(np.float32)
    if (slope, intercept) != (1.0, 0.0):
        array = array * np.float32(slope) + np.float32(intercept)
    bound = abs(slope) * 2.0 ** (8 * pixels.dtype.itemsize) + abs(intercept)
    return array, math.isfinite(bound) and bound < float(np.finfo(np.float32).max)


def _stored_range(ds: Any) -> np.ndarray:
    """The lowest and highest value the stored bits can hold (PS3.3 C.7.6.3.1)."""
    bits = int(ds.get("BitsStored") or ds.BitsAllocated)
    if ds.get("PixelRepresentation", 0) == 1:
        return np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1], dtype=np.int64)
    return np.array([0, 2**bits - 1], dtype=np.int64)


def _window(ds: Any, frame: int) -> tuple[float, float, str] | None:
    """The first VOI window (center, width, function) of ``frame``, from the top level or the functional groups."""
    source = ds if "WindowCenter" in ds else _functional_item(ds, "FrameVOILUTSequence", frame)
    if source is None or "WindowCenter" not in source or "WindowWidth" not in source:
        return None
    try:
        center, width = (float(v[0] if isinstance(v, MultiValue) else v) for v in (source.WindowCenter, source.WindowWidth))
    except (TypeError, ValueError, IndexError):
        raise PixelsRefused(ImageProblem.NO_VOI, "the header's window center or width is not a number") from None
    function = str(source.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        raise PixelsRefused(ImageProblem.NO_VOI, f"VOI LUT function {function!r} is not LINEAR, LINEAR_EXACT or SIGMOID")
    if not (math.isfinite(center) and math.isfinite(width)) or width < (1 if function == "LINEAR" else 0) or width == 0:
        raise PixelsRefused(ImageProblem.NO_VOI, f"the header's window width {width:g} is not valid for {function}")
    return center, width, function


def _voi_text(ds: Any, frame: int) -> str:
    if ds.get("VOILUTSequence"):
        return "VOI LUT table from header"
    if _window(ds, frame) is None:
        raise PixelsRefused(ImageProblem.NO_VOI, "'window': 'header' needs a VOI window or LUT in the header; this file has none")
    return "VOI window from header"


def _voi(values: np.ndarray, ds: Any, frame: int) -> np.ndarray:
    """Modality values through the header's VOI LUT table or first window, to [0, 1] (PS3.3 C.11.2.1.2)."""
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        out = apply_voi(values, ds, index=0).astype(np.float32) / np.float32(2**bits - 1)
        return np.clip(out, 0, 1)
    window = _window(ds, frame)
    if window is None:
        raise PixelsRefused(ImageProblem.NO_VOI, f"'window': 'header' needs a VOI window for frame {frame}; the header has none")
    center, width, function = window
    if function == "SIGMOID":
        return (1 / (1 + np.exp(-4 * (values - center) / width))).astype(np.float32)
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0, 1).astype(np.float32)
    if width == 1:
        return (values > center - 0.5).astype(np.float32)
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1).astype(np.float32)


def _grey(pixels: np.ndarray, ds: Any, plan: DicomPlan, frame: int) -> tuple[np.ndarray, bool]:
    """One grey frame through the modality LUT, the VOI (when the spec asks) and the MONOCHROME1 inversion."""
    array, bounded = _modality(pixels, ds, frame)
    if plan.voi:
        array = _voi(array, ds, frame)
        return (1 - array if plan.photometric == "MONOCHROME1" else array), True
    if plan.photometric == "MONOCHROME1":
        ends, _ = _modality(_stored_range(ds), ds, frame)
        array = np.float32(ends.min() + ends.max()) - array
    return array, bounded
