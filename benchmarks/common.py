"""Shared workloads of the asv suite; public API only.

``ESTBENCH_ASV_SMOKE=1`` shrinks every workload (draws, widths, the default case) so that
``tests/test_benchmarks.py`` can run each benchmark's set-up and one call in seconds; asv itself
never sets it.
"""

from __future__ import annotations

import os

import torch

from estbench import Problem, load_checkpoint, random_sbn

# The seed authors' network, shipped with estbench (`estbench checkpoints`)
SEED_NET = "seed:chk-100"
SEED_STUDY = ("reinforce", "arm", "concrete(tau=0.1)", "concrete(tau=1)", "mean-field", "st", "psa")


def smoke() -> bool:
    """True under tests/test_benchmarks.py: tiny workloads that only check the code runs."""
    return os.environ.get("ESTBENCH_ASV_SMOKE") == "1"


def random_problem(width: int, depth: int, n_points: int = 100) -> Problem:
    """A random {+-1} network of ``depth`` layers of ``width`` units with 2-d inputs."""
    g = torch.Generator().manual_seed(0)
    model = random_sbn(2, [width] * depth, 1, generator=g, scale=1.5, coding="pm1")
    X = torch.randn(n_points, 2, generator=g, dtype=torch.float64)
    Y = torch.where(torch.rand(n_points, generator=g) < 0.5, 1.0, -1.0).double()
    return Problem.create(model, X, Y)


def seed_problem() -> Problem:
    """The seed study's trained 2-5-5-5-1 network with its 200 points ({0,1} coding), shipped
    with estbench, so every benchmark on it measures the same network on every machine."""
    ckpt = load_checkpoint(SEED_NET)
    return Problem.create(ckpt.model(coding="01"), *ckpt.data())
