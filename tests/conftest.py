"""Shared fixtures: the seed networks (shipped with estbench: ``estbench.shipped``) and random
problems."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from estbench.kinds.sbn.model import SBN, random_sbn
from estbench.shipped import SEED_CHECKPOINTS as SHIPPED
from estbench.shipped import seed_nets_dir

ROOT = Path(__file__).resolve().parents[1]
SEED_NETS = seed_nets_dir()  # the installed package data, never a folder outside the repository
SEED_CHECKPOINTS = tuple(c.file for c in SHIPPED)  # file names, e.g. "psa_5-5-5_chk-100.npz"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):  # noqa: ANN001, ANN202
    """Each test caches in its own folder (``estbench.catalogue``), never in the user's."""
    monkeypatch.setenv("ESTBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def seed_net_path(name: str) -> Path:
    """A shipped seed network's file by its file name; a missing file is an error, not a skip."""
    path = SEED_NETS / name
    if not path.exists():
        raise FileNotFoundError(f"seed network {path} not found (shipped in estbench/seed_nets/)")
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
