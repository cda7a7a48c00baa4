"""Stage 2 of a run as a value: the model's outputs for some manifest rows and what reading them
recorded, so that a large run can be scored in shards on several workers and merged.

How a sharded run gives the report of an unsharded one:

1. ``patient_shards`` cuts the manifest into shards of whole patients (a patient's images never
   straddle two shards), in the order patients first appear, so the cut depends on the frozen
   manifest alone and every attempt of every worker computes the same shards.
2. Each shard's cases are cut from the frozen manifest once, when the run is planned
   (``ShardCases``: their rows and image paths), and stored beside the shard, so that a shard's
   worker reads its own cases and never the whole manifest. Each shard is scored alone
   (``pipeline.score_cases``, or ``pipeline.score_rows`` with its rows where the whole manifest
   is in memory anyway) and stored as bytes (``Scored.to_bytes``): outputs, image statistics,
   conversions and skipped images per row of the run's manifest.
3. ``Scored.merge`` puts the shards back in manifest-row order, the order an unsharded run reads
   them in. The statistics stage then runs once on the merged table (``pipeline.evaluate`` with
   ``scored``), so every bootstrap draws the same patients with the same seed: the report equals
   the unsharded one but for the inference section's own timings and batch count.

The analyses that keep tensors in memory (robustness, uncertainty, explainability) need the
model and the kept images in one process; a run that names them is not sharded.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from radtrust_engine.columns import FloatRows
from radtrust_engine.drift import IMAGE_FEATURES
from radtrust_engine.loading import Manifest
from radtrust_engine.report import SkippedImage
from radtrust_engine.runner import RunOutput, RunTimings

SCORED_FORMAT = "radtrust-scored-1"
# What the inference section measures rather than computes: left out when two reports are compared.
MEASURED = ("timings", "images_per_second", "batches")


@dataclass
class Reading:
    """What the loader records while it reads: skipped images, read count, tensors kept for later analyses."""

    allowed_skips: int
    keep: frozenset[int] = frozenset()
    skipped: list[SkippedImage] = field(default_factory=list)
    conversions: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)  # (manifest row, conversions) per image converted
    kept: dict[int, np.ndarray] = field(default_factory=dict)
    reads: int = 0
    stats: FloatRows = field(default_factory=lambda: FloatRows(len(IMAGE_FEATURES)))  # per evaluated image, as read


@dataclass
class Scored:
    """The model's outputs for some manifest rows (``output.ids``) and what reading them recorded."""

    output: RunOutput
    reading: Reading

    @property
    def forward_passes(self) -> int:
        return len(self.output.ids)

    def to_bytes(self) -> bytes:
        """An ``.npz`` of plain arrays (read back with ``allow_pickle=False``); kept tensors are not stored."""
        reading, output = self.reading, self.output
        meta = {
            "format": SCORED_FORMAT,
            "allowed_skips": reading.allowed_skips,
            "reads": reading.reads,
            "skipped": [s.to_dict() for s in reading.skipped],
            "conversions": [[row, list(applied)] for row, applied in reading.conversions],
            "batches": output.batches,
            "timings": output.timings.to_dict(),
            "output_names": list(output.outputs),
        }
        buffer = io.BytesIO()
        np.savez(
            buffer,
            meta=np.asarray(json.dumps(meta)),
            ids=np.asarray(output.ids, dtype=np.int64),
            stats=reading.stats.array(),
            **{f"output_{i}": np.asarray(output.outputs[name]) for i, name in enumerate(output.outputs)},
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Scored:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            meta = json.loads(str(arrays["meta"]))
            if meta.get("format") != SCORED_FORMAT:
                raise ValueError(f"scored shard has format {meta.get('format')!r}, expected {SCORED_FORMAT}")
            ids = arrays["ids"].tolist()
            outputs = {name: arrays[f"output_{i}"] for i, name in enumerate(meta["output_names"])}
            stats = FloatRows.of(arrays["stats"])
        timings = RunTimings(**meta["timings"])
        reading = Reading(
            allowed_skips=meta["allowed_skips"],
            skipped=[SkippedImage.from_dict(s) for s in meta["skipped"]],
            conversions=[(row, tuple(applied)) for row, applied in meta["conversions"]],
            reads=meta["reads"],
            stats=stats,
        )
        return cls(output=_output(ids, outputs, timings, meta["batches"]), reading=reading)

    @classmethod
    def merge(cls, parts: Sequence[Scored]) -> Scored:
        """The parts as one, in manifest-row order (the order an unsharded run reads the rows in)."""
        if not parts:
            raise ValueError("nothing to merge: no scored shard")
        allowances = {p.reading.allowed_skips for p in parts}
        if len(allowances) != 1:
            raise ValueError("the shards were scored with different skip allowances")
        ids = np.concatenate([np.asarray(p.output.ids, dtype=np.int64) for p in parts])
        order = np.argsort(ids, kind="stable")
        scored = [p for p in parts if p.output.ids] or parts[:1]  # a shard of skipped images only has no outputs to stack
        outputs = {name: np.concatenate([p.output.outputs[name] for p in scored])[order] for name in scored[0].output.outputs}
        stats = np.concatenate([p.reading.stats.array() for p in parts])
        timings = RunTimings(**{f.name: sum(getattr(p.output.timings, f.name) for p in parts) for f in fields(RunTimings)})
        reading = Reading(
            allowed_skips=allowances.pop(),
            skipped=sorted((s for p in parts for s in p.reading.skipped), key=lambda s: s.row),
            conversions=sorted((c for p in parts for c in p.reading.conversions), key=lambda c: c[0]),
            reads=sum(p.reading.reads for p in parts),
            stats=FloatRows.of(stats[order]),
        )
        return cls(output=_output(ids[order].tolist(), outputs, timings, sum(p.output.batches for p in parts)), reading=reading)


def _output(ids: list[int], outputs: dict[str, np.ndarray], timings: RunTimings, batches: int) -> RunOutput:
    wall = timings.wall_seconds
    return RunOutput(ids=ids, outputs=outputs, timings=timings, batches=batches, images_per_second=len(ids) / wall if wall > 0 else 0.0)


@dataclass(frozen=True)
class ShardCases:
    """The cases one shard scores, cut from the run's frozen manifest when the run is planned.

    ``rows`` are their rows in the run's manifest (from 0), which the scores carry so that the
    merge puts every shard back in manifest order; ``image_paths`` are where those rows' images
    lie (relative to the dataset's folder, or the PACS cache); ``run_images`` is the length of
    the run's manifest, whose skip allowance every shard applies, as an unsharded run does.
    """

    rows: tuple[int, ...]
    image_paths: tuple[str, ...]
    run_images: int

    @classmethod
    def of(cls, manifest: Manifest, rows: Sequence[int]) -> ShardCases:
        return cls(tuple(int(r) for r in rows), tuple(manifest.image_paths[r] for r in rows), len(manifest))

    def __len__(self) -> int:
        return len(self.rows)

    def manifest(self, root: Path) -> Manifest:
        """The shard's images as a manifest under ``root``, each path checked again when opened.

        Scoring reads images only: labels, patients and attributes stay in the run's manifest,
        on which the statistics stage runs once for all shards."""
        n = len(self.rows)
        return Manifest(
            root=Path(root).resolve(),
            image_paths=list(self.image_paths),
            label_names=(),
            labels=np.zeros((n, 0), dtype=np.int8),
            patient_ids=[""] * n,
            study_dates=[None] * n,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"rows": list(self.rows), "image_paths": list(self.image_paths), "run_images": self.run_images}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShardCases:
        cases = cls(tuple(int(r) for r in data["rows"]), tuple(str(p) for p in data["image_paths"]), int(data["run_images"]))
        if len(cases.rows) != len(cases.image_paths) or any(not 0 <= r < cases.run_images for r in cases.rows):
            raise ValueError("a shard's cases name one image path per row, each row within the run's manifest")
        return cases


def patient_shards(patient_ids: Sequence[str], images_per_shard: int) -> list[list[int]]:
    """Manifest rows cut into shards of whole patients, about ``images_per_shard`` images each (a
    patient with more images makes a larger shard), patients in the order they first appear."""
    if images_per_shard < 1:
        raise ValueError("images_per_shard must be at least 1")
    by_patient: dict[str, list[int]] = {}
    for row, patient in enumerate(patient_ids):
        by_patient.setdefault(str(patient), []).append(row)
    shards: list[list[int]] = [[]]
    for rows in by_patient.values():
        if shards[-1] and len(shards[-1]) + len(rows) > images_per_shard:
            shards.append([])
        shards[-1].extend(rows)
    return [sorted(rows) for rows in shards if rows]


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """A report's JSON without what its inference measured (seconds, rates, batch count): what
    a sharded run and an unsharded one on the same data and seed must agree on exactly."""
    inference = {k: v for k, v in (report.get("inference") or {}).items() if k not in MEASURED}
    return {**report, "inference": inference}
