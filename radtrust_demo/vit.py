"""A Vision Transformer image encoder (ViT, patch 16) exported to ONNX with an embedding output.

It stands in for a radiology foundation model at a real model's size: ``VIT_B16`` is ViT-B/16's
shape (224 x 224 input, 12 blocks of width 768, 12 heads, MLP 3072: about 86 million
parameters with one input channel), ``VIT_SMALL`` the same architecture at 64 x 64 with 2
blocks of width 64, which the demo and the tests build by default (a few seconds). Weights are
random and seeded: the demo's data-efficiency evaluation measures what probes learn from the
encoder's embeddings, which random features of the images carry too.

The graph has two outputs, the contract of an embedding-exposing version (docs/methods.md,
"Embedding evaluation"): ``logits`` first, (batch, classes), the scores a linear head on the
embedding gives; then ``embedding``, (batch, width), the class token after the final layer norm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

EMBEDDING_OUTPUT = "embedding"


@dataclass(frozen=True)
class VitShape:
    """The encoder's size: input side, patch side, blocks, width, heads, MLP width."""

    image: int
    patch: int
    depth: int
    width: int
    heads: int
    mlp: int

    @property
    def parameters(self) -> int:
        """Parameters with one input channel and one output class (what ``export_vit`` writes)."""
        tokens = (self.image // self.patch) ** 2 + 1
        embed = self.patch * self.patch * self.width + self.width + tokens * self.width + self.width  # patches, position, class token
        block = 4 * self.width * self.width + 4 * self.width + 2 * self.width * self.mlp + self.mlp + self.width + 4 * self.width
        return embed + self.depth * block + 2 * self.width + self.width + 1

    @property
    def gflop_per_image(self) -> float:
        """Forward GFLOP per image (2 per multiply-add): the patch embedding, the blocks' linear layers and attention."""
        tokens = (self.image // self.patch) ** 2 + 1
        linear = tokens * (4 * self.width * self.width + 2 * self.width * self.mlp)
        attention = 2 * tokens * tokens * self.width
        return 2 * (tokens * self.patch * self.patch * self.width + self.depth * (linear + attention)) / 1e9


VIT_B16 = VitShape(image=224, patch=16, depth=12, width=768, heads=12, mlp=3072)
VIT_SMALL = VitShape(image=64, patch=16, depth=2, width=64, heads=2, mlp=128)


def export_vit(
    folder: Path,
    shape: VitShape = VIT_SMALL,
    *,
    name: str = "vit.onnx",
    seed: int = 0,
    classes: int = 1,
    head: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Path]:
    """Export the encoder with its linear head; the weights go to ``<name>.data`` (external data).
    ``head`` replaces the head's (classes, width) weights and (classes,) bias: a linear probe fitted
    on the embeddings of the encoder of the same ``seed``.

    Returns the written files, the model first.
    """
    import torch  # torch is heavy (about 2.5 s to import); only the demo and benchmarks use it
    from torch import nn  # torch is heavy (about 2.5 s to import); only the demo and benchmarks use it

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            tokens = (shape.image // shape.patch) ** 2
            self.patches = nn.Conv2d(1, shape.width, shape.patch, stride=shape.patch)
            self.cls = nn.Parameter(torch.randn(1, 1, shape.width) * 0.02)
            self.position = nn.Parameter(torch.randn(1, tokens + 1, shape.width) * 0.02)
            layer = nn.TransformerEncoderLayer(shape.width, shape.heads, shape.mlp, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, shape.depth, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(shape.width)
            self.head = nn.Linear(shape.width, classes)

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.patches(image).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.position
            embedding = self.norm(self.blocks(x))[:, 0]
            return self.head(embedding), embedding

    torch.manual_seed(seed)
    net = Encoder().eval()
    if head is not None:
        with torch.no_grad():
            net.head.weight.copy_(torch.as_tensor(np.asarray(head[0], dtype=np.float32).reshape(classes, shape.width)))
            net.head.bias.copy_(torch.as_tensor(np.asarray(head[1], dtype=np.float32).reshape(classes)))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with torch.no_grad():
        program = torch.onnx.export(
            net,
            (torch.zeros(2, 1, shape.image, shape.image),),
            dynamo=True,
            input_names=["image"],
            output_names=["logits", EMBEDDING_OUTPUT],
            dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1, max=1024)}},
            verbose=False,
        )
    program.save(str(path), external_data=True)
    data = folder / f"{name}.data"
    return [path, data] if data.exists() else [path]
