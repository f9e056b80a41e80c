"""Leave-one-out REINFORCE with further control variates for the ``sbvae`` kind (issue 19): double
control variates (``vae-dcv``; Titsias & Shi, AISTATS 2022) and discrete Stein operators
(``vae-rodeo``; Shi, Zhou, Hwang, Titsias & Mackey, NeurIPS 2022), the sbn kind's ``dcv`` and
``rodeo`` (``estbench.kinds.sbn.estimators.loo_cv``, whose module docstring states both methods,
their single-layer argument and the provenance from the authors' code) on the model both papers
are stated for: a VAE with Bernoulli latent layers, f(z) = log p(x, z) - log q(z | x).

Two deep forms (``form``), the sbn kind's. ``form=path`` (default), on ``vae-rloo``'s samples: K
independent latent paths z^(1..K) ~ q(z | x_n) per data point from uniforms u ([S, K, N, n_k] per
layer, drawn as ``vae-rloo`` draws them), f_i = f(x_n, z^(i)) with every parameter held. For
latent layer k, sample i is path i's state b_i = z_k^(i) with its own upstream z_{k-1}^(i), logits
alpha_i = e_k(z_{k-1}^(i)), p_i = sigmoid(alpha_i), the score s_i = d log q(b_i | z_{k-1}^(i)) /
d alpha_i = b_i - p_i and F'(alpha_i) = p_i (1 - p_i) (the logistic noise of the sbn kind's
formulas); the gradient of sample i with respect to its bits is

    g_i = d f(x_n, z^(i)) / d z_k   (the partial derivative, the other layers held at path i's),

of f's continuous extension in z_k (log Bern(z; sigmoid(a)) = z a - softplus(a) is linear in a
real z, and the decoder and encoder logits are differentiable in their inputs): z_k enters
log p(z_{k-1} | z_k) (or log p(x | z_1)), log p(z_k | z_{k+1}) (or the prior), -log q(z_k | z_{k-1})
and -log q(z_{k+1} | z_k), so it is nonzero in every layer (the "partial" gradient of the authors'
multilayer code, which for an ELBO is not 0 below the last layer as it is for an sbn classifier).
The control variates of sample i use the other paths only, which are independent of path i, and
every expectation over b_i is taken given path i's upstream, with its own p_i: each layer's
logit-gradient estimate is unbiased for d E[f | z_{<k}] / d alpha_k (f held), in every layer.

The per-sample logit gradients G_k^(i) [S, K, N, n_k] (the summands of (1/K) sum_i) become
parameter gradients through the surrogate (``assemble``)

    -(1/N) sum_n (1/K) sum_i [ sum_k G_k^(i) . alpha_k(z_{k-1}^(i))
                               + log p(x_n, z^(i)) - kappa log q(z^(i) | x_n) ],

G held: the encoder gets G_k through e_k at path i's own z_{k-1}^(i), the decoder its pathwise
gradient averaged over the K paths, and the encoder's pathwise -grad_phi log q term is ``path``
(kappa = 1 when "keep", at every path, averaged; default "drop", as ``vae-rloo``). Cost: K
evaluations of f per draw, as ``vae-rloo`` (the papers' "no extra evaluations" over RLOO), plus
one backward pass of f to the bits per path. With the control variates' coefficients at 0 both
are ``vae-rloo(K=k)``, draw for draw on the same noise and, with nothing fitted or trained
(``warmup=0``, ``train_steps=0``), from the same generator (tested).

``form=layer`` (the sbn kind's, and the authors' hierarchical-VAE code's: thjashin/rodeo
``networks_multilayer.py``, per layer the upstream sample fixed, K samples of that layer, the rest
of the path sampled above): a base path z from the uniforms u_{k,0} (sample 0 of every layer);
for latent layer k, K samples b_{k,i} = 1[u_{k,i} < sigmoid(e_k(z_{k-1}))] at the base path's
z_{k-1} (sample 0 is the base path's own z_k), each continued to z_L with the base path's
uniforms u_{j,0}, j > k (common random numbers, so branch 0 is the base path), f_i = f of branch
i and g_i = d f / d z_k there (the same partial derivative). Given u_{>k}, f is a fixed function
of layer k's states and the K samples are i.i.d. from q(z_k | z_{k-1}) and independent of u_{>k},
so the single-layer estimator (unbiased for any f) is unbiased for d E[f | z_{<k}] / d alpha_k,
every layer. The K summands' mean G_k goes to the encoder through e_k at the base z_{k-1}; the
decoder's pathwise gradient (and the kept -log q term) are the base path's. Cost: 1 + (K - 1) L
evaluations of f per draw. With one latent layer the two forms' encoder gradients are the same
on the same uniforms (tested); the decoder's is the K paths' mean (``path``) or the base path's.

Not here: the sbn kind's ``grad=st`` (a total derivative through the layers above).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Hyper
from ....rng import uniforms
from ...sbn.estimators.learned import adam
from ...sbn.estimators.loo_cv import (
    RODEO,
    STEIN_HYPERPARAMETERS,
    DoubleCV,
    LayerSamples,
    SteinControl,
    stein_bytes,
)
from ..model import SBVAE, VAEProblem, factor_keys
from .base import VAEEstimator, held, layer_uniforms, per_draw, sample, signal


def bit_gradients(model: SBVAE, X: Tensor, z: list[Tensor]) -> list[Tensor]:
    """d f(x, z) / d z_k for every latent layer k at the states z ([S, K, N, n_k], 0/1): the
    partial derivatives of f's continuous extension (module docstring), every parameter held."""
    m = held(model, encoder=True, decoder=True)
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(True) for t in z]
        f = signal(m, X, leaves)
        return [g.detach() for g in torch.autograd.grad(f.sum(), leaves)]


