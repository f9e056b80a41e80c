"""Local-expectation estimators of the ``sbvae`` kind: Tokui-Sato (the discrete
reparameterization: every unit flipped, the layers above recomputed with the same noise) and LEG
(local expectation gradients: every unit's own state summed out against its Markov blanket), as
the sbn kind's ``tokui-sato`` and ``leg`` (``estbench.kinds.sbn.estimators``). Shared notation and
the encoder's pathwise term: ``base``.

Both estimate, for every latent unit j of layer k, the derivative of the expected integrand wrt
its logit alpha_kj exactly in that unit's own state, given the rest, and take the encoder's
gradient layer by layer (``base.logit_estimates``):

    g = -(1/N) sum_n [ sum_k G_k . grad_phi alpha_k(z_{k-1}) + grad_theta log p(x_n, z)
                       - kappa grad_phi log q(z | x_n) ].

The integrand and -log q. f = log p(x, z) - log q(z | x) is a function of the states with every
parameter held at its value (the score-function part: grad E_q[f] = grad E_q[f_held] +
E_q[grad f], and E_q[grad_phi f] = -E_q[grad_phi log q] = 0). Its value depends on a unit's state
through every term that contains it -- the decoder's factors, the unit's own log-mass
log q(z_kj | z_{k-1}) and, above it, log q(z_{k+1} | z_k) -- and the local expectations below sum
exactly over it. The parameters' own dependence through -log q, the pathwise term, is ``path``:
dropped (default, expectation 0, as the other score-function estimators of the kind and the
authors' LEG code) or kept at the sampled z (kappa = 1). Tokui-Sato also offers ``"entropy"``,
the authors' treatment (beam2d/sbn, ``compute_reparameterized_local_expectation`` and
``DiscreteReparameterizationEstimator``): every -log q(z_l | z_{l-1}) replaced by its conditional
entropy H_l(z_{l-1}) = sum_j softplus(alpha_lj) - p_lj alpha_lj given the layer below (E_q[f] is
unchanged), the entropies' own parameter dependence differentiated directly at the sampled z (a
term of the gradient, not of expectation 0). Decoder: pathwise at the sampled z, unbiased.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Hyper
from ..model import SBVAE, VAEProblem, log_bernoulli
from .base import (
    VAEEstimator,
    VAEPathEstimator,
    flips,
    layer_uniforms,
    logit_estimates,
    per_draw,
    sample,
    signal,
)


def conditional_entropies(model: SBVAE, x: Tensor, z: list[Tensor]) -> Tensor:
    """sum_l H(q(z_l | z_{l-1})) for the states z (z_0 = x): the entropies of every latent
    layer's Bernoullis given the sampled layer below, H = softplus(alpha) - sigmoid(alpha) alpha
    per unit."""
    below = [x, *z[:-1]]
    total: Tensor | None = None
    for k in range(1, model.n_latent + 1):
        a = model.encoder_logits(k, below[k - 1])
        h = (torch.nn.functional.softplus(a) - torch.sigmoid(a) * a).sum(-1)
        total = h if total is None else total + h
    assert total is not None
    return total


class VAETokuiSato(VAEEstimator):
    """Tokui & Sato's discrete reparameterization for the negative ELBO: local expectations with
    common random numbers, as the sbn kind's ``tokui-sato``. Sample z with uniforms u (z_k on
    iff u_k < sigmoid(alpha_k)); for every latent layer k and unit j, set z_kj on and off (one of
    them is the sample), recompute the layers above with the *same* u_{>k} (the reparameterized
    downstream path, a deterministic function of z_k), and take

        G_kj = sigmoid'(alpha_kj) (f(z_kj on) - f(z_kj off)),

    f as in the module docstring (parameters held): with u_{>k} fixed, each evaluation estimates
    E[f | z_kj = s, z_{k,-j}, z_{<k}], so G_kj is unbiased for d E[f | z_{<k}] / d alpha_kj, the
    unit's local expectation; unbiased in every parameter at any depth (claim "yes"). ``path``:
    "drop" (default) or "keep" the encoder's pathwise term at the sample, or "entropy", the
    authors' treatment (module docstring): f~ = log p(x, z) + sum_l H(q(z_l | z_{l-1})) in place
    of f in the flips, and the entropies differentiated directly at the sampled z. On one latent
    layer (nothing above to recompute) it is ``vae-leg`` draw for draw (path dropped or kept).
    Cost: 1 + sum_k n_k
    evaluations of f (each flip a full evaluation of the layers it changes).
    Reference: Tokui & Sato, "Evaluating the variance of likelihood-ratio gradient estimators",
    ICML 2017 (PMLR 70:3414-3423), arXiv 1611.01239; as the sbn kind, checked against beam2d/sbn
    ``compute_reparameterized_local_expectation`` (flips, layers above with the same noise,
    gradient through q(z_j) (vb - vb_flipped); there, re-read for this kind, the entropies
    marginalized and differentiated directly: our ``path = "entropy"``). Equation numbers: none
    in the sbn kind's provenance, not read here (UNVERIFIED).
    """

    name = "vae-tokui-sato"
    unbiased = "yes"
    reference = "Tokui & Sato, ICML 2017 (PMLR 70:3414-3423), arXiv 1611.01239"
    verified = (
        "exact: its expectation, integrating the uniforms of the layers above cell by cell "
        "(the estimate is piecewise constant in them), equals the exact gradient to 1e-12 (one "
        "and two latent layers, linear and tanh; path dropped, kept and entropy); on one latent "
        "layer it is `vae-leg` draw for draw; conformance check; negative control: the flips "
        "without recomputing the layers above are off on the two-layer VAE"
    )
    tests = ("tests/test_sbvae_more.py",)
    hyperparameters = {
        "path": Hyper(
            "drop",
            str,
            choices=("drop", "keep", "entropy"),
            help="-log q: its pathwise term dropped or kept, or each -log q(z_l | z_{l-1}) "
            "replaced by its conditional entropy (the authors' code)",
        ),
    }

    def evals_per_draw(self, model: SBVAE) -> float:
        return 1.0 + sum(model.latent)

    def _draw(
        self, problem: VAEProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        return self.estimates(problem, layer_uniforms(problem, (n_draws,), generator))

    def integrand(self, model: SBVAE, x: Tensor, z: list[Tensor]) -> Tensor:
        """f (or f~ with path = "entropy") of the states z, every parameter held."""
        if self.params["path"] == "entropy":
            return model.log_joint(x, z) + conditional_entropies(model, x, z)
        return signal(model, x, z)

    def estimates(self, problem: VAEProblem, u: list[Tensor], *, above: bool = True) -> Tensor:
        """[S, P] for the uniforms u ([S, N, n_k] per layer). ``above = False`` keeps the layers
        above a flipped one at their sampled states instead of recomputing them: a deliberately
        biased variant for the tests' negative control."""
        m, X = problem.model, problem.X
        z = sample(m, X, u)
        f = self.integrand(m, X, z)
        below = [X, *z[:-1]]
        G = []
        for k in range(1, m.n_latent + 1):
            p = torch.sigmoid(m.encoder_logits(k, below[k - 1]))
            flipped = flips(z[k - 1])  # [n_k, S, N, n_k]
            rest = sample(m, flipped, u, start=k + 1) if above else z[k:]
            f_flip = self.integrand(m, X, [*z[: k - 1], flipped, *rest]).movedim(0, -1)
            G.append(p * (1 - p) * (2 * z[k - 1] - 1) * (f[..., None] - f_flip))
        if self.params["path"] != "entropy":
            return logit_estimates(problem, z, G, self.keep)

        def surrogate(mm: SBVAE, zz: list[Tensor], gg: list[Tensor]) -> Tensor:
            below = [X, *zz[:-1]]
            total = mm.log_joint(X, zz) + conditional_entropies(mm, X, zz)
            for k in range(1, mm.n_latent + 1):
                total = total + (gg[k - 1] * mm.encoder_logits(k, below[k - 1])).sum(-1)
            return -total.mean(-1)

        return per_draw(problem, surrogate, z, [g.detach() for g in G])


