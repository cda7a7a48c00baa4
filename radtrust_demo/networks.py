"""Small real networks exported to ONNX with torch, for the demo and the tests.

They stand in for a foundation model's adapted head: a few convolutions on a
1x64x64 radiograph crop. Seeded, so the same call writes the same weights.
"""

from __future__ import annotations

from pathlib import Path


def export_tiny_classifier(folder: Path, *, name: str = "model.onnx", external_data: bool = False, seed: int = 0, classes: int = 1) -> list[Path]:
    """Export with torch's dynamo exporter; ``external_data`` writes the weights to ``<name>.data``.

    Returns the written files, the model first.
    """
    import torch  # torch is heavy (about 2.5 s to import); only the demo and benchmarks use it
    from torch import nn  # torch is heavy (about 2.5 s to import); only the demo and benchmarks use it

    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, classes),
    ).eval()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    example = torch.zeros(2, 1, 64, 64)
    program = torch.onnx.export(
        net,
        (example,),
        dynamo=True,
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes={"input": {0: torch.export.Dim("batch", min=1, max=1024)}},
        verbose=False,
    )
    program.save(str(path), external_data=external_data)
    files = [path]
    data = folder / f"{name}.data"
    if external_data and data.exists():
        files.append(data)
    return files


def export_thresholding_segmenter(
    folder: Path, *, name: str = "segmenter.onnx", level: float = 1.5, steepness: float = 4.0, volume: tuple[int, int, int] | None = None
) -> Path:
    """A one-layer segmenter: ``sigmoid(steepness * (x - level))`` per pixel, output (batch, 1, H, W),
    or per voxel of a (batch, 1, D, H, W) volume of shape ``volume``.

    Its masks are known in closed form (pixels above ``level``), so tests can check
    Dice and IoU against an independent computation.
    """
    import torch  # torch is heavy (about 2.5 s to import); only the demo and benchmarks use it
    from torch import nn  # torch is heavy (about 2.5 s to import); only the demo and benchmarks use it

    net = nn.Sequential(nn.Conv3d(1, 1, 1) if volume else nn.Conv2d(1, 1, 1), nn.Sigmoid()).eval()
    with torch.no_grad():
        net[0].weight.fill_(steepness)
        net[0].bias.fill_(-steepness * level)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    example = torch.zeros(2, 1, *(volume or (64, 64)))
    program = torch.onnx.export(
        net,
        (example,),
        dynamo=True,
        input_names=["image"],
        output_names=["mask"],
        dynamic_shapes={"input": {0: torch.export.Dim("batch", min=1, max=1024)}},
        verbose=False,
    )
    program.save(str(path))
    return path
