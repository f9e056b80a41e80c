"""What every estimator of the ``sbvae`` kind shares: sampling z ~ q(z | x) from uniforms, the
learning signal f = log p(x, z) - log q(z | x), and per-draw gradients of surrogates.

One draw estimates the gradient of J = -(1/N) sum_n E_q[f(x_n, z)] wrt every encoder (phi) and
decoder (theta) parameter, each data point with its own noise. By the product rule,

    grad J = -(1/N) sum_n E_q[ f grad_phi log q(z | x_n)          (the score term)
                              + grad_theta log p(x_n, z)            (decoder: pathwise)
                              - grad_phi log q(z | x_n) ],          (encoder: pathwise)

and the last term has expectation 0 (E_q[grad log q] = grad sum_z q = 0). Every estimator here
takes the decoder term at its sampled z, and states in its docstring how it treats the encoder's
pathwise term; the ``path`` hyperparameter chooses: "drop" (the default, as NVIL, Mnih & Gregor
2014, and the ARM/DisARM experiments, which differentiate E_q[f] with f's parameters held) or
"keep" (the term at the sampled z; also unbiased, with its own variance).

A draw's gradient is the gradient of a scalar surrogate of that draw's samples, computed for all
draws at once by ``torch.func.vmap`` over ``torch.func.grad`` (no Python loop over draws).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Estimator, Hyper
from ....rng import uniforms
from ..model import SBVAE, VAEProblem

PATH = Hyper(
    "drop",
    str,
    choices=("drop", "keep"),
    help="the encoder's pathwise -grad log q(z|x) term: dropped (expectation 0) or kept",
)


def layer_uniforms(problem: VAEProblem, lead: tuple[int, ...], g: torch.Generator) -> list[Tensor]:
    """One uniform per latent unit, data point and draw: [*lead, N, n_k] for k = 1..L."""
    N = problem.n_points
    return [uniforms((*lead, N, n), g, problem.X) for n in problem.model.latent]


def sample(model: SBVAE, below: Tensor, u: list[Tensor], start: int = 1) -> list[Tensor]:
    """z_start .. z_L, layer k on iff u_k < sigmoid(e_k(z_{k-1})), from z_{start-1} = ``below``
    (``u``: the uniforms of every layer, u[k - 1] for layer k)."""
    out = []
    for k in range(start, model.n_latent + 1):
        p = torch.sigmoid(model.encoder_logits(k, below))
        below = (u[k - 1] < p).to(p.dtype)
        out.append(below)
    return out


def signal(model: SBVAE, x: Tensor, z: list[Tensor]) -> Tensor:
    """f = log p(x, z) - log q(z | x), per draw and point."""
    return model.log_joint(x, z) - model.log_posterior(x, z)


def per_draw(problem: VAEProblem, surrogate: Callable[..., Tensor], *batched: Any) -> Tensor:
    """[S, P]: for every draw s, the gradient wrt all parameters of ``surrogate(model,
    *batched[s])`` (a scalar), flattened in the model's order (``SBVAE.flat``)."""
    from torch.func import grad, vmap

    m = problem.model

    def one(params: dict[str, Tensor], *args: Any) -> Tensor:
        return surrogate(m.replace(params), *args)

    in_dims = (None, *[0] * len(batched))
    g = vmap(grad(one), in_dims=in_dims)(dict(m.params), *batched)
    S = next(iter(g.values())).shape[0]
    return torch.cat([g[k].reshape(S, -1) for k in m.keys], 1)


def logit_estimates(problem: VAEProblem, z: list[Tensor], G: list[Tensor], keep: float) -> Tensor:
    """[S, P]: per draw, the gradient of the surrogate

        -(1/N) sum_n [ sum_k G_k . alpha_k(z_{k-1}) + log p(x_n, z) - keep log q(z | x_n) ]

    at the states z ([S, N, n_k] per layer) with the logit-gradient estimates G_k ([S, N, n_k],
    held): G_k goes to the encoder through alpha_k = e_k at the *sampled* z_{k-1}, the decoder
    gets its pathwise gradient at z, and the encoder's pathwise -grad_phi log q term is kept when
    ``keep`` is 1. The assembly of every estimator that estimates the encoder's logit gradients
    layer by layer (ARM, DisARM, ARMS, CARMS, Tokui-Sato, LEG)."""
    X, L = problem.X, problem.model.n_latent

    def surrogate(mm: SBVAE, zz: list[Tensor], gg: list[Tensor]) -> Tensor:
        below = [X, *zz[:-1]]
        total = mm.log_joint(X, zz) - keep * mm.log_posterior(X, zz)
        for k in range(1, L + 1):
            total = total + (gg[k - 1] * mm.encoder_logits(k, below[k - 1])).sum(-1)
        return -total.mean(-1)

    return per_draw(problem, surrogate, z, [g.detach() for g in G])