def encoder_factor_index(model: SBVAE, k: int) -> Tensor:
    """The flat indices of encoder factor k's parameters (its hidden layers and output map)."""
    keys = {key for pair in factor_keys("q", k, len(model.hidden)) for key in pair}
    out, start = [], 0
    for key in model.keys:
        n = model.params[key].numel()
        if key in keys:
            out.append(torch.arange(start, start + n))
        start += n
    return torch.cat(out)


def samples_of(b: Tensor, a: Tensor, f: Tensor, grad: Tensor) -> LayerSamples:
    """The sbn kind's ``LayerSamples`` of one latent layer's K samples: states b, logits a
    ([S, K, N, n_k]), f [S, K, N] and d f / d z_k [S, K, N, n_k]; logistic units, so the score
    is b - p and F'(a) = p (1 - p)."""
    p = torch.sigmoid(a)
    q = 1 - p
    return LayerSamples(
        bits=b, a=a, p=p, q=q, pdf=p * q, f=f, grad=grad, score=b - p, score_flip=1 - b - p
    )


class VAELooControlVariates(VAEEstimator):
    """K independent latent paths per point (module docstring); subclasses turn each latent
    layer's ``LayerSamples`` into per-sample logit gradients [S, K, N, n_k], which ``assemble``
    makes parameter gradients."""

    hyperparameters = {
        **VAEEstimator.hyperparameters,
        "k": Hyper(4, int, minimum=2, help="samples (paths, or per layer) (K >= 2)"),
        "form": Hyper(
            "path",
            str,
            choices=("path", "layer"),
            help="K independent latent paths (K evaluations, as vae-rloo), or K samples per layer "
            "at a base path's upstream with common random numbers above (1 + (K-1) L)",
        ),
    }

    def evals_per_draw(self, model: SBVAE) -> float:
        K = self.params["k"]
        return float(K) if self.params["form"] == "path" else 1.0 + (K - 1) * model.n_latent

    def bytes_per_draw(self, problem: VAEProblem) -> int:
        """The base class's (it counts the K evaluations) and the K samples' per-unit tensors."""
        K, m = self.params["k"], problem.model
        return super().bytes_per_draw(problem) + 8 * problem.n_points * sum(m.latent) * 16 * K

    def uniforms(
        self, problem: VAEProblem, n_draws: int, generator: torch.Generator
    ) -> list[Tensor]:
        """The uniforms of ``n_draws`` draws, [n_draws, K, N, n_k] per layer (``vae-rloo``'s)."""
        return layer_uniforms(problem, (n_draws, self.params["k"]), generator)

    def samples(
        self, problem: VAEProblem, u: list[Tensor]
    ) -> tuple[list[Tensor], list[LayerSamples]]:
        """The states the encoder's logits and the pathwise terms are taken at -- the K paths
        ([S, K, N, n_k] per layer, ``form=path``) or the base path ([S, 1, N, n_k], ``layer``) --
        and every layer's ``LayerSamples`` ([S, K, N, n_k]; module docstring)."""
        m, X = problem.model, problem.X
        if self.params["form"] == "layer":
            return self.layer_samples(problem, u)
        z = sample(m, X, u)
        f = signal(m, X, z).detach()  # [S, K, N]
        grads = bit_gradients(m, X, z)
        below = [X, *z[:-1]]
        out = []
        for k in range(1, m.n_latent + 1):
            b = z[k - 1]
            a = m.encoder_logits(k, below[k - 1]).detach().expand_as(b)
            out.append(samples_of(b, a, f, grads[k - 1]))
        return z, out

    def layer_samples(
        self, problem: VAEProblem, u: list[Tensor]
    ) -> tuple[list[Tensor], list[LayerSamples]]:
        """``samples`` for ``form=layer``: the base path from u[:, 0] and per layer the K
        branches continued with the base path's uniforms above (module docstring)."""
        m, X = problem.model, problem.X
        base_u = [t[:, :1] for t in u]  # [S, 1, N, n_k]
        z = sample(m, X, base_u)
        below = [X, *z[:-1]]
        out = []
        for k in range(1, m.n_latent + 1):
            alpha = m.encoder_logits(k, below[k - 1]).detach()  # [S, 1, N, n_k] (or [N, n_1])
            b = (u[k - 1] < torch.sigmoid(alpha)).to(X.dtype)  # [S, K, N, n_k]
            branch = [*(t.expand(*b.shape[:2], *t.shape[2:]) for t in z[: k - 1]), b]
            branch += sample(m, b, base_u, start=k + 1)
            f = signal(m, X, branch).detach()
            grad = bit_gradients(m, X, branch)[k - 1]
            out.append(samples_of(b, alpha.expand_as(b), f, grad))
        return z, out

    def assemble(
        self, problem: VAEProblem, z: list[Tensor], G: list[Tensor], pathwise: bool = True
    ) -> Tensor:
        """[S, P]: the gradient of the surrogate of the module docstring per draw, from the
        per-sample logit gradients G ([S, K, N, n_k] per layer; ``form=layer``: their mean over
        K at the base path z [S, 1, N, n_k]), held for the model's parameters
        but not detached: RODEO's training differentiates through them); without the decoder's
        and the kept pathwise terms when ``pathwise`` is False."""
        X, keep = problem.X, self.keep
        if self.params["form"] == "layer":  # the K summands' mean, at the base path
            G = [g.mean(1, keepdim=True) for g in G]

        def surrogate(mm: SBVAE, zz: list[Tensor], gg: list[Tensor]) -> Tensor:
            below = [X, *zz[:-1]]
            total = X.new_zeros(())
            if pathwise:
                total = mm.log_joint(X, zz) - keep * mm.log_posterior(X, zz)
            for k in range(1, mm.n_latent + 1):
                total = total + (gg[k - 1] * mm.encoder_logits(k, below[k - 1])).sum(-1)
            return -total.mean(-1).mean(0)  # the N points', then the K paths' mean

        return per_draw(problem, surrogate, z, G)

    def _draw(
        self, problem: VAEProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        return self.estimates(problem, self.uniforms(problem, n_draws, generator), context)

    def estimates(self, problem: VAEProblem, u: list[Tensor], context: Any) -> Tensor:
        raise NotImplementedError


class VAEDoubleCV(VAELooControlVariates):
    """Double control variates (DCV; Titsias & Shi, AISTATS 2022) for the negative ELBO: RLOO
    over K latent paths whose leave-one-out baseline gets a second, Taylor-based control variate
    with a coefficient alpha_k per latent layer; the sbn kind's ``dcv`` (both forms) with the
    VAE's samples (module docstring: b_i, p_i, s_i = b_i - p_i, f_i, g_i = d f / d z_k).

    For latent layer k, with gbar_{-i} = (1/(K-1)) sum_{j != i} g_j and c_i = gbar_{-i} .
    (b_i - p_i), the logit-gradient summand of path i (the sbn ``DoubleCV.layer_parts``, used
    by import) is

        G_k^(i) = [f_i + alpha c_i - (1/(K-1)) sum_{j != i} (f_j + alpha c_j)] s_i
                  - alpha gbar_{-i} * p_i (1 - p_i),

    assembled as the module docstring states (the encoder through e_k at path i's z_{k-1}^(i),
    the decoder pathwise, the encoder's pathwise term by ``path``). Unbiased for every alpha:
    the f terms are RLOO; gbar_{-i} comes from the other paths, independent of path i, and given
    path i's upstream E[(b_i - p_i)(b_i - p_i)^T] = diag(p_i (1 - p_i)), so E[c_i s_i | the rest]
    = gbar_{-i} * p_i (1 - p_i), the term subtracted; in the baseline, c_j has mean 0 over b_j
    given path j's upstream and the other paths (gbar_{-j} does not involve path j), and s_i
    does not depend on path j (``form=layer``: the same, given u_{>k}, for the K samples of the
    layer at the base path's upstream). alpha = 0 is ``vae-rloo(K=k)`` draw for draw
    (``form=path``).

    alpha_k: as the sbn ``dcv``, fitted once per ``draw`` call from ``warmup`` pilot draws (from
    the run's generator, before the measured draws, so these are unbiased given alpha) to
    minimise the mean of |g|^2 over encoder factor k's parameters, the authors' online objective
    (``variance_loss = mean(eta_grads^2)``): g = A + alpha_k B there is affine in alpha_k, so
    alpha_k = -sum <A, B> / sum |B|^2 (0 where B = 0); ``warmup=0`` keeps alpha = 0 (the
    authors' initial value).

    Claim: unbiased ("yes") in every parameter, any depth, linear or tanh, both forms. Cost
    (``evals_per_draw``): K evaluations of f per draw (``form=path``, as ``vae-rloo``) or
    1 + (K - 1) L (``form=layer``), plus one backward pass of f to the bits per path or branch
    and, once per ``draw`` call, ``warmup`` pilot draws.
    Reference: Titsias & Shi, "Double control variates for gradient estimation in discrete latent
    variable models", AISTATS 2022 (PMLR 151:6134-6151), arXiv 2111.05300. UNVERIFIED: the
    paper's equation numbers (as in the sbn kind: its text could not be read, only its
    abstract); the formula is the authors' code's. Provenance: as the sbn ``dcv``: thjashin/rodeo
    ``networks.py`` (``DiscreteVAE.get_grad_estimation``, ``grad_type == "double_cv"``: a VAE
    with one Bernoulli layer, f the ELBO's integrand, the gradient of the decoder's continuous
    extension), thjashin/double-cv ``src/networks.py``, thjashin/rodeo ``networks_multilayer.py``
    (per-layer alpha, the partial gradient with respect to each layer's sample); read by the
    sbn kind's port, the formula re-derived there and reused here.
    """

    name = "vae-dcv"
    reference = "Titsias & Shi, AISTATS 2022, arXiv 2111.05300 (double control variates)"
    verified = (
        "one latent layer: the mean over every joint state of the K paths' latent states equals "
        "the exact gradient to 1e-10 (linear and tanh, K = 2 and 3, path dropped and kept, both "
        "forms, α = 0.8); α = 0 is `vae-rloo` draw for draw (`form=path`); statistically "
        "unbiased on the two-layer and tanh VAEs with the fitted α (both forms); lower encoder "
        "variance than `vae-rloo` at the same K (paired, z < −3.09); conformance check; negative "
        "control: the correction's sign flipped (exact and statistical)"
    )
    tests = ("tests/test_sbvae_dcv.py",)
    hyperparameters = {
        **VAELooControlVariates.hyperparameters,
        "warmup": Hyper(64, int, minimum=0, help="pilot draws that fit alpha (0: alpha = 0)"),
    }

    layer_parts = staticmethod(DoubleCV.layer_parts)

    def prepare(self, problem: VAEProblem, generator: torch.Generator) -> Tensor:
        """alpha per latent layer [L] from ``warmup`` pilot draws (zeros when there are none)."""
        m, X = problem.model, problem.X
        W = self.params["warmup"]
        if W == 0:
            return X.new_zeros(m.n_latent)
        z, layers = self.samples(problem, self.uniforms(problem, W, generator))
        AB = [self.layer_parts(s) for s in layers]
        A = self.assemble(problem, z, [t[0] for t in AB])
        B = self.assemble(problem, z, [t[1] for t in AB], pathwise=False)
        alphas = []
        for k in range(1, m.n_latent + 1):
            index = encoder_factor_index(m, k).to(X.device)
            a_k, b_k = A[:, index], B[:, index]
            den, num = (b_k * b_k).sum(), (a_k * b_k).sum()
            alphas.append(torch.where(den > 0, -num / torch.where(den > 0, den, 1.0), 0.0))
        return torch.stack(alphas)

    def estimates(self, problem: VAEProblem, u: list[Tensor], context: Any) -> Tensor:
        """[S, P] for given uniforms and alpha per latent layer (``context``; None: 0, RLOO)."""
        X = problem.X
        alphas = X.new_zeros(problem.model.n_latent) if context is None else context
        z, layers = self.samples(problem, u)
        G = []
        for k, s in enumerate(layers):
            A, B = self.layer_parts(s)
            G.append(A + alphas[k] * B)
        return self.assemble(problem, z, G)


class VAERODEO(VAELooControlVariates):
    """RODEO (Shi, Zhou, Hwang, Titsias & Mackey, NeurIPS 2022) for the negative ELBO: RLOO over
    K latent paths with control variates from a discrete Stein operator, built from the other
    paths and learned online; the sbn kind's ``rodeo`` (both forms) with the VAE's samples
    (module docstring: b_i, p_i, s_i = b_i - p_i, f_i, g_i = d f / d z_k).

    For latent layer k, with w_d = q_i(1 - b_{i,d}) the probability of unit d's other state, A
    the Stein operator of path i's q_i ((A h)(b) = (1/n_k) sum_d w_d [h(b^(d)) - h(b)], zero
    mean under q_i for every h; the sbn ``stein_operator``) and the control function of sample i

        h_i(y) = (1/(K-1)) sum_{j != i} phi_k(g_j . (y - b_j), f_j)  in R^2

    (phi_k a small network, the sbn ``SteinControl``, with phi(0, 0) = 0), the logit-gradient
    summand of path i (the sbn ``RODEO.layer_gradient``, used by import) is

        G_k^(i) = [f_i - (1/(K-1)) sum_{j != i} (f_j + alpha_k (A h_j^0)(b_j))] s_i
                  + beta_k (A [h_i^1 s])(b_i),

    assembled as the module docstring states. Unbiased for every (alpha, beta, phi): RLOO's
    terms; h_j involves no quantity of path j, so (A h_j^0)(b_j) has mean 0 over b_j given path
    j's upstream and the other paths, and s_i does not depend on path j; h_i involves none of
    path i, so (A [h_i^1 s])(b_i) has mean 0 over b_i given path i's upstream (``form=layer``:
    the same, given u_{>k}). With alpha = beta = 0 it is ``vae-rloo(K=k)`` draw for draw
    (``form=path``) and ``vae-dcv(form=layer)`` at alpha = 0 (``form=layer``).

    Training, as ``vae-relax`` and the sbn ``rodeo``: alpha_k = beta_k = 0 (the authors') and
    phi_k's weights Glorot-uniform from the draw call's generator (biases 0), then
    ``train_steps`` Adam steps of size ``lr`` on the mean over ``train_draws`` draws of |g|^2
    (every parameter), the authors' ``variance_loss``; then frozen, and the measured draws follow
    from the same generator, unbiased given the control. ``train_steps = 0``: no training and
    nothing drawn (phi = 0, unused at alpha = beta = 0), so ``vae-rodeo(train_steps=0)`` is
    ``vae-rloo(K=k)`` from the same generator, draw for draw.

    Claim: unbiased ("yes") in every parameter, any depth, linear or tanh, both forms. Cost
    (``evals_per_draw``): K evaluations of f per draw (``form=path``, as ``vae-rloo``: the
    abstract's "do not require extra evaluations of the target function") or 1 + (K - 1) L
    (``form=layer``), one backward pass of f to the bits per path or branch, phi on
    K (K-1) (n_k + 1) inputs per point and layer; training, once per ``draw`` call: train_steps x
    train_draws draws with a backward pass each (into the control).
    Reference: Shi, Zhou, Hwang, Titsias & Mackey, "Gradient estimation with discrete Stein
    operators", NeurIPS 2022, arXiv 2202.09497. UNVERIFIED: the paper's equation numbers (as in
    the sbn kind: only its abstract could be read); the formula is the authors' code's.
    Provenance: as the sbn ``rodeo``: thjashin/rodeo ``networks.py``
    (``DiscreteVAE.get_grad_estimation``, ``grad_type.startswith("discrete_stein")``: a VAE with
    a Bernoulli layer, f the ELBO's integrand), ``SteinControlNNSingleLayer``,
    ``experiment_launcher_singlelayer.py`` and ``networks_multilayer.py`` (the per-layer form);
    read by the sbn kind's port, the formula re-derived there and reused here.
    """

    name = "vae-rodeo"
    reference = "Shi, Zhou, Hwang, Titsias & Mackey, NeurIPS 2022, arXiv 2202.09497"
    verified = (
        "one latent layer: the mean over every joint state of the K paths' latent states equals "
        "the exact gradient to 1e-10 with a random control network and α, β ≠ 0 (linear and "
        "tanh, K = 2 and 3, path dropped and kept, both forms); zero coefficients "
        "(`train_steps=0`) are `vae-rloo` draw for draw from the same generator (`form=path`) "
        "and `vae-dcv` at α = 0 (`form=layer`); statistically unbiased on the two-layer and tanh "
        "VAEs for a random control; trained, lower encoder variance than `vae-rloo` at the same "
        "K (paired, z < −3.09); conformance check (trained); negative control: the Stein "
        "operator weighted by the current state's probability (exact and statistical)"
    )
    tests = ("tests/test_sbvae_dcv.py",)
    hyperparameters = {
        **VAELooControlVariates.hyperparameters,
        **STEIN_HYPERPARAMETERS,
    }

    def bytes_per_draw(self, problem: VAEProblem) -> int:
        m = problem.model
        K, H = self.params["k"], self.params["hidden"]
        return super().bytes_per_draw(problem) + stein_bytes(problem.n_points, K, H, max(m.latent))

    def sbn_rodeo(self) -> RODEO:
        """The sbn kind's ``rodeo`` with this K, whose ``layer_gradient`` this uses."""
        return RODEO(k=self.params["k"], hidden=self.params["hidden"])

    def zero_control(self, problem: VAEProblem) -> SteinControl:
        """alpha = beta = 0 and phi = 0, one per latent layer."""
        X = problem.X
        L, H = problem.model.n_latent, self.params["hidden"]
        return SteinControl(
            X.new_zeros(L),
            X.new_zeros(L),
            X.new_zeros(L, H),
            X.new_zeros(L, H),
            X.new_zeros(L, H),
            X.new_zeros(L, 2, H),
        )

    def initial_control(self, problem: VAEProblem, generator: torch.Generator) -> SteinControl:
        """alpha = beta = 0, phi's weights Glorot-uniform from the generator, biases 0 (Keras's
        defaults, the authors' network); the zero control, drawing nothing, without training."""
        control = self.zero_control(problem)
        if self.params["train_steps"] == 0:
            return control
        X = problem.X
        L, H = problem.model.n_latent, self.params["hidden"]
        first = math.sqrt(6.0 / (1 + H))  # Glorot-uniform limits of Dense(H) on 1 input
        second = math.sqrt(6.0 / (H + 2))  # and of Dense(2) on H inputs
        control.wt = (2 * uniforms((L, H), generator, X) - 1) * first
        control.wf = (2 * uniforms((L, H), generator, X) - 1) * first
        control.W2 = (2 * uniforms((L, 2, H), generator, X) - 1) * second
        return control

    def prepare(self, problem: VAEProblem, generator: torch.Generator) -> SteinControl:
        control = self.initial_control(problem, generator)
        steps = self.params["train_steps"]
        if steps == 0:
            return control
        S = self.params["train_draws"]

        def variance(tensors: list[Tensor]) -> Tensor:
            u = self.uniforms(problem, S, generator)
            g = self.estimates(problem, u, SteinControl.of(tensors))
            return (g * g).sum(-1).mean()

        return SteinControl.of(adam(control.tensors(), variance, steps, self.params["lr"]))

    def _draw(
        self, problem: VAEProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        return super()._draw(problem, n_draws, generator, context).detach()

    def estimates(self, problem: VAEProblem, u: list[Tensor], context: Any) -> Tensor:
        """[S, P] for given uniforms and control (``context``; None: alpha = beta = 0, RLOO),
        differentiable in the control's tensors (training)."""
        control: SteinControl = self.zero_control(problem) if context is None else context
        z, layers = self.samples(problem, u)
        rodeo = self.sbn_rodeo()
        G = [rodeo.layer_gradient(k, s, control) for k, s in enumerate(layers)]
        return self.assemble(problem, z, G)


ESTIMATORS = (VAEDoubleCV, VAERODEO)
