"""The two encoders of the shared space and the losses that train them.

MetadataEncoder: an MLP over the typed feature vector (items, users and
composites share it), projecting into the text encoder's space. TextAdapter:
a residual layer on the frozen sentence embedding, zero-initialised so
training starts from the plain text space; it is what lets "no horror" land
away from horror films. Loss: symmetric InfoNCE with a learned temperature,
a multi-positive InfoNCE over the whole catalog for steering phrasings and
interactions, and the interpolation smoothing loss on ordered axes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MetadataEncoder(nn.Module):
    def __init__(self, in_dim: int, embed_dim: int, hidden: tuple[int, ...] = (1024, 512)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.GELU()]
            d = h
        layers.append(nn.Linear(d, embed_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)


class TextAdapter(nn.Module):
    def __init__(self, dim: int, hidden: int = 512, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return F.normalize(x, dim=-1)
        return F.normalize(x + self.down(F.gelu(self.up(x))), dim=-1)


class SharedSpace(nn.Module):
    """Both encoders plus the learned temperature (CLIP's log-scale parameterisation)."""

    def __init__(self, in_dim: int, embed_dim: int, hidden: tuple[int, ...], adapter: bool = True, adapter_hidden: int = 512) -> None:
        super().__init__()
        self.meta = MetadataEncoder(in_dim, embed_dim, hidden)
        self.text = TextAdapter(embed_dim, adapter_hidden, enabled=adapter)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()


def info_nce(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, same: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of aligned pairs; ``same[i, j]`` masks off-diagonal duplicates."""
    logits = scale * a @ b.T
    if same is not None:
        logits = logits.masked_fill(same & ~torch.eye(len(a), dtype=torch.bool), float("-inf"))
    target = torch.arange(len(a))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def multi_positive_nce(q: torch.Tensor, items: torch.Tensor, pos: torch.Tensor, scale: torch.Tensor,
                       drop: torch.Tensor | None = None) -> torch.Tensor:
    """-log( sum_{i in pos} exp(s_i) / sum_i exp(s_i) ) per query, averaged; ``drop`` removes items from both sums."""
    logits = scale * q @ items.T
    if drop is not None:
        logits = logits.masked_fill(drop, float("-inf"))
    num = torch.logsumexp(logits.masked_fill(~pos, float("-inf")), dim=1)
    den = torch.logsumexp(logits, dim=1)
    ok = torch.isfinite(num)
    return (den - num)[ok].mean() if ok.any() else logits.sum() * 0


def smoothing_loss(lo: torch.Tensor, mid: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """||E(mid) - (E(low) + E(high)) / 2||^2, averaged over the batch."""
    return ((mid - 0.5 * (lo + hi)) ** 2).sum(-1).mean()
