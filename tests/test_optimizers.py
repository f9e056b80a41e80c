"""Training's optimisers are torch.optim's SGD and Adam, bit for bit (estbench/training.py restates
them to avoid torch.optim's import of torch._dynamo, about 2 s per training run)."""

from __future__ import annotations

import pytest
import torch

from estbench.training import _SGD, _Adam


def _run(make_ours, make_torch, steps: int = 40):
    g = torch.Generator().manual_seed(3)
    shapes = [(4, 2), (4,), (1, 4), (1,)]
    init = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    grads = [
        [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes] for _ in range(steps)
    ]
    ours = [p.clone() for p in init]
    theirs = [p.clone() for p in init]
    opt_ours, opt_theirs = make_ours(ours), make_torch(theirs)
    for step in grads:
        opt_ours.step([x.clone() for x in step])
        for p, x in zip(theirs, step, strict=True):
            p.grad = x.clone()
        opt_theirs.step()
    return ours, theirs


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_is_torch_sgd(momentum):
    ours, theirs = _run(
        lambda ps: _SGD(ps, 0.03, momentum),
        lambda ps: torch.optim.SGD(ps, lr=0.03, momentum=momentum),
    )
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


@pytest.mark.parametrize("lr", [0.05, 1e-3])
def test_adam_is_torch_adam(lr):
    ours, theirs = _run(lambda ps: _Adam(ps, lr), lambda ps: torch.optim.Adam(ps, lr=lr))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
