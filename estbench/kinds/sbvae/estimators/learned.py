"""Control variates learned online for the ``sbvae`` kind: RELAX, as the sbn kind's ``relax``
(``estbench.kinds.sbn.estimators.learned``, whose protocol this follows: ``prepare`` initialises
the surrogate's parameters phi from the draw call's generator and runs ``train_steps`` steps of
Adam on the single-batch estimate of the variance's gradient, each on ``train_draws`` fresh draws
from the same generator; phi is then frozen and the measured draws follow. The estimator is
unbiased for every fixed phi and the measured draws are independent of the draws that trained
it, so they are unbiased whatever the training did). Shared notation and the encoder's pathwise
term: ``base``; the relaxation and REBAR's paths: ``relaxed``, ``control_variates``."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Hyper
from ....rng import uniforms
from ...sbn.estimators.learned import RelaxSurrogate, adam
from ..model import SBVAE, VAEProblem
from .base import VAEEstimator, held, layer_uniforms, logistic_noise, per_draw, signal
from .relaxed import conditional_logistic, relaxed_states


class VAERELAX(VAEEstimator):
    """RELAX (Grathwohl, Choi, Wu, Roeder & Duvenaud, ICLR 2018) with its learned surrogate,
    joint deep form, for the negative ELBO, trained online by minimising its own variance.

    The estimator (the paper's Eq. 8, "RELAX"), on ``vae-rebar``'s paths (its docstring: hard
    path z from uniforms u, z_k on iff u_k < sigmoid(alpha_k); soft relaxed path
    z~_k = sigmoid((e_k(z~_{k-1}) + L_k) / tau) with L_k = logit(1 - u_k); conditional relaxed
    path z~'_k from the noise L~_k ~ L | z_k drawn with fresh uniforms v_k from the *hard*
    logits):

        g = -(1/N) sum_n [ (f(z) - kappa - c_phi(z~')) grad_phi log q(z | x_n)
                           + grad_phi c_phi(z~) - grad_phi c_phi(z~')
                           + grad_theta log p(x_n, z) ],

    c_phi(z~) = eta f_held(z~) + r_rho(z~), f_held the integrand at relaxed states with every
    model parameter held (as ``vae-rebar``'s c) and r_rho a one-hidden-layer ReLU network
    (``hidden`` units) of the concatenated relaxed layers of one data point, shared by the
    points (the sbn kind's ``RelaxSurrogate``); phi = (log tau, eta, rho), as in the paper's
    discrete-VAE experiments (Sec. 3.3: c_phi(z) = f(sigma_lambda(z)) + r_rho(z), with REBAR's
    learned eta as the authors' code). grad c_phi(z~) is pathwise at u fixed; grad c_phi(z~')
    the total derivative at z and v fixed (through e_k and through L~_k's dependence on the hard
    logits). Unbiased in every parameter for any fixed phi (the REBAR identity holds for any
    surrogate of the relaxed states; claim "yes"). Decoder: pathwise at the sampled z (c_phi
    holds the decoder's parameters). Encoder's pathwise term: ``path`` (kappa = 1 when "keep";
    default "drop", as the papers' VAE experiments).

    Training (the paper's Eq. 6 and Algorithm 1): d Var(g) / d phi = E[d |g|^2 / d phi] since
    E[g] does not depend on phi; each step takes the mean over ``train_draws`` draws of
    d |g|^2 / d phi (|g|^2 summed over every parameter) by double backpropagation and makes an
    Adam step of size ``lr`` (the sbn kind's ``adam``). The learning signal f - kappa - c_phi(z~')
    is held for the model's parameters and live for phi. r_rho's output layer starts at zero,
    its hidden layer from U(+-1/sqrt(D)) drawn from the generator (D = sum_k n_k), eta and tau
    at the hyperparameters. ``train_steps = 0``: no training, and nothing drawn for r_rho (its
    output is 0 whatever its hidden layer), so ``vae-relax(train_steps=0)`` is
    ``vae-rebar(tau, eta)`` on the same noise, and from the same generator, draw for draw (to
    rounding: tau = exp(log tau)).

    Cost of a measured draw: 1 hard + 2 relaxed evaluations of f (``evals_per_draw`` = 3, as
    ``vae-rebar``), 2 evaluations of r_rho and 2 backward passes through the relaxed encoder.
    Training, once per ``draw`` call: train_steps x train_draws draws, each the same 3
    evaluations plus a double backward pass.
    Reference: Grathwohl et al., "Backpropagation through the void: optimizing control variates
    for black-box gradient estimation", ICLR 2018, arXiv 1711.00123, Eq. 8 (RELAX), Eq. 6 and
    Algorithm 1 (training), Sec. 3.3 (surrogate of the discrete VAE experiments); equation
    numbers as the sbn kind read them in the paper's source, duvenaud/relax
    ``paper/generalized_rebar.tex``; authors' code duvenaud/relax (``relax-autograd/relax.py``).
    The deep joint form is ``vae-rebar``'s.
    """

    name = "vae-relax"
    unbiased = "yes"
    reference = "Grathwohl, Choi, Wu, Roeder & Duvenaud, ICLR 2018, arXiv 1711.00123"
    verified = (
        "`train_steps=0` equals `vae-rebar` from the same generator draw for draw (to 1e-12; "
        "three small VAEs, two (τ, η), path dropped and kept); the training's variance gradient "
        "against central finite differences; trained: conformance check (statistical; path "
        "dropped, 100 steps, and kept, 30 steps); training lowers the encoder's variance below "
        "`vae-rebar`'s (99.9 % interval of the log ratio below 0; measured about −0.2); negative "
        "control: the conditional noise's dependence on the hard logits dropped fails the check"
    )
    tests = ("tests/test_sbvae_more.py",)
    hyperparameters = {
        **VAEEstimator.hyperparameters,
        "tau": Hyper(0.5, float, minimum=0.0, exclusive=True, help="initial temperature"),
        "eta": Hyper(1.0, float, help="initial scale of eta f(relaxed)"),
        "hidden": Hyper(32, int, minimum=1, help="hidden units of r_rho"),
        "train_steps": Hyper(100, int, minimum=0, help="Adam steps on the variance (0: REBAR)"),
        "train_draws": Hyper(16, int, minimum=2, help="draws per training step"),
        "lr": Hyper(0.01, float, minimum=0.0, exclusive=True, help="Adam step size"),
    }

    def evals_per_draw(self, model: SBVAE) -> float:
        return 3.0

    def bytes_per_draw(self, problem: VAEProblem) -> int:
        extra = 8 * problem.n_points * 8 * self.params["hidden"]
        return super().bytes_per_draw(problem) + extra

    def initial_surrogate(self, problem: VAEProblem, generator: torch.Generator) -> RelaxSurrogate:
        """phi at the start: log tau and eta at the hyperparameters, r_rho's output layer 0 and
        its hidden layer from U(+-1/sqrt(D)) (zeros, drawing nothing, when ``train_steps`` = 0)."""
        X = problem.X
        D, H = sum(problem.model.latent), self.params["hidden"]
        if self.params["train_steps"] > 0:
            bound = 1.0 / math.sqrt(D)
            W1 = (2 * uniforms((H, D), generator, X) - 1) * bound
            b1 = (2 * uniforms((H,), generator, X) - 1) * bound
        else:
            W1, b1 = X.new_zeros(H, D), X.new_zeros(H)
        zero = X.new_zeros(())
        return RelaxSurrogate(
            log_tau=zero + math.log(self.params["tau"]),
            eta=zero + self.params["eta"],
            W1=W1,
            b1=b1,
            w2=X.new_zeros(H),
            b2=zero.clone(),
        )

    def prepare(self, problem: VAEProblem, generator: torch.Generator) -> RelaxSurrogate:
        phi = self.initial_surrogate(problem, generator)
        steps = self.params["train_steps"]
        if steps == 0:
            return phi
        S = self.params["train_draws"]

        def variance(tensors: list[Tensor]) -> Tensor:
            u = layer_uniforms(problem, (S,), generator)
            v = layer_uniforms(problem, (S,), generator)
            g = self.estimates(problem, u, v, RelaxSurrogate.of(tensors))
            return (g * g).sum(-1).mean()

        return RelaxSurrogate.of(adam(phi.tensors(), variance, steps, self.params["lr"]))

    def _draw(
        self, problem: VAEProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        u = layer_uniforms(problem, (n_draws,), generator)
        v = layer_uniforms(problem, (n_draws,), generator)
        return self.estimates(problem, u, v, context).detach()

    def estimates(
        self,
        problem: VAEProblem,
        u: list[Tensor],
        v: list[Tensor],
        phi: RelaxSurrogate,
        *,
        live_conditional: bool = True,
    ) -> Tensor:
        """[S, P] for given uniforms and surrogate, differentiable wrt phi's tensors (the
        training's double backpropagation). ``live_conditional = False`` holds the hard logits in
        the conditional noise L~ (its derivative through them dropped): a deliberately biased
        variant for the tests' negative control."""
        X, keep = problem.X, self.keep
        tau, eta = phi.log_tau.exp(), phi.eta

        def paths(mm: SBVAE, uu: list[Tensor], vv: list[Tensor], live: bool) -> tuple[Any, Any]:
            """The hard states and the conditional noise L~ (from the hard logits)."""
            below, z, cond = X, [], []
            for k in range(1, mm.n_latent + 1):
                alpha = mm.encoder_logits(k, below)
                below = (uu[k - 1] < torch.sigmoid(alpha.detach())).to(X.dtype)
                z.append(below)
                logits = alpha if live else alpha.detach()
                cond.append(conditional_logistic(logits, below, vv[k - 1]))
            return z, cond

        def control(frozen: SBVAE, states: list[Tensor]) -> Tensor:
            """c_phi of relaxed states, per draw and point."""
            return eta * signal(frozen, X, states) + phi.r(torch.cat(states, -1))

        # The learning signal, computed outside the per-draw gradients: held for the model's
        # parameters, a function of phi (a detach would cut both).
        m = problem.model
        z, cond = paths(m, u, v, True)
        weight = signal(m, X, z) - keep - control(m, relaxed_states(m, X, cond, tau))

        def surrogate(mm: SBVAE, uu: list[Tensor], vv: list[Tensor], ww: Tensor) -> Tensor:
            frozen = held(mm, encoder=True, decoder=True)
            zz, cc = paths(mm, uu, vv, live_conditional)
            soft = relaxed_states(mm, X, [logistic_noise(w) for w in uu], tau)
            c_soft = control(frozen, soft)
            c_cond = control(frozen, relaxed_states(mm, X, cc, tau))
            total = ww * mm.log_posterior(X, zz) + mm.log_joint(X, zz) + c_soft - c_cond
            return -total.mean(-1)

        return per_draw(problem, surrogate, u, v, weight)


ESTIMATORS = (VAERELAX,)
