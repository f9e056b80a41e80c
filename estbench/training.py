"""Training to checkpoints: minimise the objective with any registered estimator (one draw per
minibatch, every point with its own noise -- the seed protocol) or with the exact gradient.

An epoch is one pass over the data in minibatches of a shuffled order; a snapshot of the network is
taken after each epoch listed in ``measure_at`` (epoch 0 is the initial network).

The optimisers are torch.optim's SGD (momentum) and Adam, restated in a few lines with the same
operations in the same order (bit-identical updates, checked in tests/test_optimizers.py): creating
a torch.optim optimiser imports torch._dynamo, about 2 s of every ``estbench run`` that trains.
Training runs on the CPU, in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .cases import TrainingSpec
from .estimators.base import Problem
from .estimators.registry import get_estimator
from .exact import exact_gradient
from .model import SBN, unflatten_layer


def _gradient_fn(spec: TrainingSpec) -> Callable[[Problem, torch.Generator], Tensor]:
    if spec.method == "exact":
        return lambda pr, g: exact_gradient(pr.model, pr.X, pr.Y).flat()
    est = get_estimator(spec.method)
    return lambda pr, g: est.draw(pr, 1, generator=g)[0]


class _SGD:
    """torch.optim.SGD(params, lr, momentum) on the CPU (single-tensor path), no weight decay."""

    def __init__(self, params: list[Tensor], lr: float, momentum: float) -> None:
        self.params, self.lr, self.momentum = params, lr, momentum
        self.buffers: list[Tensor | None] = [None] * len(params)

    def step(self, grads: list[Tensor]) -> None:
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            if self.momentum != 0:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = g.detach().clone()
                else:
                    buf.mul_(self.momentum).add_(g, alpha=1)
                g = buf
            p.add_(g, alpha=-self.lr)


class _Adam:
    """torch.optim.Adam(params, lr) with its defaults (betas 0.9, 0.999, eps 1e-8) on the CPU
    (single-tensor path)."""

    def __init__(self, params: list[Tensor], lr: float) -> None:
        self.params, self.lr = params, lr
        self.beta1, self.beta2, self.eps = 0.9, 0.999, 1e-8
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = 0

    def step(self, grads: list[Tensor]) -> None:
        self.steps += 1
        step = float(self.steps)
        b1, b2 = self.beta1, self.beta2
        for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            step_size = self.lr / (1 - b1**step)
            denom = (v.sqrt() / (1 - b2**step) ** 0.5).add_(self.eps)
            p.addcdiv_(m, denom, value=-step_size)


def train(
    model: SBN,
    X: Tensor,
    Y: Tensor,
    spec: TrainingSpec,
    *,
    on_epoch: Callable[[int], None] | None = None,
) -> dict[int, SBN]:
    """Snapshots {epoch: network} at ``spec.measure_at``; deterministic given ``spec.seed``."""
    g = torch.Generator().manual_seed(spec.seed)
    params = [
        p.detach().clone() for pair in zip(model.weights, model.biases, strict=True) for p in pair
    ]
    net = model.replace(weights=tuple(params[0::2]), biases=tuple(params[1::2]))
    opt = (
        _SGD(params, spec.lr, spec.momentum) if spec.optimizer == "sgd" else _Adam(params, spec.lr)
    )
    grad = _gradient_fn(spec)
    snapshots: dict[int, SBN] = {}
    wanted = set(spec.measure_at)

    def snapshot(epoch: int) -> None:
        if epoch in wanted:
            snapshots[epoch] = net.replace(
                weights=tuple(W.clone() for W in net.weights),
                biases=tuple(b.clone() for b in net.biases),
            )

    snapshot(0)
    N = X.shape[0]
    for epoch in range(1, max(wanted, default=0) + 1):
        order = torch.randperm(N, generator=g)
        for lo in range(0, N, spec.batch_size):
            idx = order[lo : lo + spec.batch_size]
            flat = grad(Problem.create(net, X[idx], Y[idx]), g)
            grads = []
            for k, layer in enumerate(torch.split(flat, net.layer_sizes)):
                gW, gb = unflatten_layer(layer, *net.weights[k].shape)
                grads += [gW.reshape(net.weights[k].shape), gb]
            opt.step(grads)
        snapshot(epoch)
        if on_epoch is not None:
            on_epoch(epoch)
    return snapshots