class VAELocalExpectation(VAEPathEstimator):
    """Local expectation gradients (LEG) for the negative ELBO: every latent unit's own state
    summed out exactly against its Markov blanket in q, as the sbn kind's ``leg``
    (``form=markov-blanket``). For unit j of layer k, with the rest of the sampled z held (its
    parents z_{k-1}, its layer, its children z_{k+1} and above), f_s = f(z with z_kj = s)
    (module docstring: every term containing the unit, parameters held), p = sigmoid(alpha_kj)
    and the unit's posterior given its Markov blanket in q

        pi = q(z_kj = 1 | z_{-kj}) = sigmoid(alpha_kj + log R(1) - log R(0)),
        R(s) = q(z_{k+1} | z_k with z_kj = s)    (R = 1 for the last layer),

    the estimate sum_s q(z_kj = s | z_{-kj}) f_s d log q(s | z_{k-1}) / d alpha_kj, i.e.

        G_kj = pi (1 - p) f_1 - (1 - pi) p f_0.

    Its expectation over the rest is sum_z q(z) f(z) (z_kj - p) = d E_q[f] / d alpha_kj (f held),
    exactly, at every depth: unbiased in every parameter (claim "yes"). For the last layer
    (pi = p) it is the single-layer LEG of Titsias & Lazaro-Gredilla, p (1 - p)(f_1 - f_0); for
    the sbn kind's loss of the last layer alone (f_1 = f_0 below it) it is that kind's
    Markov-blanket form f (pi - p). This kind has no ``form=single-layer`` (in an ELBO every layer
    enters f directly; holding the children without the Markov-blanket weight is biased, the
    tests' negative control). ``path``: the encoder's pathwise term dropped (default, as the
    authors' code) or kept. Its only randomness is the sampled path (``VAEPathEstimator``):
    exact mean and variance by enumeration. Cost: 1 + sum_k n_k evaluations of f (each flip).
    References: Titsias & Lazaro-Gredilla, "Local expectation gradients for black box variational
    inference", NeurIPS 2015, arXiv 1503.01494 (LEG; its setting is variational inference);
    the deep Markov-blanket form as in Tokui & Sato's code (beam2d/sbn ``compute_local_
    expectation``, for a variational SBN's bound: localexp = vb coeff log q(z_j) + vb_flipped
    (1 - coeff) log q(not z_j), coeff the posterior of the sampled state given its children --
    the G_kj above; re-read for this kind, the encoder's pathwise term not differentiated there:
    our default "drop"); cf. K. Young, "Hindsight network credit assignment", arXiv 2110.07700
    (equivalence UNVERIFIED, as in the sbn kind: abstracts only). Equation numbers: none in the
    sbn kind's provenance, not read here (UNVERIFIED).
    """

    name = "vae-leg"
    unbiased = "yes"
    reference = (
        "Titsias & Lazaro-Gredilla, NeurIPS 2015, arXiv 1503.01494; deep Markov-blanket form as "
        "in Tokui & Sato's code (beam2d/sbn)"
    )
    verified = (
        "exact: its expectation by enumerating every latent state equals the exact gradient to "
        "1e-12 (one and two latent layers, linear and tanh, path dropped or kept); exact path "
        "moments against brute force; conformance check (exact); negative control: the children "
        "held without the Markov-blanket weight (π = p) is off on the two-layer VAE"
    )
    tests = ("tests/test_sbvae_more.py", "tests/test_sbvae_moments.py")

    def evals_per_draw(self, model: SBVAE) -> float:
        return 1.0 + sum(model.latent)

    def _draw(
        self, problem: VAEProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        z = sample(problem.model, problem.X, layer_uniforms(problem, (n_draws,), generator))
        return self.path_estimates(problem, z, context)

    def path_estimates(self, problem: VAEProblem, z: list[Tensor], context: Any) -> Tensor:
        return self.estimates(problem, z)

    def estimates(self, problem: VAEProblem, z: list[Tensor], *, blanket: bool = True) -> Tensor:
        """[S, P] for the states z ([S, N, n_k] per layer). ``blanket = False`` leaves out the
        children's likelihood ratio (pi = p): a deliberately biased variant for the tests'
        negative control."""
        m, X, L = problem.model, problem.X, problem.model.n_latent
        f = signal(m, X, z)
        below = [X, *z[:-1]]
        G = []
        for k in range(1, L + 1):
            alpha = m.encoder_logits(k, below[k - 1])
            zk = z[k - 1]
            flipped = flips(zk)  # [n_k, S, N, n_k]
            f_flip = signal(m, X, [*z[: k - 1], flipped, *z[k:]]).movedim(0, -1)
            on = zk == 1
            f1 = torch.where(on, f[..., None], f_flip)
            f0 = torch.where(on, f_flip, f[..., None])
            logit = alpha
            if k < L and blanket:
                child = z[k]
                base = log_bernoulli(child, m.encoder_logits(k + 1, zk))  # log R(sampled)
                flip = log_bernoulli(child, m.encoder_logits(k + 1, flipped)).movedim(0, -1)
                logit = alpha + (2 * zk - 1) * (base[..., None] - flip)  # + log R(1) - log R(0)
            p, pi = torch.sigmoid(alpha), torch.sigmoid(logit)
            G.append(pi * (1 - p) * f1 - (1 - pi) * p * f0)
        return logit_estimates(problem, z, G, self.keep)


ESTIMATORS = (VAETokuiSato, VAELocalExpectation)
