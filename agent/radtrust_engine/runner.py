"""ONNX Runtime runner: device choice, verified loading, batched inference overlapped with loading.

Plain Python, NumPy and onnxruntime (no Django), so the Celery task, the
benchmark (``pipeline_vs_bare_ort``) and a site agent run models the same way.

How loading overlaps with compute (``run_batches``):

1. The caller hands an iterator of ``(ids, batch)``; reading and preprocessing
   happen inside it. A background thread drains it into a bounded queue
   (``prefetch`` batches), so at most that many batches wait in memory.
2. The main thread takes batches off the queue and runs the session. ONNX
   Runtime releases the GIL during ``run``, so the producer keeps reading
   while the model computes.
3. The producer ends with a sentinel: ``_DONE``, or ``_Failure`` carrying the
   exception it met, which the main thread re-raises unchanged (same type,
   message and traceback).
4. If the main thread stops early (a model error, bad outputs, an interrupt)
   it sets a stop event; the producer checks it between batches and while
   waiting for room in the queue, closes the iterator and exits. The thread is
   always joined before ``run_batches`` returns or raises.
"""

from __future__ import annotations

import os
import platform
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from radtrust_engine.artifacts import artifact_dir, verify_stored
from radtrust_engine.failures import FailureCode

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_FIRST_IDS = 5  # how many offending case ids an error message names
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


class RunnerError(Exception):
    """A reason a validation run fails; ``reason`` is a stable code to store on the run."""

    reason: str = FailureCode.RUNNER_ERROR


class OutputError(RunnerError):
    """The model produced NaN or infinite values for some cases."""

    reason = FailureCode.NON_FINITE_OUTPUT

    def __init__(self, count: int, total: int, first_ids: list) -> None:
        self.count = count
        self.total = total
        self.first_ids = first_ids
        shown = ", ".join(str(i) for i in first_ids)
        more = ", ..." if count > len(first_ids) else ""
        super().__init__(
            f"The model returned NaN or infinite outputs for {count} of {total} cases (first: {shown}{more}); "
            "check the preprocessing spec and the exported model."
        )


class ArtifactMismatch(RunnerError):
    """The stored artifact no longer matches the hashes recorded at registration; it is never loaded."""

    reason = FailureCode.ARTIFACT_MISMATCH

    def __init__(self, sha256: str, problems: list[str]) -> None:
        self.sha256 = sha256
        self.problems = problems
        super().__init__(f"Artifact {sha256[:12]} failed verification and was not loaded: {'; '.join(problems)}.")


@dataclass(frozen=True)
class Device:
    """Where inference runs: the providers asked for (or, after ``open_session``, really used) and the hardware name."""

    providers: list[str]
    name: str
    threads: int

    @property
    def kind(self) -> str:
        return "cuda" if self.providers and self.providers[0] == CUDA else "cpu"

    def to_dict(self) -> dict:
        return {**asdict(self), "kind": self.kind}


