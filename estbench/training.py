"""Training to checkpoints: minimise the objective with any registered estimator (one draw per
minibatch, every point with its own noise -- the seed protocol) or with the exact gradient.

An epoch is one pass over the data in minibatches of a shuffled order; a snapshot of the network is
taken after each epoch listed in ``measure_at`` (epoch 0 is the initial network).

Every problem kind shares the loop: a kind's parameters are pairs (theta_k, b_k)
(``ProblemKind.parameters``: W_k for SBNs; eta_k of Bernoulli pairs or W_k of real pairs for
Bernoulli-weight SBNs), and a flat gradient is concat(theta_k.reshape(-1), b_k) per pair, so one
update serves every kind. For a Bernoulli-weight model the step uses the estimate as drawn:

* wrt eta (``exact``, ``weight-st``, ``weight-arm``, ...): SGD/Adam on the latent weights eta.
* wrt mu (``binaryconnect``, ``weight-st(wrt=mu)``): g_mu applied to eta, the latent-weight rule
  of BinaryConnect. With plain SGD (momentum 0) at learning rate lr this is exactly mirror descent
  on mu = tanh(eta / 2) with the Bernoulli negative entropy
  phi(mu) = sum (1+mu)/2 log((1+mu)/2) + (1-mu)/2 log((1-mu)/2) as mirror map, of step size
  eps = lr / 2: grad phi(mu) = atanh(mu) = eta / 2, so the mirror step
  atanh(mu') = atanh(mu) - eps g_mu is eta' = eta - 2 eps g_mu = eta - lr g_mu, i.e.
  mu' = tanh(atanh(mu) - (lr / 2) g_mu) (``mirror_step``). Momentum and Adam act on the dual
  variable eta / 2 in the same way (momentum / Adam in the mirror's dual space).

The optimisers are torch.optim's SGD (momentum) and Adam, restated in a few lines with the same
operations in the same order (bit-identical updates, checked in tests/test_optimizers.py): creating
a torch.optim optimiser imports torch._dynamo, about 2 s of every ``estbench run`` that trains.
Training runs on the CPU, in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor

from .cases import TrainingSpec
from .errors import EstbenchError
from .estimators.registry import get_estimator
from .problem import ProblemKind, kind_of

Net = TypeVar("Net")


class TrainingError(EstbenchError):
    """A training method that cannot train the given model."""


def _gradient_fn(
    spec: TrainingSpec, kind: ProblemKind[Any, Any], net: Any
) -> Callable[..., Tensor]:
    """(problem, generator) -> flat gradient: exact (the kind's default parametrisation) or one
    draw of the estimator ``spec.method``, as drawn (see the module docstring)."""
    if spec.method == "exact":
        return lambda pr, g: kind.exact_gradient(pr)
    est = get_estimator(spec.method)
    handles = getattr(est, "problem", "sbn")
    if handles != kind.name:
        raise TrainingError(
            f"training.method: estimator {est.spec!r} handles problem {handles!r}, but the model "
            f"({kind.describe(net)}) is problem {kind.name!r}; expected 'exact' or an estimator "
            f"with problem = {kind.name!r}"
        )
    return lambda pr, g: est.draw(pr, 1, generator=g)[0]


def mirror_step(mu: Tensor, g_mu: Tensor, eps: float) -> Tensor:
    """Mirror descent on mu in (-1, 1) with the Bernoulli negative entropy as mirror map:
    argmin_m eps <g_mu, m> + D_phi(m, mu) = tanh(atanh(mu) - eps g_mu). Latent-weight SGD at
    learning rate lr with g_mu is this step with eps = lr / 2 (module docstring)."""
    return torch.tanh(torch.atanh(mu) - eps * g_mu)


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
    model: Net,
    X: Tensor,
    Y: Tensor,
    spec: TrainingSpec,
    *,
    on_epoch: Callable[[int], None] | None = None,
    kind: ProblemKind[Any, Net] | None = None,
) -> dict[int, Net]:
    """Snapshots {epoch: network} at ``spec.measure_at``; deterministic given ``spec.seed``.
    ``kind``: the problem kind of ``model`` (default: the kind whose networks have its type)."""
    kind = kind_of(model) if kind is None else kind
    grad = _gradient_fn(spec, kind, model)  # an estimator of the wrong kind fails before any work
    g = torch.Generator().manual_seed(spec.seed)
    thetas, biases = kind.parameters(model)
    params = [p.detach().clone() for pair in zip(thetas, biases, strict=True) for p in pair]
    net = kind.with_parameters(model, tuple(params[0::2]), tuple(params[1::2]))  # in place
    opt = (
        _SGD(params, spec.lr, spec.momentum) if spec.optimizer == "sgd" else _Adam(params, spec.lr)
    )
    snapshots: dict[int, Net] = {}
    wanted = set(spec.measure_at)

    def snapshot(epoch: int) -> None:
        if epoch in wanted:
            snapshots[epoch] = kind.with_parameters(
                net, tuple(p.clone() for p in params[0::2]), tuple(p.clone() for p in params[1::2])
            )

    snapshot(0)
    sizes = [p.numel() for p in params]
    N = X.shape[0]
    for epoch in range(1, max(wanted, default=0) + 1):
        order = torch.randperm(N, generator=g)
        for lo in range(0, N, spec.batch_size):
            idx = order[lo : lo + spec.batch_size]
            flat = grad(kind.problem(net, X[idx], Y[idx]), g)
            # concat(theta_k.reshape(-1), b_k) per pair -> one gradient per parameter tensor
            grads = [g.view(p.shape) for g, p in zip(torch.split(flat, sizes), params, strict=True)]
            opt.step(grads)
        snapshot(epoch)
        if on_epoch is not None:
            on_epoch(epoch)
    return snapshots
