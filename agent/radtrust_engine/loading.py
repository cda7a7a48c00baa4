"""Dataset manifests: reading and checking them (images are read by ``radtrust_engine.images``).

A dataset is a root folder registered for an institution and a manifest (CSV,
or Parquet when pyarrow is installed) listing one image per row: its path
relative to the root, its label(s), the patient id, the study date and
optional attributes used for stratification (``ATTRIBUTE_COLUMNS``).

Everything a run could trip over in the manifest is found here, before any
image is read, and reported as a ``ManifestError`` naming the column and the
row (rows are counted from 1, header excluded). Its message is shown to every
reader of the run, so it names files relative to the dataset folder and never
quotes a cell or a header it does not expect: a manifest that is not one (a
secret file behind a symbolic link, a log) is not echoed back.

Plain Python and NumPy (no Django), so a worker, a site agent and a notebook
read a dataset the same way.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from radtrust_engine.columns import CodeBuilder, StringView, TextBuilder, as_coded, as_text
from radtrust_engine.failures import FailureCode
from radtrust_engine.paths import PathRefused, resolve_within

DEFAULT_REQUIRED: tuple[str, ...] = ("image_path", "patient_id")
STUDY_DATE_COLUMN = "study_date"
ATTRIBUTE_COLUMNS: tuple[str, ...] = (
    "age",
    "sex",
    "race_ethnicity",
    "site",
    "scanner_manufacturer",
    "scanner_model",
    "protocol",
)


class ManifestError(ValueError):
    """A manifest that cannot be used as it is; the message says what to fix."""

    reason = FailureCode.BAD_MANIFEST

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None):
        super().__init__(message)
        self.row = row
        self.column = column


# ---------------------------------------------------------------------------
# Value parsing shared by manifests and DICOM headers
# ---------------------------------------------------------------------------

_AGE_RE = re.compile(r"^(\d{1,3})\s*([DWMY])?$", re.IGNORECASE)
_AGE_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def parse_age(value: Any) -> float | None:
    """Age in years from a number, ``"45"``, ``"45.5"`` or a DICOM AS string
    (``"045Y"``, ``"006M"``, ``"003W"``, ``"010D"``); None when empty. The error
    does not quote the value (it is a manifest cell or a header)."""
    if value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        years = float(value)
    else:
        text = str(value).strip()
        if not text:
            return None
        match = _AGE_RE.match(text)
        if match:
            years = int(match.group(1)) * _AGE_UNIT_YEARS[(match.group(2) or "Y").upper()]
        else:
            try:
                years = float(text)
            except ValueError:
                raise ValueError("the age is not a number of years or a DICOM age such as '045Y'") from None
    if not math.isfinite(years) or years < 0:
        raise ValueError("the age is not a non-negative number of years")
    return years


def parse_date(value: Any) -> str | None:
    """ISO date (``YYYY-MM-DD``) from a date, ``YYYY-MM-DD`` or DICOM ``YYYYMMDD``; None when empty."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).strip()
    if not text:
        return None
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            pass
    raise ValueError("the study date is not YYYY-MM-DD or YYYYMMDD")


def cell_text(value: Any) -> str | None:
    """A cell as stripped text; None for empty cells and nulls."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    return text or None


def _label(value: Any) -> int | None:
    """0 or 1 from a cell, or None when it is anything else."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value) if value in (0, 1) else None
    if isinstance(value, (float, np.floating)):
        return int(value) if value in (0.0, 1.0) else None
    text = cell_text(value)
    return {"0": 0, "1": 1, "0.0": 0, "1.0": 1}.get(text) if text is not None else None


# ---------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------