@dataclass
class ModelSession:
    """An ONNX Runtime session with its signature and the device it really runs on."""

    session: Any  # onnxruntime.InferenceSession
    device: Device
    input_name: str
    input_dtype: type
    output_names: list[str]
    input_shape: list = field(default_factory=list)  # as ONNX declares it: ints, or names for dynamic dims
    forward_passes: int = field(default=0, compare=False)  # images run through the model since it was opened

    def forward(self, batch: np.ndarray, outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        """The named outputs (all by default) for ``batch``, cast to the model's input type.

        Every model call of a run goes through here and counts one forward pass
        per image, so a run can say what its inference and each analysis cost
        the model (``forward_passes`` in the report's inference section).
        """
        results = self.session.run(list(outputs or self.output_names), {self.input_name: np.ascontiguousarray(batch, dtype=self.input_dtype)})
        self.forward_passes += len(batch)
        return results

    def to_dict(self) -> dict:
        return {
            "device": self.device.to_dict(),
            "input_name": self.input_name,
            "input_shape": self.input_shape,
            "output_names": self.output_names,
        }


@dataclass(frozen=True)
class RunTimings:
    """Seconds spent: waiting for the next batch, in the model, in the producer's iterator, and overall."""

    load_wait_seconds: float
    compute_seconds: float
    produce_seconds: float
    wall_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunOutput:
    """Model outputs for every case, in the order the batches came, with the case ids and timings."""

    ids: list
    outputs: dict[str, np.ndarray]
    timings: RunTimings
    batches: int
    images_per_second: float

    def to_dict(self) -> dict:
        """JSON-ready summary; the arrays themselves stay in ``outputs``."""
        return {
            "cases": len(self.ids),
            "batches": self.batches,
            "output_shapes": {name: list(array.shape) for name, array in self.outputs.items()},
            "timings": self.timings.to_dict(),
            "images_per_second": self.images_per_second,
        }


@dataclass(frozen=True)
class Throughput:
    """Bare model speed with inputs already in memory: the reference the pipeline is measured against."""

    images_per_second: float
    batch_size: int
    repeats: int
    seconds: float
    device: Device = field(compare=False)

    def to_dict(self) -> dict:
        return {**asdict(self), "device": self.device.to_dict()}


# --- Device and session ------------------------------------------------------------


def _cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def _gpu_name() -> str:
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "CUDA GPU"
    names = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return names[0] if result.returncode == 0 and names else "CUDA GPU"


def select_device(prefer_gpu: bool = True, *, threads: int | None = None) -> Device:
    """CUDA when asked for and onnxruntime offers it (onnxruntime-gpu), the CPU otherwise."""
    import onnxruntime as ort  # heavy; loaded when a model runs

    threads = threads or _cpu_threads()
    if prefer_gpu and CUDA in ort.get_available_providers():
        return Device(providers=[CUDA, CPU], name=_gpu_name(), threads=threads)
    return Device(providers=[CPU], name=_cpu_name(), threads=threads)


def open_session(model_path: Path, device: Device, *, intra_op_threads: int | None = None) -> ModelSession:
    """Open a session with full graph optimisation; the device returned is what the session really uses.

    ONNX Runtime falls back to the CPU quietly when CUDA cannot start, so the
    providers are read back from the session rather than trusted from the request.
    """
    import onnxruntime as ort  # heavy; loaded when a model runs

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra_op_threads or device.threads
    options.inter_op_num_threads = 1
    # ONNX Runtime's intra-op threads spin-wait for work by default: between two operators, and
    # while the loader decodes the next batch, they keep every core busy and take the loader's
    # time. Sleeping threads leave the cores to the loader and cost the model itself ~nothing.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model_path), sess_options=options, providers=list(device.providers))
    used = list(session.get_providers())
    if used and used[0] != device.providers[0]:  # asked for CUDA, got the CPU
        actual = Device(providers=used, name=_gpu_name() if used[0] == CUDA else _cpu_name(), threads=device.threads)
    else:
        actual = replace(device, providers=used)
    (model_input,) = session.get_inputs()[:1]
    return ModelSession(
        session=session,
        device=actual,
        input_name=model_input.name,
        input_dtype=_ORT_DTYPES.get(model_input.type, np.float32),
        output_names=[o.name for o in session.get_outputs()],
        input_shape=list(model_input.shape),
    )


def load_verified(root: Path, sha256: str, files: list[dict], device: Device, *, intra_op_threads: int | None = None) -> ModelSession:
    """Re-hash the stored artifact and open it only if every file still matches its registered sha256."""
    problems = verify_stored(Path(root), sha256, files)
    if problems:
        raise ArtifactMismatch(sha256, problems)
    model = next((f for f in files if f.get("role") == "model"), None)
    if model is None:
        raise ArtifactMismatch(sha256, ["the file list names no model file"])
    return open_session(artifact_dir(Path(root), sha256) / model["name"], device, intra_op_threads=intra_op_threads)


# --- Inference ---------------------------------------------------------------------

_DONE = object()


@dataclass
class _Failure:
    error: BaseException


class _Producer(threading.Thread):
    """Drains the caller's iterator into a bounded queue until done, failed or told to stop."""

    def __init__(self, batches: Iterable, slots: queue.Queue, stop: threading.Event) -> None:
        super().__init__(name="radtrust-batch-producer", daemon=True)
        self._batches = batches
        self._queue = slots
        self._stop_event = stop
        self.produce_seconds = 0.0

    def _put(self, item: object) -> bool:
        while not self._stop_event.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        iterator = iter(self._batches)
        try:
            while not self._stop_event.is_set():
                started = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    break
                finally:
                    self.produce_seconds += time.perf_counter() - started
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the main thread, which re-raises it
            self._put(_Failure(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # a generator's cleanup failing must not hide the run's own outcome
                    pass


def _non_finite_rows(array: np.ndarray) -> np.ndarray:
    if not np.issubdtype(array.dtype, np.floating) or array.size == 0:
        return np.zeros(array.shape[0] if array.ndim else 0, dtype=bool)
    finite = np.isfinite(array)
    return ~finite.reshape(finite.shape[0], -1).all(axis=1) if array.ndim else ~finite.reshape(1)


def run_batches(
    model: ModelSession,
    batches: Iterable[tuple[Sequence, np.ndarray]],
    *,
    prefetch: int = 2,
    on_batch: Callable[[int], None] | None = None,
) -> RunOutput:
    """Run every batch through the model while the next ones are loaded (see the module docstring).

    ``on_batch(cases_done)`` is called on the calling thread after each batch
    (progress, cancellation: whatever it raises stops the run cleanly).
    Raises the producer's own exception if loading fails, and ``OutputError``
    if any case has a NaN or infinite output.
    """
    if prefetch < 1:
        raise ValueError("prefetch must be at least 1.")
    slots: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    producer = _Producer(batches, slots, stop)
    ids: list = []
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in model.output_names}
    bad_ids: list = []
    bad_count = 0
    load_wait = compute = 0.0
    count = 0
    started = time.perf_counter()
    producer.start()
    try:
        while True:
            waited = time.perf_counter()
            item = slots.get()
            load_wait += time.perf_counter() - waited
            if item is _DONE:
                break
            if isinstance(item, _Failure):
                raise item.error
            batch_ids, batch = item
            batch_ids = list(batch_ids)
            if len(batch_ids) != len(batch):
                raise ValueError(f"Batch {count} has {len(batch_ids)} ids for {len(batch)} images.")
            batch = np.ascontiguousarray(batch, dtype=model.input_dtype)
            computing = time.perf_counter()
            results = model.forward(batch)
            compute += time.perf_counter() - computing
            bad = np.zeros(len(batch), dtype=bool)
            for name, result in zip(model.output_names, results):
                chunks[name].append(result)
                bad |= _non_finite_rows(result)
            if bad.any():
                bad_count += int(bad.sum())
                bad_ids.extend(batch_ids[i] for i in np.flatnonzero(bad)[: _FIRST_IDS - len(bad_ids)])
            ids.extend(batch_ids)
            count += 1
            if on_batch is not None:
                on_batch(len(ids))
    finally:
        stop.set()
        while producer.is_alive():  # unblock a producer waiting for room, then wait for it to end
            try:
                slots.get_nowait()
            except queue.Empty:
                producer.join(timeout=0.05)
        producer.join()
    wall = time.perf_counter() - started
    if bad_count:
        raise OutputError(bad_count, len(ids), bad_ids)
    outputs = {name: np.concatenate(parts) if parts else np.empty((0,)) for name, parts in chunks.items()}
    return RunOutput(
        ids=ids,
        outputs=outputs,
        timings=RunTimings(load_wait, compute, producer.produce_seconds, wall),
        batches=count,
        images_per_second=len(ids) / wall if wall > 0 else 0.0,
    )


def bare_throughput(model: ModelSession, batch: np.ndarray, repeats: int, *, warmup: int = 1) -> Throughput:
    """Images/s of ``session.run`` alone on one in-memory batch (after ``warmup`` untimed runs)."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1.")
    batch = np.ascontiguousarray(batch, dtype=model.input_dtype)
    feed = {model.input_name: batch}
    for _ in range(warmup):
        model.session.run(model.output_names, feed)
    started = time.perf_counter()
    for _ in range(repeats):
        model.session.run(model.output_names, feed)
    seconds = time.perf_counter() - started
    return Throughput(
        images_per_second=len(batch) * repeats / seconds if seconds > 0 else 0.0,
        batch_size=len(batch),
        repeats=repeats,
        seconds=seconds,
        device=model.device,
    )
