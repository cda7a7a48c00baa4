"""ONNX artifacts: validate without executing, hash as a set, store content-addressed.

A model may come with external data files (torch's exporter writes weights to
``model.onnx.data`` by default; above 2 GB it must). The set is verified together:
every file the graph references must be uploaded, nothing else may be, and every
tensor's byte range must lie inside its file. Nothing here imports Django, so a
site agent can verify a downloaded artifact with the same code.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

from radtrust_engine.paths import without_paths

_CHUNK = 1024 * 1024
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
# Formats whose loaders unpickle: refused whatever their content.
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".joblib", ".ckpt", ".npz", ".sav", ".h5")
_ZIP_MAGIC = b"PK\x03\x04"
# Initializers of these types are shapes, axes and indices (int64 for Reshape), not learned weights.
_NON_PARAMETER_TYPES = frozenset({6, 7, 9, 12, 13})  # INT32, INT64, BOOL, UINT32, UINT64
# Types stored packed, several values to a byte: UINT4, INT4, FLOAT4E2M1, UINT2, INT2, FLOAT6E2M3, FLOAT6E3M2.
_PACKED_BITS = {21: 4, 22: 4, 23: 4, 25: 2, 26: 2, 27: 6, 28: 6}


class ArtifactError(ValueError):
    """The upload is not an acceptable ONNX artifact; the message says what to fix."""

    def __init__(self, message: str, *, field: str = "artifact") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class StoredFile:
    name: str
    sha256: str
    size: int
    role: str  # "model" or "external_data"


@dataclass(frozen=True)
class ArtifactInfo:
    """What the registry keeps about an artifact, read from the graph and the bytes."""

    sha256: str
    files: list[StoredFile]
    size: int
    opset: int
    ir_version: int
    producer: str
    inputs: list[dict]
    outputs: list[dict]
    parameter_count: int
    external_data: bool = field(default=False)

    def to_dict(self) -> dict:
        return asdict(self)


def set_sha256(files: Iterable[StoredFile]) -> str:
    """One hash for the whole set: sha256 of ``"<sha256>  <name>\\n"`` lines sorted by name."""
    lines = "".join(f"{f.sha256}  {f.name}\n" for f in sorted(files, key=lambda f: f.name))
    return hashlib.sha256(lines.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_name(name: str, *, field: str) -> str:
    base = os.path.basename(name or "")
    if base != name or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise ArtifactError(f"File name {name!r} is not allowed: use letters, digits, '.', '_' or '-' and no folders.", field=field)
    if name.lower().endswith(_PICKLE_SUFFIXES):
        raise ArtifactError(
            f"{name!r} is a format that loads by unpickling; RadTrust accepts only ONNX (.onnx) and its external data files.",
            field=field,
        )
    return name


def _dims(value_info) -> list:
    shape = value_info.type.tensor_type.shape
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else None) for d in shape.dim]


def _signature(values, initializer_names: set[str]) -> list[dict]:
    from onnx import helper  # onnx is heavy and not installed with the site agent; only uploads are inspected with it

    out = []
    for v in values:
        if v.name in initializer_names:
            continue
        elem = v.type.tensor_type.elem_type
        out.append({"name": v.name, "dtype": helper.tensor_dtype_to_np_dtype(elem).name if elem else "unknown", "shape": _dims(v)})
    return out


def inspect_onnx(model_path: Path, data_paths: list[Path]) -> ArtifactInfo:
    """Validate an ONNX model and its external data files in one folder; never runs the model.

    1. Refuse zip and pickle payloads before parsing.
    2. Parse the protobuf without loading external data.
    3. Compare the referenced external files with those uploaded: none missing, none extra.
    4. Check every external tensor's byte range against its file.
    5. Run ``onnx.checker`` on the path (it follows external data, and works above 2 GB).
    6. Read the signature, opset, IR version and parameter count; hash the set.
    """
    import onnx  # onnx is heavy and not installed with the site agent; only uploads are inspected with it
    from google.protobuf.message import DecodeError  # comes with onnx (see above)
    from onnx import external_data_helper  # onnx is heavy and not installed with the site agent; only uploads are inspected with it

    with open(model_path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(_ZIP_MAGIC):
        raise ArtifactError("This is a zip archive (a PyTorch checkpoint?), not an ONNX model: export it with torch.onnx.export.")
    if head[:1] == b"\x80" and head[1:2] in {b"\x02", b"\x03", b"\x04", b"\x05"}:
        raise ArtifactError("This is a Python pickle, which RadTrust never loads: upload the model exported to ONNX.")
    if not head:
        raise ArtifactError("The model file is empty.")
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as exc:
        raise ArtifactError(f"This file is not a valid ONNX model: it could not be parsed ({exc.__class__.__name__}).") from exc
    if not model.graph.node:
        raise ArtifactError("This file is not a valid ONNX model: its graph has no nodes.")

    tensors = list(external_data_helper._get_all_tensors(model))
    external = [t for t in tensors if external_data_helper.uses_external_data(t)]
    referenced: dict[str, list] = {}
    for tensor in external:
        try:
            info = external_data_helper.ExternalDataInfo(tensor)
        except ValueError as exc:  # a negative or non-integer offset or length
            raise ArtifactError(f"Tensor {tensor.name!r} has an invalid external data entry: {exc}.") from exc
        location = info.location or ""
        if os.path.basename(location) != location or ".." in location or not location:
            raise ArtifactError(f"Tensor {tensor.name!r} points to external data outside the model folder ({location!r}).")
        referenced.setdefault(location, []).append((tensor, info))
    uploaded = {p.name: p for p in data_paths}
    missing = sorted(set(referenced) - set(uploaded))
    extra = sorted(set(uploaded) - set(referenced))
    if missing:
        raise ArtifactError(f"The model references external data files that were not uploaded: {', '.join(missing)}.", field="external_data")
    if extra:
        raise ArtifactError(f"These files are not referenced by the model: {', '.join(extra)}. Upload only its external data.", field="external_data")
    for location, entries in referenced.items():
        size = uploaded[location].stat().st_size
        for tensor, info in entries:
            needed = _tensor_nbytes(tensor)
            if info.length is not None and needed is not None and info.length != needed:
                raise ArtifactError(
                    f"Tensor {tensor.name!r} declares {info.length} bytes of external data, but its shape and type need {needed}: re-export the model."
                )
            end = (info.offset or 0) + (info.length if info.length is not None else (needed or 0))
            if end > size:
                raise ArtifactError(
                    f"External data file {location!r} is too short for tensor {tensor.name!r} (needs {end} bytes, has {size}).",
                    field="external_data",
                )

    try:
        onnx.checker.check_model(str(model_path))
    except onnx.checker.ValidationError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid graph"
        first_line = without_paths(first_line, model_path, *data_paths, model_path.parent)  # not the staging folder's path
        raise ArtifactError(f"onnx.checker rejected the model: {first_line[:300]}") from exc

    initializer_names = {t.name for t in model.graph.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in {"", "ai.onnx"}), 0)
    if not opset:
        raise ArtifactError("The model declares no opset for the default ONNX domain.")
    parameter_count = sum(_numel(t.dims) for t in model.graph.initializer if t.data_type not in _NON_PARAMETER_TYPES)
    files = [StoredFile(model_path.name, file_sha256(model_path), model_path.stat().st_size, "model")]
    files += [StoredFile(p.name, file_sha256(p), p.stat().st_size, "external_data") for p in sorted(data_paths, key=lambda p: p.name)]
    return ArtifactInfo(
        sha256=set_sha256(files),
        files=files,
        size=sum(f.size for f in files),
        opset=opset,
        ir_version=model.ir_version,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=_signature(model.graph.input, initializer_names),
        outputs=_signature(model.graph.output, set()),
        parameter_count=parameter_count,
        external_data=bool(external),
    )


def _numel(dims) -> int:
    count = 1
    for d in dims:
        count *= int(d)
    return count


def _tensor_nbytes(tensor) -> int | None:
    """Bytes of the tensor's raw data; None where the type has no fixed width (strings, undefined)."""
    from onnx import TensorProto, helper  # onnx is heavy and not installed with the site agent; only uploads are inspected with it

    if tensor.data_type in _PACKED_BITS:
        return -(-_numel(tensor.dims) * _PACKED_BITS[tensor.data_type] // 8)
    if tensor.data_type == TensorProto.STRING:
        return None
    try:
        return _numel(tensor.dims) * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except KeyError:
        return None


# --- Storage ------------------------------------------------------------------------


def stage_uploads(root: Path, uploads: list[tuple[str, BinaryIO]], *, max_bytes: int) -> Path:
    """Copy uploads into a fresh staging folder, refusing the set as soon as it passes ``max_bytes``.

    The first upload is the model; names are checked here too, so no caller can write outside the folder.
    """
    for index, (name, _) in enumerate(uploads):
        check_name(name, field="external_data" if index else "artifact")
    staging = root / ".staging" / uuid.uuid4().hex
    staging.mkdir(parents=True)
    total = 0
    try:
        for name, stream in uploads:
            with open(staging / name, "xb") as out:
                while chunk := stream.read(_CHUNK):
                    total += len(chunk)
                    if total > max_bytes:
                        raise ArtifactError(f"The artifact is larger than the limit of {max_bytes} bytes (RADTRUST_MAX_ARTIFACT_BYTES).")
                    out.write(chunk)
    except BaseException as exc:  # a refusal, a duplicate name or a broken stream: leave nothing behind
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, FileExistsError):
            raise ArtifactError(f"Two uploaded files share the name {exc.filename and Path(exc.filename).name!r}.", field="external_data") from exc
        raise
    return staging