def flips(z: Tensor) -> Tensor:
    """[n, *z.shape]: z ([..., n], 0/1) with unit j toggled, for each j = 0..n-1 (leading)."""
    n = z.shape[-1]
    eye = torch.eye(n, dtype=z.dtype, device=z.device).reshape(n, *[1] * (z.dim() - 1), n)
    return (z - eye).abs()


def held(model: SBVAE, *, encoder: bool, decoder: bool) -> SBVAE:
    """``model`` with the encoder's (``q_*``) and/or the decoder's (``p_*``, the prior included)
    parameters detached: a function of them evaluated on this copy passes no gradient to them
    (inside ``torch.func.grad`` too), while the inputs it is evaluated at still do."""
    params = {
        k: v.detach() if (encoder and k.startswith("q_")) or (decoder and k.startswith("p_")) else v
        for k, v in model.params.items()
    }
    return model.replace(params)


def open_unit(u: Tensor) -> Tensor:
    """u clamped into the open interval (0, 1), so that its logit is finite."""
    info = torch.finfo(u.dtype)
    return u.clamp(info.tiny, 1 - info.eps / 2)


def logistic_noise(u: Tensor) -> Tensor:
    """L = logit(1 - u) = -logit(u): the logistic noise of a unit drawn with uniform u under the
    kind's convention (on iff u < sigmoid(alpha) iff alpha + L > 0)."""
    u = open_unit(u)
    return torch.log1p(-u) - torch.log(u)


def integrand(model: SBVAE, x: Tensor, z: list[Tensor], *, keep: float) -> Tensor:
    """f = log p(x, z) - log q(z | x) per draw and point, for states z that may carry gradients
    (straight-through or relaxed): the -log q term is evaluated with the encoder's parameters
    held unless ``keep`` is 1, so that only its dependence on z passes gradient
    (``path = "drop"``) or also its pathwise -grad_phi log q term (``"keep"``)."""
    q_model = model if keep else held(model, encoder=True, decoder=False)
    return model.log_joint(x, z) - q_model.log_posterior(x, z)


class VAEEstimator(Estimator[VAEProblem, SBVAE]):
    """Base class of the ``sbvae`` kind's estimators (module docstring): ``path`` chooses the
    treatment of the encoder's pathwise term."""

    problem = "sbvae"
    family = "score-function"
    unbiased = "yes"
    hyperparameters = {"path": PATH}

    @property
    def keep(self) -> float:
        """1 when the encoder's pathwise term is kept, else 0: the score-term weight of a
        learning signal f - c becomes f - c - keep (grad_phi f = -grad_phi log q)."""
        return 1.0 if self.params["path"] == "keep" else 0.0

    def bytes_per_draw(self, problem: VAEProblem) -> int:
        """The samples, signals and per-draw gradients of a draw (with vmap's copies)."""
        m = problem.model
        units = sum(m.latent) + m.data_dim + sum(m.hidden) * 2 * m.n_latent
        evals = int(self.evals_per_draw(m))
        return 8 * (4 * problem.n_points * units * evals + 4 * problem.n_params)


class VAEPathEstimator(VAEEstimator):
    """An estimator whose only randomness is the sampled latent path z ~ q(z | x_n), one per
    point: a draw is (1/N) sum_n g_n(z_n) with g_n a function of x_n, z_n and the prepared
    ``context`` (held for a ``draw`` call) alone, so that its exact mean and variance follow by
    enumerating the latent states per point (``estbench.kinds.sbvae.moments``). Subclasses give
    ``path_estimates``: the estimate of each row of given states."""

    @abstractmethod
    def path_estimates(self, problem: VAEProblem, z: list[Tensor], context: Any) -> Tensor:
        """[S, P]: the estimate of each draw of the states z ([S, N, n_k] per layer, 0/1),
        averaged over the N points of ``problem``; ``context`` as ``prepare`` made it."""