@dataclass
class Manifest:
    """The checked content of a dataset manifest, one entry per image.

    ``image_paths`` are as written in the manifest (relative to ``root``);
    ``labels`` is an ``(n_images, n_labels)`` int8 array of 0/1, one column
    per entry of ``label_names``. ``attributes`` holds every name of
    ``ATTRIBUTE_COLUMNS`` (None where unknown); ``age`` is in years.

    The per-image columns are held as arrays (``radtrust_engine.columns``: paths packed in one
    string, other values coded), whatever sequence they are given as, so a large manifest costs
    a few bytes per image rather than an object per cell; they read like lists.
    """

    root: Path
    image_paths: Sequence[str]
    label_names: tuple[str, ...]
    labels: np.ndarray
    patient_ids: Sequence[str]
    study_dates: Sequence[str | None]
    attributes: dict[str, Sequence[Any]] = field(default_factory=dict)
    mask_paths: Sequence[str] | None = None  # segmentation ground truth, relative to ``root`` like the images
    reader_cells: dict[str, Sequence[Any]] | None = None  # ``reader:<name>:<label>`` columns as written; readers.py parses them

    def __post_init__(self) -> None:
        self.image_paths = as_text(self.image_paths)
        self.patient_ids = as_coded(self.patient_ids)
        self.study_dates = as_coded(self.study_dates)
        self.attributes = {name: as_coded(values) for name, values in self.attributes.items()}
        if self.mask_paths is not None:
            self.mask_paths = as_text(self.mask_paths)
        if self.reader_cells is not None:
            self.reader_cells = {name: as_coded(values) for name, values in self.reader_cells.items()}

    def __len__(self) -> int:
        return len(self.image_paths)

    def absolute_path(self, index: int) -> Path:
        """Where image ``index`` is read, checked again when it is opened: a link swapped in since the
        manifest was read is refused too."""
        return self._inside(self.image_paths[index], index, "image_path")

    def absolute_paths(self, rows: Sequence[int]) -> Sequence[str]:
        """``absolute_path`` of each of ``rows`` as text, each made (and checked) when it is read, so a
        run's loader holds no list of every image's path."""
        return _AbsolutePaths(self, rows)

    def patients(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The patient ids of ``rows`` as an array (what ``np.asarray`` of them as a list gives)."""
        return self.patient_ids.values(np.asarray(rows, dtype=np.intp))

    def mask_path(self, index: int) -> Path:
        """Where the ground-truth mask of row ``index`` is read, checked like ``absolute_path``."""
        if self.mask_paths is None:
            raise ManifestError("the manifest has no mask column")
        return self._inside(self.mask_paths[index], index, "mask_path")

    def _inside(self, relative: str, index: int, column: str) -> Path:
        try:
            resolve_within(self.root / relative, [self.root])
        except PathRefused:
            raise _outside(index + 1, column, relative) from None
        return self.root / relative  # as written: its suffix says how to read it, even through a link

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "image_paths": list(self.image_paths),
            "label_names": list(self.label_names),
            "labels": self.labels.tolist(),
            "patient_ids": list(self.patient_ids),
            "study_dates": list(self.study_dates),
            "attributes": {name: list(values) for name, values in self.attributes.items()},
            "mask_paths": None if self.mask_paths is None else list(self.mask_paths),
        }


class _AbsolutePaths(StringView):
    """``Manifest.absolute_paths``: a view made a path at a time."""

    def __init__(self, manifest: Manifest, rows: Sequence[int]):
        self._manifest = manifest
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def _at(self, i: int) -> str:
        return str(self._manifest.absolute_path(int(self._rows[i])))


def _read_rows(path: Path, shown: str) -> tuple[list[str], int, Callable[[], Iterator[dict[str, Any]]]]:
    """Column names, row count and the rows (a new pass on each call, one row at a time) of a CSV
    or Parquet manifest; ``shown`` is its name in messages. A CSV manifest is checked whole by the
    count before any row is parsed, so its syntax errors come first, as when every row was held."""
    name = path.name.lower()
    if name.endswith(".csv"):
        columns = next(_csv_rows(path, shown, None), None)
        if columns is None:
            raise ManifestError(f"manifest {shown!r} is empty: no header row")
        count = sum(1 for _ in _csv_rows(path, shown, columns))
        return columns, count, lambda: (dict(zip(columns, cells)) for cells in _csv_rows(path, shown, columns))
    if name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq  # only Parquet manifests need it
        except ImportError:
            raise ManifestError(f"manifest {shown!r} is Parquet, which needs pyarrow: pip install pyarrow") from None
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a bad file; their messages quote the path
            raise ManifestError(f"manifest {shown!r} is not a readable Parquet file ({type(exc).__name__})") from None
        return list(table.column_names), table.num_rows, lambda: (row for batch in table.to_batches() for row in batch.to_pylist())
    raise ManifestError(f"manifest {shown!r}: unsupported format (expected .csv or .parquet)")


def _csv_rows(path: Path, shown: str, columns: list[str] | None) -> Iterator[list[str]]:
    """The header's stripped names when ``columns`` is None; else each non-blank row's cells, checked
    against the header's length."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if columns is None:
                if header is not None:
                    yield [c.strip() for c in header]
                return
            for number, cells in enumerate(reader, start=1):
                if not any(cell.strip() for cell in cells):
                    continue  # blank line
                if len(cells) != len(columns):
                    raise ManifestError(
                        f"manifest {shown!r}, row {number}: {len(cells)} cells but the header has {len(columns)} columns",
                        row=number,
                    )
                yield cells
    except UnicodeDecodeError:
        raise ManifestError(f"manifest {shown!r} is not UTF-8 text") from None
    except csv.Error as exc:  # the csv module's messages describe the syntax, never the content
        raise ManifestError(f"manifest {shown!r} is not valid CSV: {exc}") from None


def _outside(row: int, column: str, relative: str) -> ManifestError:
    return ManifestError(
        f"row {row}: {column} {relative!r} resolves outside the dataset root (through a symbolic link) or cannot be resolved",
        row=row,
        column=column,
    )


def _checked_relative_path(value: Any, root: Path, row: int, column: str = "image_path") -> str:
    """The image (or mask) path of a row, refused if it could reach outside the root.

    A refused path is not quoted unless it is relative and inside the root: an absolute path or
    one with ``..`` names a place outside the dataset, which the run's readers need not see.
    """
    text = cell_text(value)
    if text is None:
        raise ManifestError(f"row {row}: column {column!r} is empty", row=row, column=column)
    if any(ord(c) < 32 for c in text):
        raise ManifestError(f"row {row}: {column} contains a control character", row=row, column=column)
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive:
        raise ManifestError(
            f"row {row}: {column} is absolute; paths must be relative to the dataset root",
            row=row,
            column=column,
        )
    if ".." in PurePosixPath(text.replace("\\", "/")).parts:
        raise ManifestError(
            f"row {row}: {column} contains '..' and could escape the dataset root",
            row=row,
            column=column,
        )
    relative = os.path.normpath(text)
    try:  # symlinks (of the file or of a folder on the way) may still lead outside
        resolve_within(root / relative, [root])
    except PathRefused:
        raise _outside(row, column, relative) from None
    return relative


def _shown(path: Path, root: Path) -> str:
    """A manifest's name in messages: relative to the dataset folder, else its file name alone."""
    for base in (root, root.resolve()):
        if path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return path.name


def manifest_file(root: str | os.PathLike, name: str) -> Path:
    """The manifest ``name`` (relative to the dataset folder ``root``) as it may be opened (to hash it, then read it).

    Refused with a ``ManifestError`` when it resolves outside the folder (``..``, an absolute
    name, a symbolic link leading out) or is not a file; the message quotes ``name`` only.
    """
    root_path = Path(root)
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts:
        raise ManifestError("the manifest must be named relative to the dataset folder, without '..'")
    path = root_path / name
    _manifest_inside(path, root_path, name)
    if not path.is_file():
        raise ManifestError(f"manifest {name!r} not found in the dataset folder")
    return path


def _manifest_inside(path: Path, root: Path, shown: str) -> None:
    try:
        resolve_within(path, [root])
    except PathRefused:
        raise ManifestError(f"manifest {shown!r} resolves outside the dataset root (through a symbolic link) or cannot be resolved") from None


def read_manifest(
    path: str | os.PathLike,
    root: str | os.PathLike,
    *,
    label_columns: Sequence[str],
    required: Sequence[str] = DEFAULT_REQUIRED,
    class_names: Sequence[str] | None = None,
    mask_column: str | None = None,
    labels_needed: bool = True,
) -> Manifest:
    """Read and check a manifest; every problem is a ``ManifestError`` naming column and row.

    1. The root must be a folder; the manifest inside it (symbolic links followed),
       CSV or Parquet, with at least one row.
    2. The required columns and every label column must be present; label
       columns must be among ``class_names`` (the version's output schema) when given.
    3. Each row: required cells not empty, image path relative and inside the
       root (no absolute path, no ``..``, no symlink leading out), labels 0 or
       1, a parseable age and study date; no image listed twice.
    4. With ``mask_column`` (segmentation), each row's mask path is checked like
       the image path; label columns may then be empty.
    5. With ``labels_needed=False`` they may be empty too: a run whose reference is not the
       manifest's labels (generated reports against reference reports) needs only case ids,
       patient ids and attributes, and a hospital's manifest of reported studies has no labels.
    """
    path = Path(path)
    root_path = Path(root)
    if not root_path.is_dir():
        raise ManifestError("the dataset root does not exist or is not a folder")
    shown = _shown(path, root_path)
    _manifest_inside(path, root_path, shown)
    root_path = root_path.resolve()
    if not label_columns and mask_column is None and labels_needed:
        raise ManifestError("no label columns given")
    if class_names is not None:
        unknown = [c for c in label_columns if c not in class_names]
        if unknown:
            raise ManifestError(
                f"label column(s) {', '.join(map(repr, unknown))} are not among the output schema's "
                f"class names ({', '.join(map(repr, class_names))})",
                column=unknown[0],
            )

    columns, count, rows = _read_rows(path, shown)
    needed = list(dict.fromkeys([*required, *label_columns, *([mask_column] if mask_column else [])]))
    known = {*needed, STUDY_DATE_COLUMN, *ATTRIBUTE_COLUMNS}
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        named = [repr(c) for c in duplicates if c in known]  # other headers are not quoted: they are the file's content
        others = len(duplicates) - len(named)
        listed = ", ".join([*named, *([f"{others} other(s)"] if others else [])])
        raise ManifestError(f"manifest {shown!r}: column(s) {listed} appear more than once")
    for column in needed:
        if column not in columns:
            raise ManifestError(f"manifest {shown!r} has no column {column!r}; it needs the columns {', '.join(needed)}", column=column)
    if not count:
        raise ManifestError(f"manifest {shown!r} is empty: no image rows")

    # Built a row at a time into arrays (``radtrust_engine.columns``): no object per row outlives the read.
    image_paths = TextBuilder()
    first_row: dict[str, int] = {}
    labels = np.zeros((count, len(label_columns)), dtype=np.int8)
    patient_ids = CodeBuilder()
    mask_paths = TextBuilder() if mask_column else None
    study_dates = CodeBuilder()
    attributes = {name: CodeBuilder() for name in ATTRIBUTE_COLUMNS}
    reader_cells = {c: CodeBuilder() for c in columns if c.startswith("reader:")}

    used = [c for c in columns if c in known]  # the cells that reach the report; PostgreSQL refuses NUL in them
    index = -1
    for index, cells in enumerate(rows()):
        row = index + 1
        if index >= count:
            raise ManifestError(f"manifest {shown!r} changed while it was read")
        for column in used:
            if isinstance(cells.get(column), str) and "\x00" in cells[column]:
                raise ManifestError(f"row {row}: column {column!r} contains a NUL character", row=row, column=column)
        for column in required:
            if column != "image_path" and cell_text(cells.get(column)) is None:
                raise ManifestError(f"row {row}: column {column!r} is empty", row=row, column=column)
        relative = _checked_relative_path(cells.get("image_path"), root_path, row)
        if relative in first_row:
            raise ManifestError(
                f"row {row}: image {relative!r} is listed twice (rows {first_row[relative]} and {row})",
                row=row,
                column="image_path",
            )
        first_row[relative] = row
        image_paths.append(relative)
        if mask_paths is not None:
            mask_paths.append(_checked_relative_path(cells.get(mask_column), root_path, row, mask_column))

        for j, column in enumerate(label_columns):
            value = _label(cells.get(column))
            if value is None:
                raise ManifestError(f"row {row}: the cell of label {column!r} is not a label; labels must be 0 or 1", row=row, column=column)
            labels[index, j] = value

        patient_ids.append(cell_text(cells.get("patient_id")) or "")
        parsed = ((STUDY_DATE_COLUMN, parse_date, study_dates), ("age", parse_age, attributes["age"]))
        for column, parse, values in parsed:
            try:
                values.append(parse(cells.get(column)))
            except ValueError as exc:
                raise ManifestError(f"row {row}: column {column!r}: {exc}", row=row, column=column) from None
        for name in ATTRIBUTE_COLUMNS[1:]:
            attributes[name].append(cell_text(cells.get(name)))
        for column, values in reader_cells.items():
            values.append(cells.get(column))
    if index + 1 != count:
        raise ManifestError(f"manifest {shown!r} changed while it was read")

    return Manifest(
        root=root_path,
        image_paths=image_paths.column(),
        label_names=tuple(label_columns),
        labels=labels,
        patient_ids=patient_ids.column(),
        study_dates=study_dates.column(),
        attributes={name: values.column() for name, values in attributes.items()},
        mask_paths=None if mask_paths is None else mask_paths.column(),
        reader_cells={c: values.column() for c, values in reader_cells.items()} or None,
    )
