"""Training to checkpoints: minimise the objective with any registered estimator (one draw per
minibatch, every point with its own noise -- the seed protocol) or with the exact gradient.

An epoch is one pass over the data in minibatches of a shuffled order; a snapshot of the network is
taken after each epoch listed in ``measure_at`` (epoch 0 is the initial network).
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
    if spec.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum)
    else:
        opt = torch.optim.Adam(params, lr=spec.lr)
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
            for k, layer in enumerate(torch.split(flat, net.layer_sizes)):
                gW, gb = unflatten_layer(layer, *net.weights[k].shape)
                params[2 * k].grad = gW.reshape(net.weights[k].shape).clone()
                params[2 * k + 1].grad = gb.clone()
            opt.step()
        snapshot(epoch)
        if on_epoch is not None:
            on_epoch(epoch)
    return snapshots
