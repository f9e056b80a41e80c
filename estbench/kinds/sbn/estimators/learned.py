"""Control variates learned online (issue 19): estimators whose control variate has parameters
phi that are fitted, before the measured draws, by minimising the estimator's own variance.

The protocol, shared by every estimator here: ``prepare`` initialises phi from the draw call's
generator and runs ``train_steps`` steps of Adam on the single-batch estimate of the variance's
gradient, each step on ``train_draws`` fresh draws from the same generator; phi is then frozen and
the measured draws follow, from the same generator. So a measurement is reproducible from its
seed, and the measured draws are i.i.d. given phi and independent of the draws that trained it:
each estimator is unbiased for *every* fixed phi, hence the measured draws are unbiased whatever
the training did (the training is a random, but independent, choice of phi). The training's cost
(loss evaluations and backward passes) is not in ``evals_per_draw``, which counts the loss
evaluations of one measured draw; each docstring states it separately.

Conventions as in ``score.py`` and ``score_noise.py`` (layer k = 0..L-1 feeds binary layer k+1,
the head is layer L and always gets the pathwise gradient of the hard path).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Estimator, Hyper
from ..model import SBN, Problem, encode
from .ops import Contribution, assemble, head_grad, point_losses, uniforms
from .score_noise import NoiseEstimator, _layer_shapes


@dataclass
class RelaxSurrogate:
    """phi of RELAX's surrogate c_phi(z) = eta l(sigma_tau(z)) + r_rho(sigma_tau(z)):
    log tau and eta (REBAR's two, learned as in Tucker et al. and Grathwohl et al.) and rho, a
    one-hidden-layer ReLU network r(x) = w2 . relu(W1 x + b1) + b2 of the relaxed sample
    x = concat_k sigma_tau(z_k) of one data point."""

    log_tau: Tensor
    eta: Tensor
    W1: Tensor
    b1: Tensor
    w2: Tensor
    b2: Tensor

    def tensors(self) -> list[Tensor]:
        return [self.log_tau, self.eta, self.W1, self.b1, self.w2, self.b2]

    @classmethod
    def of(cls, tensors: Sequence[Tensor]) -> RelaxSurrogate:
        return cls(*tensors)

    def r(self, x: Tensor) -> Tensor:
        """r_rho per point, [*B, N] from x [*B, N, D]."""
        h = torch.relu(x @ self.W1.T + self.b1)
        return h @ self.w2 + self.b2


def adam(
    params: list[Tensor],
    loss_fn: Any,
    steps: int,
    lr: float,
) -> list[Tensor]:
    """``steps`` steps of Adam (Kingma & Ba; beta = 0.9, 0.999, eps = 1e-8) on ``loss_fn(params)``
    from the given starting tensors; returns the final tensors, detached. Written out (no
    torch.optim) so that it runs on any device, the meta device included, without global state."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    params = [p.detach().clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        leaves = [p.requires_grad_(True) for p in params]
        with torch.enable_grad():
            grads = torch.autograd.grad(loss_fn(leaves), leaves, allow_unused=True)
        new = []
        for i, (p, g) in enumerate(zip(leaves, grads, strict=True)):
            p = p.detach()
            if g is not None:
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * g * g
                mh = m[i] / (1 - b1**t)
                vh = v[i] / (1 - b2**t)
                p = p - lr * mh / (vh.sqrt() + eps)
            new.append(p)
        params = new
    return [p.detach() for p in params]


class RELAX(NoiseEstimator):
    """RELAX (Grathwohl, Choi, Wu, Roeder & Duvenaud, ICLR 2018) with its learned surrogate,
    joint deep form, trained online by minimising its own variance.

    The estimator (the paper's Eq. 8, "RELAX"; equation numbers as in the paper's source,
    duvenaud/relax ``paper/generalized_rebar.tex``):

        g = [f(b) - c_phi(z~)] d/dtheta log p(b | theta) + d/dtheta c_phi(z) - d/dtheta c_phi(z~),
        b = H(z), z ~ p(z | theta), z~ ~ p(z | b, theta),

    unbiased for any c_phi. Here, as in the paper's discrete-VAE experiments (Sec. 3.3,
    "Choosing the control variate architecture"), c_phi(z) = f(sigma_lambda(z)) + r_rho(z), with
    REBAR's scale eta on the relaxed loss as in the authors' code (``relax-autograd/relax.py``
    learns log eta and the log temperature; REBAR's learned eta, Sec. 3.3: "REBAR ... c_phi(z) =
    eta f(softmax_lambda(z))"): phi = (eta, log tau, rho), c_phi = eta l(x~_L) + r_rho(x~) where
    x~ = (x~_1, ..., x~_L) is the relaxed sample of the relaxed network, exactly the paths of
    ``rebar`` (its docstring: hard path from uniforms u_k, soft path x~_k = r(a_k(x~_{k-1}) +
    eps_k), conditional path from the hard bits and uniforms v_k, r(y) = sigmoid(y / tau) or
    2 sigmoid(y / tau) - 1), and r_rho a one-hidden-layer ReLU network (``hidden`` units; the
    paper used 2 or 4 ReLU layers of 200 units on MNIST) of x~ per data point, shared by the data
    points. The derivatives d c are taken by backpropagation into each relaxed layer's input
    y_k = a_k + eps_k (autograd), and become parameter gradients with that layer's input, as in
    ``rebar``; the head gets the pathwise gradient of the hard path (the control-variate terms
    have zero mean there). With r_rho = 0 this is ``rebar(tau, eta)``, term by term.

    Training (the paper's Eq. 6 and Algorithm 1): d Var(g) / d phi = E[d |g|^2 / d phi] because
    E[g] does not depend on phi, so each step takes the mean over ``train_draws`` draws of
    d |g|^2 / d phi (|g|^2 summed over every parameter; the head's part does not depend on phi)
    by double backpropagation and makes an Adam step of size ``lr``. r_rho's output layer starts
    at zero, its hidden layer from U(+-1/sqrt(D)) drawn from the generator, eta and tau at the
    hyperparameters: ``train_steps = 0`` is ``rebar(tau, eta)`` on the same noise (tested draw
    for draw), and an identically zero loss keeps phi where it started (the gradient of |g|^2 is
    0 at g = 0). Unbiased for every fixed phi; phi is trained on draws before, and independent
    of, the measured draws (module docstring), so the measured draws are unbiased.

    Cost of a measured draw: 1 hard + 2 relaxed loss evaluations (``evals_per_draw`` = 3, as
    ``rebar``), 2 evaluations of r_rho and 2 backward passes through the relaxed network.
    Training, once per ``draw`` call: train_steps x train_draws draws, each the same 3 loss
    evaluations plus a double backward pass (about 3-4x a draw's time).
    Requires the head and layers to accept real inputs (for the surrogate, not for unbiasedness).
    Reference: Grathwohl et al., ICLR 2018, arXiv 1711.00123; authors' code duvenaud/relax
    (``relax-autograd/relax.py``: surrogate exp(log eta) nn(relaxed sample), variance gradient
    as the vjp of 2 g / S). The deep joint form is ``rebar``'s, re-derived there.
    """

    name = "relax"
    unbiased = "yes"
    reference = "Grathwohl, Choi, Wu, Roeder & Duvenaud, ICLR 2018, arXiv 1711.00123"
    verified = (
        "`train_steps=0` equals `rebar` on the same noise draw for draw (to 1e-12; three "
        "networks, two (τ, η)); trained: statistically unbiased (both codings, three noises, "
        "defaults and a longer training at τ = 0.2); training lowers the binary layers' "
        "variance (99.9 % interval of the log ratio below 0, two networks, measured −8 to −9 % "
        "at about 10 SE); negative control: the conditional relaxed sample's dependence on θ "
        "dropped"
    )
    tests = ("tests/test_learned_estimators.py",)
    hyperparameters = {
        "tau": Hyper(0.5, float, minimum=0.0, exclusive=True, help="initial temperature"),
        "eta": Hyper(1.0, float, help="initial scale of eta l(relaxed)"),
        "hidden": Hyper(32, int, minimum=1, help="hidden units of r_rho"),
        "train_steps": Hyper(100, int, minimum=0, help="Adam steps on the variance (0: REBAR)"),
        "train_draws": Hyper(16, int, minimum=2, help="draws per training step"),
        "lr": Hyper(0.01, float, minimum=0.0, exclusive=True, help="Adam step size"),
    }

    def evals_per_draw(self, model: SBN) -> float:
        return 3.0

    def bytes_per_draw(self, problem: Problem) -> int:
        extra = 8 * problem.n_points * 8 * self.params["hidden"]
        return 8 * super().bytes_per_draw(problem) + extra

    def noise_shapes(self, problem: Problem) -> list[tuple[int, ...]]:
        return _layer_shapes(problem) * 2  # u_1..u_L, then v_1..v_L (as rebar)

    def initial_surrogate(self, problem: Problem, generator: torch.Generator) -> RelaxSurrogate:
        X = problem.X
        D, H = sum(problem.model.widths), self.params["hidden"]
        bound = 1.0 / math.sqrt(D)
        W1 = (2 * uniforms((H, D), generator, X) - 1) * bound
        b1 = (2 * uniforms((H,), generator, X) - 1) * bound
        zero = torch.zeros((), dtype=X.dtype, device=X.device)
        return RelaxSurrogate(
            log_tau=zero + math.log(self.params["tau"]),
            eta=zero + self.params["eta"],
            W1=W1,
            b1=b1,
            w2=torch.zeros(H, dtype=X.dtype, device=X.device),
            b2=zero.clone(),
        )

    def prepare(self, problem: Problem, generator: torch.Generator) -> RelaxSurrogate:
        phi = self.initial_surrogate(problem, generator)
        S = self.params["train_draws"]

        def variance(tensors: list[Tensor]) -> Tensor:
            noise = self.sample_noise(problem, S, generator)
            g = self.estimate(problem, noise, RelaxSurrogate.of(tensors), create_graph=True)
            return (g * g).sum(-1).mean()

        steps = self.params["train_steps"]
        return RelaxSurrogate.of(adam(phi.tensors(), variance, steps, self.params["lr"]))

    def estimate(
        self,
        problem: Problem,
        noise: Sequence[Tensor],
        context: Any = None,
        *,
        create_graph: bool = False,
    ) -> Tensor:
        phi: RelaxSurrogate = context
        with torch.enable_grad():
            out = self._estimate(problem, noise, phi, create_graph)
        return out if create_graph else out.detach()

    @staticmethod
    def conditional_noise_derivative(
        problem: Problem,
        a: Tensor,
        p: Tensor,
        q: Tensor,
        on: Tensor,
        v: Tensor,
        w: Tensor,
        e0: Tensor,
    ) -> Tensor:
        """d eps~ / d a for the conditional noise eps~ = -F^{-1}(p (1 - v)) (on) or F^{-1}(q v)
        (off), w the argument of F^{-1} and e0 = F^{-1}(w): -F'(a)(1 - v) / F'(e0) (on),
        -F'(a) v / F'(e0) (off), as in ``rebar``."""
        F = problem.model.noise
        if F.name == "logistic":  # F'(a) / F'(e0) = p q / (w (1 - w)), simplified
            return -torch.where(on, q, p) / (1 - w)
        dens = F.pdf(e0)
        ok = dens > 0
        dnum = torch.where(on, 1 - v, v)
        return -torch.where(ok, F.pdf(a) * dnum / torch.where(ok, dens, 1.0), 0.0)

    def _estimate(
        self, problem: Problem, noise: Sequence[Tensor], phi: RelaxSurrogate, create_graph: bool
    ) -> Tensor:
        m = problem.model
        L, F = m.depth, m.noise
        X = problem.X
        eps = torch.finfo(X.dtype).eps
        us = [u.clamp(eps, 1 - eps) for u in noise[:L]]
        vs = [v.clamp(eps, 1 - eps) for v in noise[L:]]
        tau = phi.log_tau.exp()

        def linear(k: int, x: Tensor) -> Tensor:
            return x @ m.weights[k].T + m.biases[k]

        def relax(y: Tensor) -> Tensor:
            s = torch.sigmoid(y / tau)
            return s if m.coding == "01" else 2 * s - 1

        # Hard path, conditional noise and its derivative (no dependence on phi).
        xs: list[Tensor] = []
        scores, deps, eps_cond, soft_eps = [], [], [], []
        a = linear(0, X).expand(us[0].shape)
        for k in range(L):
            if k > 0:
                a = linear(k, xs[-1])
            p, q = F.cdf(a), F.cdf(-a)
            b = (us[k] > q).to(a.dtype)
            on = b == 1
            w = torch.where(on, p * (1 - vs[k]), q * vs[k]).clamp_min(torch.finfo(a.dtype).tiny)
            e0 = F.icdf(w)
            eps_cond.append(torch.where(on, -e0, e0))
            deps.append(self.conditional_noise_derivative(problem, a, p, q, on, vs[k], w, e0))
            soft_eps.append(F.icdf(us[k]))
            xs.append(encode(b, m.coding))
            scores.append(F.score(a, p, b))
        z = linear(L, xs[-1])
        f = point_losses(problem, z)

        def relaxed_path(noises: list[Tensor]) -> tuple[list[Tensor], list[Tensor], Tensor]:
            """The inputs y_k = a_k + noise_k (leaves of the backward pass into the network), the
            relaxed states x~_k, and c_phi per point [S, N]."""
            ys, rx = [], []
            x = X
            for k in range(L):
                y = linear(k, x) + noises[k]
                if k == 0:  # depends on nothing that is differentiated: made a leaf
                    y = y.detach().requires_grad_(True)
                x = relax(y)
                ys.append(y)
                rx.append(x)
            c = phi.eta * point_losses(problem, linear(L, x)) + phi.r(torch.cat(rx, -1))
            return ys, rx, c

        ys_soft, x_soft, c_soft = relaxed_path(soft_eps)
        ys_cond, x_cond, c_cond = relaxed_path(eps_cond)
        g_soft = torch.autograd.grad(c_soft.sum(), ys_soft, create_graph=create_graph)
        g_cond = torch.autograd.grad(c_cond.sum(), ys_cond, create_graph=create_graph)
        signal = (f - c_cond)[..., None]
        hard_in, soft_in, cond_in = [X, *xs], [X, *x_soft], [X, *x_cond]
        terms: list[list[Contribution]] = []
        for k in range(L):
            terms.append(
                [
                    (signal * scores[k] - g_cond[k] * deps[k], hard_in[k]),
                    (g_soft[k], soft_in[k]),
                    (-g_cond[k], cond_in[k]),
                ]
            )
        terms.append([(head_grad(problem, z), xs[-1])])
        return assemble(problem, terms, per_point=False)


ESTIMATORS: list[type[Estimator]] = [RELAX]
