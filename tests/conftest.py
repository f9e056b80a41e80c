"""Shared fixtures: the seed networks (read from ../shared/seed-nets/) and random problems."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from estbench.model import SBN, random_sbn

ROOT = Path(__file__).resolve().parents[1]
SEED_NETS = ROOT.parent / "shared" / "seed-nets"
SEED_CHECKPOINTS = ("psa_5-5-5_chk-1.npz", "psa_5-5-5_chk-100.npz")


def seed_net_path(name: str) -> Path:
    path = SEED_NETS / name
    if not path.exists():  # CI has ../shared; a missing copy is an error, not a skip
        raise FileNotFoundError(f"seed network {path} not found (tests read ../shared/seed-nets/)")
    return path


def random_problem(
    widths: tuple[int, ...],
    *,
    seed: int,
    input_dim: int = 2,
    n_points: int = 6,
    coding: str = "pm1",
    noise: str = "logistic",
    head: str = "logistic",
    classes: int = 3,
    scale: float = 1.3,
) -> tuple[SBN, torch.Tensor, torch.Tensor]:
    """A random network with data and targets that fit its head."""
    g = torch.Generator().manual_seed(seed)
    out_dim = {"logistic": 1, "softmax": classes, "mse": 2}[head]
    model = random_sbn(
        input_dim, widths, out_dim, generator=g, scale=scale, coding=coding, noise=noise, head=head
    )
    X = torch.randn(n_points, input_dim, generator=g, dtype=torch.float64)
    if head == "logistic":
        Y = torch.where(torch.rand(n_points, generator=g) < 0.5, 1.0, -1.0).double()
    elif head == "softmax":
        Y = torch.randint(0, classes, (n_points,), generator=g).double()
    else:
        Y = torch.randn(n_points, out_dim, generator=g, dtype=torch.float64)
    return model, X, Y


@pytest.fixture(params=SEED_CHECKPOINTS)
def seed_checkpoint(request: pytest.FixtureRequest) -> Path:
    return seed_net_path(request.param)
