"""Score-function estimators of the ``sbvae`` kind: REINFORCE (with and without a baseline) and
RLOO (LOORF). Shared notation and the encoder's pathwise term: ``base``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Hyper
from ..model import SBVAE, VAEProblem
from .base import VAEEstimator, VAEPathEstimator, layer_uniforms, per_draw, sample, signal


def _surrogate(model: SBVAE, x: Tensor, z: list[Tensor], weight: Tensor) -> Tensor:
    """-(1/N) sum_n [weight_n log q(z_n | x_n) + log p(x_n, z_n)]: its gradient is weight_n times
    the encoder's score plus the decoder's pathwise gradient (``weight`` held fixed)."""
    return -(weight * model.log_posterior(x, z) + model.log_joint(x, z)).mean(-1)


class VAEReinforce(VAEPathEstimator):
    """REINFORCE (score function) for the negative ELBO, one z ~ q(z | x_n) per point:

        g = -(1/N) sum_n [ (f_n - c_n - kappa) grad_phi log q(z_n | x_n)
                           + grad_theta log p(x_n, z_n) ]

    with f_n = log p(x_n, z_n) - log q(z_n | x_n), kappa = 1 when ``path = "keep"`` (the encoder's
    pathwise term -grad_phi log q, kept at the sample) and 0 when ``"drop"`` (the default: its
    expectation is 0). Baselines c_n (``baseline``), independent of the draw:

    * ``none``: c = 0 (Williams 1992);
    * ``frozen``: c_n = the mean of f over ``warmup`` independent z per point, drawn once per
      ``draw`` call and then held fixed (the input-dependent baseline of NVIL, Mnih & Gregor 2014,
      eq. 6-7, here estimated rather than learned);
    * ``oracle``: c_n = E_q[f_n] = ELBO_n, exactly (a reference, not a practical method).

    Unbiased in every parameter for any such baseline: E[(f - c) grad log q] = grad E_q[f] with
    f's parameters held, and the decoder's term is pathwise. Cost: 1 evaluation of f.
    Its only randomness is the sampled path (``VAEPathEstimator``): its exact mean and variance
    by enumeration, given the baseline (a ``frozen`` one is drawn once per ``draw`` call and held,
    so the draws of a call are i.i.d. given it, as the exact moments are).
    References: Williams, Machine Learning 8:229-256 (1992), eq. 11 (REINFORCE); Mnih & Gregor,
    "Neural variational inference and learning in belief networks", ICML 2014, eq. 5-7.
    """

    name = "vae-reinforce"
    reference = "Williams, Machine Learning 8:229-256 (1992); Mnih & Gregor, ICML 2014"
    verified = (
        "exact: its expectation by enumerating every latent state equals the exact gradient to "
        "1e-12 (one and two latent layers, linear and tanh, path dropped or kept, any constant "
        "baseline); exact path moments (mean and variance) against brute force and its own "
        "draws; conformance check (exact) for the baselines none, frozen and oracle; negative "
        "control: without the score term the encoder is biased and the exact check fails"
    )
    tests = ("tests/test_sbvae_estimators.py", "tests/test_sbvae_moments.py")
    hyperparameters = {
        **VAEEstimator.hyperparameters,
        "baseline": Hyper(
            "none", str, choices=("none", "frozen", "oracle"), help="c subtracted from f"
        ),
        "warmup": Hyper(100, int, minimum=1, help="samples per point for baseline=frozen"),
    }

    def prepare(self, problem: VAEProblem, generator: torch.Generator) -> Tensor | None:
        kind = self.params["baseline"]
        if kind == "oracle":
            from ..exact import exact_elbo

            elbo = exact_elbo(problem.model, problem.X, with_grad=False).elbo
            return elbo.to(dtype=problem.X.dtype, device=problem.X.device)
        if kind == "frozen":
            m = problem.model
            u = layer_uniforms(problem, (self.params["warmup"],), generator)
            return signal(m, problem.X, sample(m, problem.X, u)).mean(0)
        return None

    def _draw(
        self, problem: VAEProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        z = sample(problem.model, problem.X, layer_uniforms(problem, (n_draws,), generator))
        return self.path_estimates(problem, z, context)

    def path_estimates(self, problem: VAEProblem, z: list[Tensor], context: Any) -> Tensor:
        m, X = problem.model, problem.X
        weight = signal(m, X, z) - self.keep
        if context is not None:
            weight = weight - context
        return per_draw(problem, lambda mm, zz, w: _surrogate(mm, X, zz, w), z, weight.detach())


class VAERLOO(VAEEstimator):
    """RLOO (REINFORCE leave-one-out; the "LOORF" of the DisARM paper), K i.i.d. z^(i) per point:

        g = -(1/N) sum_n (1/K) sum_i [ (f_n^(i) - mean_{j != i} f_n^(j) - kappa)
                                         grad_phi log q(z_n^(i) | x_n)
                                       + grad_theta log p(x_n, z_n^(i)) ]

    each sample's baseline the mean of the others (independent of it, so unbiased in every
    parameter); kappa as in ``vae-reinforce`` (``path``; the pathwise term at each sample, averaged
    over the K). K = 2 is the literature's comparison at 2 evaluations, like ARM and DisARM.
    Cost: K evaluations of f.
    References: Kool, van Hoof & Welling, "Buy 4 REINFORCE samples, get a baseline for free!",
    ICLR 2019 workshop (eq. 8); Dong, Mnih & Tucker, NeurIPS 2020, arXiv 2006.10680 (LOORF).
    """

    name = "vae-rloo"
    reference = "Kool, van Hoof & Welling, ICLR 2019 DeepRLStructPred workshop"
    verified = (
        "statistical: conformance check (K = 2 and 3; z and B/SE tests against the exact "
        "gradient on three small VAEs)"
    )
    tests = ("tests/test_sbvae_estimators.py",)
    hyperparameters = {
        **VAEEstimator.hyperparameters,
        "K": Hyper(2, int, minimum=2, help="samples per point"),
    }

    def evals_per_draw(self, model: SBVAE) -> float:
        return float(self.params["K"])

    def _draw(
        self, problem: VAEProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        m, X, K = problem.model, problem.X, self.params["K"]
        z = sample(m, X, layer_uniforms(problem, (n_draws, K), generator))  # [S, K, N, n]
        f = signal(m, X, z)  # [S, K, N]
        others = (f.sum(1, keepdim=True) - f) / (K - 1)
        weight = (f - others - self.keep).detach()

        def surrogate(mm: SBVAE, zz: list[Tensor], w: Tensor) -> Tensor:
            return _surrogate(mm, X, zz, w).mean(0)  # the K samples' mean

        return per_draw(problem, surrogate, z, weight)
