"""Payloads that are not acceptable ONNX models, shared by the engine and the API upload tests."""

from __future__ import annotations

import io
import pickle
import random
import struct
import zipfile

from onnx import TensorProto, helper


def graph_with_undefined_input() -> bytes:
    node = helper.make_node("Relu", ["undefined"], ["y"])
    graph = helper.make_graph(
        [node],
        "broken",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def graph_without_nodes() -> bytes:
    graph = helper.make_graph([], "empty", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def png_bytes() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0) + b"\0" * 4


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("weights.txt", "not a model")
    return buffer.getvalue()


def torch_save_bytes() -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(torch.zeros(3), buffer)
    return buffer.getvalue()


def malformed(onnx_files) -> dict[str, tuple[bytes, str]]:
    """Payloads that are not ONNX models, each with the phrase its refusal must contain."""
    good = onnx_files["inline"][0].read_bytes()
    return {
        "random_bytes": (random.Random(0).randbytes(4096), "could not be parsed"),
        "truncated_protobuf": (good[: len(good) // 2], "could not be parsed"),
        "truncated_by_one_byte": (good[:-1], "could not be parsed"),
        "png": (png_bytes(), "could not be parsed"),
        "text": (b"hello, this is a text file and not a model\n", "could not be parsed"),
        "empty": (b"", "The model file is empty"),
        "pickle": (pickle.dumps({"weights": [1.0, 2.0]}), "Python pickle, which RadTrust never loads"),
        "zipfile": (zip_bytes(), "zip archive"),
        "torch_save": (torch_save_bytes(), "zip archive"),
        "undefined_input": (graph_with_undefined_input(), "onnx.checker rejected the model"),
        "no_nodes": (graph_without_nodes(), "its graph has no nodes"),
    }


MALFORMED_KINDS = [
    "random_bytes",
    "truncated_protobuf",
    "truncated_by_one_byte",
    "png",
    "text",
    "empty",
    "pickle",
    "zipfile",
    "torch_save",
    "undefined_input",
    "no_nodes",
]
