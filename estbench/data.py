"""Data sets for cases: the seed study's two-class set, two moons, XOR, Gaussian blobs, or a file.

Every generator returns inputs X [N, d] (float64) and integer class labels c in {0, ..., K-1};
``targets_for_head`` turns labels into the targets a head expects (+-1 for the logistic head,
classes for softmax, one-hot rows for squared error). Generation uses its own
``torch.Generator`` seeded from the case, so a data set is a pure function of (kind, n, seed).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import load_data
from .errors import ModelError

DATASETS = ("two-class", "moons", "xor", "blobs", "npz")


def two_class(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """The seed study's set (seed-study.md §1): class 1 uniform on [-pi/2, pi/2] x [0, 1];
    class 0 uniform on {(u, v): |u| <= pi/2, -1 <= v < cos u} by rejection. The classes overlap.
    n // 2 points of class 1 first, then the rest of class 0 (the study's +1 and -1)."""
    n1, n0 = n // 2, n - n // 2
    u = (torch.rand(n1, generator=g, dtype=torch.float64) - 0.5) * math.pi
    pos = torch.stack((u, torch.rand(n1, generator=g, dtype=torch.float64)), 1)
    neg = torch.empty(0, 2, dtype=torch.float64)
    while neg.shape[0] < n0:  # rejection: accept about 82 % of proposals per round
        cand = torch.rand(2 * n0, 2, generator=g, dtype=torch.float64)
        cand = torch.stack(((cand[:, 0] - 0.5) * math.pi, 2 * cand[:, 1] - 1), 1)
        neg = torch.cat((neg, cand[cand[:, 1] < torch.cos(cand[:, 0])]))
    X = torch.cat((pos, neg[:n0]))
    labels = torch.cat((torch.ones(n1), torch.zeros(n0))).long()
    return X, labels


def moons(n: int, g: torch.Generator, noise: float = 0.1) -> tuple[Tensor, Tensor]:
    """Two interleaving half circles with Gaussian noise (as scikit-learn's make_moons)."""
    n0 = n // 2
    t = torch.rand(n, generator=g, dtype=torch.float64) * math.pi
    upper = torch.stack((torch.cos(t[:n0]), torch.sin(t[:n0])), 1)
    lower = torch.stack((1 - torch.cos(t[n0:]), 0.5 - torch.sin(t[n0:])), 1)
    X = torch.cat((upper, lower)) + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return X, torch.cat((torch.zeros(n0), torch.ones(n - n0))).long()


def xor(n: int, g: torch.Generator, noise: float = 0.1) -> tuple[Tensor, Tensor]:
    """Points near the four corners (+-1, +-1); class 1 where the signs differ."""
    corners = torch.randint(0, 2, (n, 2), generator=g).double() * 2 - 1
    X = corners + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return X, (corners[:, 0] != corners[:, 1]).long()


def blobs(
    n: int, g: torch.Generator, classes: int = 3, dim: int = 2, spread: float = 0.5
) -> tuple[Tensor, Tensor]:
    """Isotropic Gaussian blobs around ``classes`` centres on the unit circle (first two axes)."""
    labels = torch.arange(n) % classes
    angle = 2 * math.pi * labels.double() / classes
    centres = torch.zeros(n, dim, dtype=torch.float64)
    centres[:, 0], centres[:, 1] = torch.cos(angle), torch.sin(angle)
    return centres + spread * torch.randn(n, dim, generator=g, dtype=torch.float64), labels


def make_dataset(kind: str, n: int, seed: int, **params: float) -> tuple[Tensor, Tensor]:
    """Inputs and integer labels of a generated data set (see module docstring)."""
    g = torch.Generator().manual_seed(seed)
    makers = {"two-class": two_class, "moons": moons, "xor": xor, "blobs": blobs}
    if kind not in makers:
        raise ModelError(f"unknown data set {kind!r}; expected one of {', '.join(makers)}")
    return makers[kind](n, g, **params)


def load_dataset(path: str | Path) -> tuple[Tensor, Tensor]:
    """X and Y from an .npz file (keys X, Y), used as they are."""
    return load_data(path)


def targets_for_head(labels: Tensor, head: str, out_dim: int) -> Tensor:
    """Integer labels -> targets: +-1 (logistic), classes (softmax), one-hot rows (mse)."""
    classes = int(labels.max()) + 1 if labels.numel() else 0
    if head == "logistic":
        if classes > 2:
            raise ModelError(f"the logistic head needs 2 classes, the data has {classes}")
        return labels.double() * 2 - 1
    if head == "softmax":
        if classes > out_dim:
            raise ModelError(f"the data has {classes} classes but the head has {out_dim} outputs")
        return labels.double()
    if classes > out_dim:
        raise ModelError(f"the data has {classes} classes but the head has {out_dim} outputs")
    return torch.nn.functional.one_hot(labels, out_dim).double()
