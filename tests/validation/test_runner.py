"""The ONNX Runtime runner: device choice, batched inference overlapped with loading, bad outputs and artifacts."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from radtrust_demo.networks import export_tiny_classifier
from radtrust_engine.artifacts import artifact_dir, ingest
from radtrust_engine.runner import (
    CPU,
    CUDA,
    ArtifactMismatch,
    OutputError,
    bare_throughput,
    load_verified,
    open_session,
    run_batches,
    select_device,
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    (path,) = export_tiny_classifier(tmp_path_factory.mktemp("tiny"))
    return path


@pytest.fixture(scope="module")
def cpu():
    return select_device(prefer_gpu=False)


@pytest.fixture(scope="module")
def model(tiny_model, cpu):
    return open_session(tiny_model, cpu)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 1, 64, 64)).astype(np.float32)


def _slices(images: np.ndarray, sizes: list[int]):
    start = 0
    for size in sizes:
        yield [f"case-{i}" for i in range(start, start + size)], images[start : start + size]
        start += size


def _log_model(folder: Path) -> Path:
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("Log", ["x"], ["y"])],
        "log",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    )
    path = folder / "log.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_cpu_device_names_the_processor_and_records_providers(cpu, model):
    assert cpu.providers == [CPU]
    assert cpu.kind == "cpu"
    assert cpu.name and cpu.threads >= 1
    assert model.device.providers == [CPU]
    assert model.device.to_dict()["kind"] == "cpu"
    preferred = select_device(prefer_gpu=True)
    assert (preferred.providers[0] == CUDA) == (CUDA in ort.get_available_providers())


def test_run_batches_equals_one_direct_run_in_order(model):
    images = _images(53)
    sizes = [7, 20, 1, 16, 9]
    result = run_batches(model, _slices(images, sizes), prefetch=2)
    (expected,) = model.session.run(["logits"], {"image": images})
    assert result.ids == [f"case-{i}" for i in range(53)]
    assert result.batches == len(sizes)
    np.testing.assert_allclose(result.outputs["logits"], expected, rtol=1e-5, atol=1e-6)
    assert result.to_dict()["output_shapes"] == {"logits": [53, 1]}
    assert result.images_per_second > 0


def test_loading_overlaps_with_compute(model):
    # The consumer holds each batch until the producer has loaded the next one: that only
    # finishes if loading runs on its own thread while the consumer works (no wall-time
    # threshold, so a fast or a loaded machine cannot flip the result).
    images = _images(16)
    loaded = [threading.Event() for _ in range(6)]
    overlapped = []

    def producer():
        for index in range(6):
            loaded[index].set()
            yield [f"{index}-{i}" for i in range(16)], images

    def hold_until_next_is_loaded(cases_done):
        following = cases_done // 16
        if following < len(loaded):
            overlapped.append(loaded[following].wait(timeout=10))

    result = run_batches(model, producer(), prefetch=2, on_batch=hold_until_next_is_loaded)
    assert result.batches == 6
    assert overlapped == [True] * 5


def test_producer_error_propagates_and_leaves_no_thread(model):
    baseline = threading.active_count()

    def failing():
        yield from _slices(_images(32), [16, 16])
        raise FileNotFoundError("case-32.dcm is missing")

    with pytest.raises(FileNotFoundError, match="case-32.dcm is missing"):
        run_batches(model, failing(), prefetch=1)
    assert threading.active_count() == baseline


def test_model_error_stops_an_endless_producer(model):
    baseline = threading.active_count()

    def endless():
        while True:  # the wrong image size: the model refuses the first batch
            yield ["a", "b"], np.zeros((2, 1, 32, 32), np.float32)

    with pytest.raises(Exception, match="(?i)dimension|shape"):
        run_batches(model, endless(), prefetch=2)
    assert threading.active_count() == baseline


def test_nan_or_infinite_outputs_raise_output_error(tmp_path, cpu):
    log = open_session(_log_model(tmp_path), cpu)
    values = np.ones((6, 3), np.float32)
    values[1, 0] = -1.0  # log(-1) = NaN
    values[4, 2] = 0.0  # log(0) = -inf
    batches = [(["p1", "p2", "p3"], values[:3]), (["p4", "p5", "p6"], values[3:])]
    with pytest.raises(OutputError, match=r"2 of 6 cases \(first: p2, p5\)") as caught:
        run_batches(log, iter(batches))
    assert caught.value.reason == "non_finite_output"
    assert run_batches(log, iter([(["ok"], np.ones((1, 3), np.float32))])).ids == ["ok"]


def test_tampered_artifact_is_refused_before_loading(tmp_path, tiny_model, cpu):
    root = tmp_path / "artifacts"
    with open(tiny_model, "rb") as handle:
        info = ingest(root, [("model.onnx", handle)], max_bytes=10**8)
    files = info.to_dict()["files"]
    model = load_verified(root, info.sha256, files, cpu)
    assert model.output_names == ["logits"]

    stored = artifact_dir(root, info.sha256) / "model.onnx"
    stored.chmod(0o644)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    with pytest.raises(ArtifactMismatch, match="model.onnx does not match its sha256") as caught:
        load_verified(root, info.sha256, files, cpu)
    assert caught.value.reason == "artifact_mismatch"


def test_bare_throughput_measures_in_memory_batches(model):
    result = bare_throughput(model, _images(32), repeats=3)
    assert result.batch_size == 32 and result.repeats == 3
    assert result.images_per_second > 0
    assert result.to_dict()["device"]["providers"] == [CPU]