def artifact_dir(root: Path, sha256: str) -> Path:
    return root / sha256[:2] / sha256


def commit_staged(root: Path, staging: Path, info: ArtifactInfo) -> Path:
    """Move a verified staging folder to its content address; an identical set already there is reused."""
    target = artifact_dir(root, info.sha256)
    if target.exists():
        shutil.rmtree(staging, ignore_errors=True)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(staging, target)
    except OSError:
        # Lost a race with an identical upload: the content is the same by construction.
        shutil.rmtree(staging, ignore_errors=True)
    for path in target.iterdir():
        path.chmod(0o444)
    return target


def verify_stored(root: Path, sha256: str, files: list[dict]) -> list[str]:
    """Re-hash a stored artifact; return what is wrong (an empty list means intact)."""
    folder = artifact_dir(root, sha256)
    problems = []
    present = {p.name for p in folder.iterdir()} if folder.exists() else set()
    for f in files:
        path = folder / f["name"]
        if f["name"] not in present:
            problems.append(f"{f['name']} is missing")
        elif file_sha256(path) != f["sha256"]:
            problems.append(f"{f['name']} does not match its sha256")
    for name in sorted(present - {f["name"] for f in files}):
        problems.append(f"{name} is not part of the artifact")
    stored = [StoredFile(f["name"], f["sha256"], f["size"], f["role"]) for f in files]
    if set_sha256(stored) != sha256:
        problems.append("the file list does not hash to the artifact's sha256")
    return problems


def ingest(root: Path, uploads: list[tuple[str, BinaryIO]], *, max_bytes: int) -> ArtifactInfo:
    """Stage, verify and store an upload set (the first file is the model); a refusal leaves no file."""
    staging = stage_uploads(root, uploads, max_bytes=max_bytes)
    try:
        info = inspect_onnx(staging / uploads[0][0], [staging / name for name, _ in uploads[1:]])
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    commit_staged(root, staging, info)
    return info
