"""Action heads and the proprio projector.

- ``ChunkActionHead`` (head ``chunk``): this project's OFT-like head, learned action query rows in the
  sequence, LayerNorm + GELU MLP on each step's rows. The shipped model uses it.
- ``MLPResNetHead`` (head ``oft``): OpenVLA-OFT's published ``L1RegressionActionHead``; its tensors are named
  as in OFT's ``action_head--*_checkpoint.pt`` (``model.layer_norm1``, ``model.fc1``,
  ``model.mlp_resnet_blocks.{i}.ffn.{0,1}``, ``model.layer_norm2``, ``model.fc2``).
- ``ProprioProjector``: Linear, GELU, Linear; the same module and names as OFT's.

Reference read (not copied): moojink/openvla-oft ``prismatic/models/action_heads.py``, ``projectors.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import VLAConfig


class ChunkActionHead(nn.Module):
    """Learned action queries in, (B, chunk_len, action_dim) out."""

    def __init__(self, config: VLAConfig) -> None:
        super().__init__()
        d, a = config.llm_dim, config.action_dim
        hidden = config.action_head_hidden or d
        self.chunk_len, self.action_dim = config.chunk_len, a
        self.queries = nn.Parameter(torch.randn(config.num_action_queries, d) * 0.02)  # (T*A, d)
        self.norm = nn.LayerNorm(a * d)
        self.fc1 = nn.Linear(a * d, hidden)
        self.fc2 = nn.Linear(hidden, a)
        self.act = nn.GELU()

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        b = rows.shape[0]
        x = rows.reshape(b, self.chunk_len, -1)  # (B, T, A*d)
        return self.fc2(self.act(self.fc1(self.norm(x))))  # (B, T, A)


class _ResidualFFN(nn.Module):
    """``x + ReLU(Linear(LayerNorm(x)))``, the ``ffn`` Sequential of OFT's residual block."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ffn = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ffn(x)


class _MLPResNet(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int, blocks: int) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(in_dim)
        self.fc1 = nn.Linear(in_dim, hidden)
        self.mlp_resnet_blocks = nn.ModuleList(_ResidualFFN(hidden) for _ in range(blocks))
        self.layer_norm2 = nn.LayerNorm(hidden)
        self.fc2 = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(self.layer_norm1(x)))
        for block in self.mlp_resnet_blocks:
            x = block(x)
        return self.fc2(self.layer_norm2(x))


class MLPResNetHead(nn.Module):
    """OpenVLA-OFT's L1 regression head: each step's ``action_dim`` hidden rows, concatenated, through an
    MLP-ResNet to that step's action. No parameters in the sequence: OFT's placeholder rows are zeros."""

    def __init__(self, config: VLAConfig) -> None:
        super().__init__()
        d, a = config.llm_dim, config.action_dim
        self.chunk_len, self.action_dim = config.chunk_len, a
        self.model = _MLPResNet(a * d, config.action_head_hidden or d, a, config.head_blocks)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.model(rows.reshape(rows.shape[0], self.chunk_len, -1))  # (B, T, A)


class ProprioProjector(nn.Module):
    def __init__(self, proprio_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(proprio_dim, llm_dim)
        self.fc2 = nn.Linear(llm_dim, llm_dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def build_action_head(config: VLAConfig) -> nn.Module | None:
    """The head ``config.head`` names; None for OpenVLA's tokens head (the LLM's own lm_head)."""
    if config.head == "chunk":
        return ChunkActionHead(config)
    if config.head == "oft":
        return MLPResNetHead(config)
    return None
