"""A manifest's per-case columns held as arrays: they read like the lists they replace, give the
same strata, and a large manifest holds a few bytes per image."""

from __future__ import annotations

import pathlib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from radtrust_engine.columns import MISSING, CodedColumn, FloatRows, TextColumn
from radtrust_engine.images import fill_attributes_from_headers
from radtrust_engine.loading import ATTRIBUTE_COLUMNS, Manifest, read_manifest
from radtrust_engine.stratification import age_band


def test_text_columns_read_like_lists_of_strings():
    values = ["img/a.png", "", "dossier é/ü.dcm", "img/a.png", "x"]
    column = TextColumn.of(values)

    assert column == values and list(column) == values and len(column) == 5
    assert (column[2], column[-1], column[1:4]) == ("dossier é/ü.dcm", "x", values[1:4])
    assert column.index("x") == 4 and "img/a.png" in column
    assert np.array_equal(np.asarray(column), np.asarray(values))
    with pytest.raises(IndexError):
        column[5]
    assert TextColumn.of([]) == []


def test_coded_columns_keep_each_value_once_and_none_as_missing():
    values = ["F", None, "M", "F", None, "F"]
    column = CodedColumn.of(values)

    assert column == values and column[1] is None and column[-1] == "F"
    assert list(column.categories) == ["F", "M"]
    assert column.codes.tolist() == [0, MISSING, 1, 0, MISSING, 0]
    assert column.missing(np.array([1, 4])) and not column.missing(np.array([1, 2]))
    assert np.asarray(column).tolist() == values and np.asarray(column).dtype == object
    assert column.values(np.array([0, 2])).tolist() == ["F", "M"]
    assert column.values(np.array([0, 2])).dtype.kind == "U"  # what np.asarray of the text gives
    assert column.values(np.array([1, 2])).tolist() == [None, "M"]


def test_coded_columns_keep_values_that_are_not_text_as_they_are():
    column = CodedColumn.of([1, 2.5, None, 1])

    assert column == [1, 2.5, None, 1] and type(column[0]) is int
    assert np.array_equal(column.values(np.array([0, 1, 3])), np.asarray([1, 2.5, 1]))


def test_a_conversion_of_the_distinct_values_equals_converting_every_row():
    ages = [45.0, None, 17.0, 45.0, 70.5, None, 30.0]
    column = CodedColumn.of(ages)
    rows = np.array([6, 0, 1, 4, 2, 0])

    expected = age_band([ages[i] for i in rows], (18, 40, 65))
    assert column.mapped(rows, lambda values: age_band(values, (18, 40, 65))).tolist() == expected.tolist()


def test_float_rows_read_back_as_tuples_and_as_an_array():
    rows = FloatRows(4)
    rows.append((1.0, 2.0, 3.0, 4.0))
    rows.append((0.1, 0.2, 0.3, 0.4))

    assert list(rows) == [(1.0, 2.0, 3.0, 4.0), (0.1, 0.2, 0.3, 0.4)] and len(rows) == 2
    assert FloatRows.of(rows.array()) == rows
    assert rows.array()[1].tolist() == [0.1, 0.2, 0.3, 0.4]
    with pytest.raises(ValueError, match="4 are expected"):
        rows.append((1.0, 2.0))


def test_a_manifest_given_as_lists_holds_them_as_columns_that_compare_equal():
    manifest = Manifest(
        root=Path("/data"),
        image_paths=["a.png", "b.png"],
        label_names=("finding",),
        labels=np.array([[0], [1]], dtype=np.int8),
        patient_ids=["P1", "P1"],
        study_dates=[None, "2024-01-05"],
        attributes={"sex": ["F", None]},
    )

    assert isinstance(manifest.image_paths, TextColumn) and isinstance(manifest.patient_ids, CodedColumn)
    assert manifest.to_dict()["attributes"] == {"sex": ["F", None]}
    assert manifest.to_dict()["study_dates"] == [None, "2024-01-05"]
    assert manifest.patients([1, 0]).tolist() == ["P1", "P1"]


def _write_manifest(folder: Path, rows: int) -> Path:
    lines = ["image_path,patient_id,finding,age,sex,site,scanner_manufacturer,study_date"]
    lines += [f"img/{i}.png,P{i // 2},{i % 2},{20 + i % 70},{'FM'[i % 2]},site-{i % 3},Vendor {i % 4},2024-01-{1 + i % 28:02d}" for i in range(rows)]
    path = folder / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_large_manifest_holds_a_few_bytes_per_image(tmp_path):
    rows = 10_000
    path = _write_manifest(tmp_path, rows)  # the images need not exist to be listed

    tracemalloc.start()
    try:
        manifest = read_manifest(path, tmp_path, label_columns=["finding"])
        # pathlib interns every name it parses: its table's growth is the process's, not the manifest's
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, pathlib.__file__)])
    finally:
        tracemalloc.stop()

    assert len(manifest) == rows and manifest.patient_ids[rows - 1] == f"P{(rows - 1) // 2}"
    held = sum(stat.size for stat in snapshot.statistics("filename"))
    assert held / rows < 100  # as lists of Python objects it held about 330 bytes per image


def test_headers_that_fill_nothing_leave_the_columns_as_they_were(tmp_path):
    manifest = read_manifest(_write_manifest(tmp_path, 10), tmp_path, label_columns=["finding"])

    filled = fill_attributes_from_headers(manifest)  # PNG rows: no header is read

    assert all(filled.manifest.attributes[name] is manifest.attributes[name] for name in ATTRIBUTE_COLUMNS)
    assert filled.filled == dict.fromkeys(filled.filled, 0)
