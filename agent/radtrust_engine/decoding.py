"""Image decoding for a run: on the loader thread, or in a pool of processes feeding it in order.

Decoding and resizing a 512x512 DICOM image costs about 1.6-2 ms of one core, so a loader
thread caps a run at a few hundred images per second, far below what a GPU takes. With
``processes`` >= 1 the images are decoded in that many processes (``loader_processes``,
``RADTRUST_LOADER_PROCESSES`` on a worker):

1. Rows are cut into chunks of ``chunk`` images; each chunk is one task of the pool.
2. At most ``2 * processes`` chunks are in flight, so memory stays bounded whatever the
   manifest's length (a chunk's tensors wait for the consumer, never the whole run).
3. Chunks are yielded in row order, so the tensors reach the model in exactly the order
   the loader thread would give them: a run's report does not depend on the setting.
4. A process never raises for an image: what went wrong travels back as data
   (``Decoded.problem`` for an image a run skips, ``Decoded.unfit`` for one the spec
   cannot be applied to) and the caller decides, as it does on the thread.

Processes are started with ``spawn``: a worker holds threads (heartbeats, ONNX Runtime)
that ``fork`` would copy in an unknown state.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from radtrust_engine.drift import image_summary
from radtrust_engine.images import ImageError, load_image
from radtrust_engine.preprocessing import Preprocessing


@dataclass(frozen=True)
class Decoded:
    """One manifest row read: its tensor after the spec, the raw image's statistics and the
    conversions reading applied; or why it was skipped (``problem``: reason and kind) or why
    the spec could not be applied (``unfit``)."""

    row: int  # manifest row, from 0
    tensor: np.ndarray | None = None
    stats: tuple[float, float, float, float] | None = None
    conversions: tuple[str, ...] = ()
    problem: tuple[str, str] | None = None
    unfit: str | None = None


def decode(row: int, path: str, preprocessing: Preprocessing) -> Decoded:
    """Read and preprocess one image; every failure is returned, not raised."""
    try:
        image = load_image(path, preprocessing, attributes=False)  # the run read them in its headers stage
    except ImageError as exc:
        return Decoded(row=row, problem=(exc.reason, str(exc.kind)))
    stats = image_summary(image.array)
    try:
        tensor = preprocessing.apply(image.array)
    except ValueError as exc:
        return Decoded(row=row, stats=stats, conversions=image.conversions, unfit=str(exc))
    return Decoded(row=row, tensor=tensor, stats=stats, conversions=image.conversions)


def _decode_chunk(rows: Sequence[int], paths: Sequence[str], preprocessing: Preprocessing) -> list[Decoded]:
    return [decode(row, path, preprocessing) for row, path in zip(rows, paths, strict=True)]


def decoded(rows: Sequence[int], paths: Sequence[str], preprocessing: Preprocessing, *, processes: int = 0, chunk: int = 32) -> Iterator[Decoded]:
    """Each row decoded, in the order given (see the module docstring); ``processes`` 0 decodes here."""
    if processes < 1:
        for row, path in zip(rows, paths, strict=True):
            yield decode(row, path, preprocessing)
        return
    chunk = max(1, chunk)
    starts = iter(range(0, len(rows), chunk))
    pending: deque[Future] = deque()
    with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            for start in starts:
                pending.append(pool.submit(_decode_chunk, rows[start : start + chunk], paths[start : start + chunk], preprocessing))
                if len(pending) >= 2 * processes:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        finally:  # the consumer stopped early (a failure, a cancel): drop what was not started
            for future in pending:
                future.cancel()
