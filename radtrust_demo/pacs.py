"""A generated DICOM dataset served from a PACS and read from disk, to compare the two.

``radtrust_demo.data.generate_dataset`` writes DICOM files and a manifest; a PACS dataset needs
the same labels as a table keyed by SOP Instance UID (``sop_labels``), and the disk twin needs
a manifest that, like the PACS dataset, takes demographics and scanners from the headers alone
and lists the instances in the frozen manifest's order (``header_manifest``), so that both runs
evaluate the same cases in the same order and their reports can be compared figure by figure.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom


@dataclass(frozen=True)
class DicomFile:
    path: Path  # relative to the dataset's folder
    sop_uid: str
    patient_id: str
    labels: dict[str, int]


def dicom_files(root: Path, labels: Sequence[str]) -> list[DicomFile]:
    """Every image of a generated dataset with its SOP Instance UID (from its header) and labels (from its manifest)."""
    files = []
    with (root / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            header = pydicom.dcmread(root / row["image_path"], stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            files.append(DicomFile(Path(row["image_path"]), str(header.SOPInstanceUID), row["patient_id"], {n: int(row[n]) for n in labels}))
    return files


def sop_labels(files: Sequence[DicomFile]) -> list[dict]:
    """The labels table of a PACS dataset: one row per instance, keyed by SOP Instance UID."""
    return [{"SOPInstanceUID": f.sop_uid, **f.labels} for f in files]


def header_manifest(root: Path, files: Sequence[DicomFile], order: Sequence[str], name: str = "manifest-headers.csv") -> Path:
    """A manifest of ``files`` in the order of the SOP Instance UIDs ``order`` with only paths, patients and
    labels: attributes come from the DICOM headers, as they do for the same data read from a PACS."""
    by_uid = {f.sop_uid: f for f in files}
    label_names = list(files[0].labels)
    path = root / name
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image_path", "patient_id", *label_names])
        for uid in order:
            f = by_uid[uid]
            writer.writerow([f.path.as_posix(), f.patient_id, *(f.labels[n] for n in label_names)])
    return path
