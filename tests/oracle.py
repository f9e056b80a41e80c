"""Test-only oracle: the exact objective by enumerating every joint path x_1..x_L, and its
gradient by autograd. Independent of estbench.kinds.sbn.exact: probabilities as products of F and
1 - F, its own loss formulas, and no hand-written backward pass. Cost 2^(n_1 + ... + n_L)."""

from __future__ import annotations

import torch
from torch import Tensor

from estbench.kinds.sbn.model import SBN


def _loss(head: str, z: Tensor, y: Tensor) -> Tensor:
    if head == "logistic":
        return torch.log1p(torch.exp(-y * z[..., 0]))
    if head == "softmax":
        return -torch.log_softmax(z, -1).gather(-1, y.long().expand(z.shape[:-1])[..., None])[
            ..., 0
        ]
    return ((z - y) ** 2).sum(-1)


def joint_enumeration(
    model: SBN, X: Tensor, Y: Tensor
) -> tuple[Tensor, Tensor, list[tuple[Tensor, Tensor]]]:
    """(loss, loss per point, [(dW_k, db_k)]) by brute force over all joint states."""
    Ws = [W.detach().clone().requires_grad_() for W in model.weights]
    bs = [b.detach().clone().requires_grad_() for b in model.biases]
    total = sum(model.widths)
    configs = torch.cartesian_prod(*[torch.tensor([0.0, 1.0], dtype=X.dtype)] * total)
    configs = configs.reshape(-1, total)  # [C, total]
    y = Y[:, 0] if (Y.dim() == 2 and model.head.name != "mse") else Y
    x: Tensor = X[None]  # [1, N, d]
    prob = torch.ones(configs.shape[0], X.shape[0], dtype=X.dtype)
    start = 0
    for k, n in enumerate(model.widths):
        a = x @ Ws[k].T + bs[k]  # [C or 1, N, n]
        on = configs[:, None, start : start + n]  # [C, 1, n]
        p_on = model.noise.cdf(a)
        prob = prob * torch.where(on == 1, p_on, 1 - p_on).prod(-1)
        x = (on if model.coding == "01" else 2 * on - 1).expand(-1, X.shape[0], -1)
        start += n
    z = x @ Ws[-1].T + bs[-1]
    per_point = (prob * _loss(model.head.name, z, y)).sum(0)
    loss = per_point.mean()
    grads = torch.autograd.grad(loss, [p for pair in zip(Ws, bs, strict=True) for p in pair])
    pairs = [(grads[2 * k], grads[2 * k + 1]) for k in range(len(Ws))]
    return loss.detach(), per_point.detach(), pairs
