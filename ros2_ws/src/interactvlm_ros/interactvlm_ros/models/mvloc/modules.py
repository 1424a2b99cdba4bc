"""InteractVLM's own small heads (no transformers equivalent exists, so they are written here).

Parameter names equal the official state-dict names under ``cam_pose_encoder.`` /
``attention_splitter.`` / ``model.text_hidden_fcs.``, so checkpoints load without renaming.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def text_hidden_fcs(hidden_size: int, out_dim: int) -> nn.ModuleList:
    """``[SEG]`` projection: ``ModuleList([Sequential(Linear(Hd,Hd), ReLU, Linear(Hd,out), Dropout(0))])``.

    Shapes: ``[..., Hd] -> [..., out_dim]`` (out_dim = 256)."""
    return nn.ModuleList([nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(inplace=False),
                                        nn.Linear(hidden_size, out_dim), nn.Dropout(0.0))])


class CameraPoseEncoder(nn.Module):
    """Per-view camera conditioning of the ``[SEG]`` prompt (spec 1.2 table, 2.6).

    Input ``cam [V, 5]`` (normalized camera code), output ``[V, D]`` (D = 256).

    * ``simple``: ``ReLU(linear1(c))`` — **added** to the prompt.
    * ``view_index``: ``view_transforms[v](Sigmoid(L2(ReLU(L1(c_v)))))`` — **multiplied**.
    * ``vi_v1`` (all released 3D models): ``Sigmoid(view_transforms[v](ReLU(L2(ReLU(L1(c_v))))))`` — multiplied.
    """

    def __init__(self, kind: str, num_views: int, out_dim: int = 256, hidden: int | None = None):
        super().__init__()
        self.kind = kind
        if kind == "simple":
            self.linear1 = nn.Linear(5, out_dim)
        elif kind == "view_index":
            hidden = hidden or out_dim
            self.spatial_encoder = nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.Sigmoid())
            self.view_transforms = nn.ModuleList([nn.Linear(hidden, out_dim) for _ in range(num_views)])
        elif kind == "vi_v1":
            hidden = hidden or 128
            self.spatial_encoder = nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
            self.view_transforms = nn.ModuleList([nn.Linear(hidden, out_dim) for _ in range(num_views)])
        else:
            raise ValueError(f"cam_encoder_type {kind!r}: expected simple, view_index or vi_v1")

    @property
    def additive(self) -> bool:
        return self.kind == "simple"

    def forward(self, cam: torch.Tensor) -> torch.Tensor:
        """``cam [V,5] -> [V,D]`` (one call per view for the per-view encoders, as the official code)."""
        if self.kind == "simple":
            return torch.relu(self.linear1(cam))
        if cam.shape[0] > len(self.view_transforms):
            raise ValueError(f"camera params for {cam.shape[0]} views but the encoder has "
                             f"{len(self.view_transforms)} view transforms (config multiview_channels)")
        rows = []
        for v in range(cam.shape[0]):
            x = self.view_transforms[v](self.spatial_encoder(cam[v:v + 1]))
            rows.append(torch.sigmoid(x) if self.kind == "vi_v1" else x)
        return torch.cat(rows, 0)


class AttentionSplitter(nn.Module):
    """Gen-Hu-Obj / Gen-Int human/object routing: attention **across views** (spec 2.6).

    ``E [N, V, D] -> [N, V, D]``: ``x = input_proj(E)``; ``A = softmax(Q_branch(x) K(x)^T / sqrt(h))``;
    ``output_proj(A V(x))`` with ``h`` = 128 (the splitter width)."""

    def __init__(self, dim: int = 256, hidden: int = 128):
        super().__init__()
        self.input_proj = nn.Linear(dim, hidden)
        self.query_human = nn.Linear(hidden, hidden)
        self.query_object = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.output_proj = nn.Linear(hidden, dim)
        self.hidden = hidden

    def forward(self, emb: torch.Tensor, branch: str) -> torch.Tensor:
        x = self.input_proj(emb)
        q = (self.query_human if branch == "human" else self.query_object)(x)
        attn = torch.softmax(q @ self.key(x).transpose(-1, -2) / math.sqrt(self.hidden), dim=-1)
        return self.output_proj(attn @ self.value(x))
