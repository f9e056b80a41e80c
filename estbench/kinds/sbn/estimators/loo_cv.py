"""Leave-one-out REINFORCE with further control variates (issue 19): double control variates
(``dcv``; Titsias & Shi, AISTATS 2022) and discrete Stein operators (``rodeo``; Shi, Zhou, Hwang,
Titsias & Mackey, NeurIPS 2022).

Both papers state their estimator for one factorised multivariate Bernoulli q(b; theta) with
P(b_d = 1) = p_d, an objective E_q[f(b)], K >= 2 i.i.d. samples b_1..b_K and, besides the values
f(b_i), the gradients grad f(b_i) of a continuous extension of f (a VAE decoder's). Their
control variates for sample i are built from the *other* samples only, which is what keeps
them unbiased, for any f and any choice of the "gradient" (below). Two deep forms (``form``)
for the SBN's L binary layers, both unbiased in every layer:

* ``path`` (default): K independent paths, as ``rloo``. For binary layer k, sample i is path
  i's state b_{k,i} with its own upstream x_{<k,i}, p_i = F(a_k(x_{<k,i})) and score s_i, f_i the
  loss of path i; the control variates of sample i use the other paths only, which are
  independent of path i, and every expectation the single-layer argument takes over b_i is taken
  given path i's upstream, with path i's own p_i (each correction is computed per path). The
  logit gradients become parameter gradients with each path's own input to layer k (P3), and
  the head gets the pathwise gradient averaged over the K paths. Cost: K loss evaluations per
  draw, as ``rloo`` -- the papers' "no extra evaluations of f" over RLOO. With the control
  variates' coefficients at 0 it *is* ``rloo``, draw for draw on the same noise (tested).
* ``layer``: as the authors' hierarchical-VAE code (thjashin/rodeo ``networks_multilayer.py``,
  ``DiscreteVAE.get_multilayer_grad_estimation``: per layer, the upstream sample fixed, K
  samples of that layer, the rest of the path sampled below, optionally with shared noise) and
  like ``arms`` and ``carms`` here: a base path from uniforms u_{k,0}; for every binary layer k,
  K samples b_{k,i} = 1[u_{k,i} < F(a_k)] of the layer at the base path's upstream x_{<k} (sample
  0 is the base path's own), each propagated to the loss with the base path's uniforms u_{j,0},
  j > k, below (common random numbers, so branch 0 *is* the base path). Given u_{>k}, the loss is
  a fixed function F_k(b) = l(z(b; u_{>k})) of layer k's states and the K samples are i.i.d.
  from q(. | x_{<k}) and independent of u_{>k}; so the single-layer estimator, unbiased for
  *any* f, is unbiased for d/da_k E[F_k | x_{<k}, u_{>k}], and averaging over u_{>k} (whose law
  does not depend on a_k) gives d/da_k E[l | x_{<k}]. The logit gradients become parameter
  gradients with the base path's input to layer k (all samples share it); the head gets the
  pathwise gradient of the base path. Cost: 1 + (K - 1) L loss evaluations per draw.

For one binary layer (L = 1) the two forms are the same estimator.

The "gradient" of the loss with respect to the 0/1 states of layer k along a path or branch
(``grad``):

* ``st`` (default): d l / d b_k backpropagated through the downstream layers with the
  straight-through Jacobian d x_j / d a_j = c F'(a_j) (c = 2 for +-1 states, 1 for {0,1};
  ``st``'s), times c: exact for the last binary layer (the head is differentiable), a surrogate
  below, where the loss is piecewise constant in b_k;
* ``partial``: the derivative with the downstream states held fixed, as the authors' multilayer
  code takes it (``tape.gradient`` with respect to the layer's sample; the layers below are
  sampled by thresholds that pass no gradient). In a hierarchical VAE the ELBO depends on every
  layer directly; an SBN classifier's loss depends on x_L only, so this is 0 below the last
  binary layer and the control variates there reduce to their constant parts.

Any function of sample i alone keeps the estimators unbiased, so the choice only changes the
variance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Estimator, Hyper
from ..model import SBN, Problem, coding_scale, encode
from .learned import adam
from .ops import (
    Path,
    assemble,
    head_grad,
    layer_terms,
    point_losses,
    preactivation,
    uniform_path,
    uniforms,
)
from .score_noise import NoiseEstimator, _layer_shapes

LEAKY_SLOPE = 0.3  # the authors' control network: LeakyReLU(alpha=0.3)

# The learned Stein control's hyperparameters, the same for every kind's RODEO.
STEIN_HYPERPARAMETERS = {
    "hidden": Hyper(32, int, minimum=1, help="hidden units of the control network phi"),
    "train_steps": Hyper(
        100, int, minimum=0, help="Adam steps on the variance (0: the zero control)"
    ),
    "train_draws": Hyper(16, int, minimum=2, help="draws per training step"),
    "lr": Hyper(0.01, float, minimum=0.0, exclusive=True, help="Adam step size"),
}


def stein_bytes(n_points: int, k: int, hidden: int, width: int) -> int:
    """Working memory of the Stein control on the K(K-1) sample pairs of a group of ``width``
    bits (the widest group sets it)."""
    return 3 * 8 * n_points * k * (k - 1) * (width + 1) * (hidden + 2)


@dataclass(frozen=True)
class LayerSamples:
    """The K samples of one binary layer (dim 1 of every tensor): ``bits`` [S, K, N, n] the 0/1
    states, ``a``, ``p`` = F(a), ``q`` = F(-a) and ``pdf`` = F'(a) of the layer ([S, K, N, n]
    for ``form=path``, each path's own; [S, 1, N, n] for ``form=layer``, shared), ``f`` [S, K, N]
    the loss of each sample's path or branch, ``grad`` [S, K, N, n] its gradient with respect to
    the layer's bits (module docstring), ``score`` = d log q(b_i) / d a for each sample and
    ``score_flip`` that of the other state, unit by unit."""

    bits: Tensor
    a: Tensor
    p: Tensor
    q: Tensor
    pdf: Tensor
    f: Tensor
    grad: Tensor
    score: Tensor
    score_flip: Tensor


def layer_samples(
    problem: Problem, a: Tensor, p: Tensor, bits: Tensor, f: Tensor, grad: Tensor
) -> LayerSamples:
    """``LayerSamples`` of one layer from its pre-activations, P(on), states, losses, gradients."""
    noise = problem.model.noise
    q = 1 - p if noise.name == "logistic" else noise.cdf(-a)
    return LayerSamples(
        bits=bits,
        a=a,
        p=p,
        q=q,
        pdf=noise.pdf_given(a, p),
        f=f,
        grad=grad,
        score=noise.score(a, p, bits),
        score_flip=noise.score(a, p, 1 - bits),
    )


def backward_to_bits(
    problem: Problem, z: Tensor, As: Sequence[Tensor], k: int, grad: str
) -> list[Tensor]:
    """d l / d b_j for the binary layers j = k..L-1 of paths (or branches) with head output z and
    the pre-activations ``As[j - k - 1]`` of the layers j > k: the straight-through backward pass
    (``grad="st"``), or 0 below the last layer (``"partial"``)."""
    m = problem.model
    L, step = m.depth, coding_scale(m.coding)
    delta = head_grad(problem, z) @ m.weights[L]  # d l / d x_{L-1}
    out = [step * delta]
    for j in range(L - 1, k, -1):  # from d l / d x_j to d l / d x_{j-1}
        if grad == "partial":
            delta = delta.new_zeros((*delta.shape[:-1], m.weights[j].shape[1]))
        else:
            delta = (delta * (step * m.noise.pdf(As[j - k - 1]))) @ m.weights[j]
        out.append(step * delta)
    return out[::-1]


def branch_losses(
    problem: Problem, k: int, bits: Tensor, down: Sequence[Tensor | None], grad: str
) -> tuple[Tensor, Tensor]:
    """(l, d l / d b_k) for binary layer k (0-based) set to the 0/1 states ``bits`` [S, K, N, n]
    and the layers below sampled with the uniforms ``down[j]`` ([S, 1, N, n_j], unit on iff
    u < F(a); entries j <= k unused): losses [S, K, N] and the gradient [S, K, N, n]
    (``backward_to_bits``)."""
    m = problem.model
    x = encode(bits, m.coding)
    As = []
    for j in range(k + 1, m.depth):
        a = preactivation(problem, j, x)
        u = down[j]
        assert u is not None
        As.append(a)
        x = encode(m.noise.cdf(a).gt_(u), m.coding)
    z = preactivation(problem, m.depth, x)
    return point_losses(problem, z), backward_to_bits(problem, z, As, k, grad)[0]


class LooControlVariates(NoiseEstimator):
    """K samples of every binary layer, in one of the two deep forms (module docstring);
    subclasses turn each layer's ``LayerSamples`` into per-sample logit gradients [S, K, N, n]
    (the summands of (1/K) sum_i), which ``assemble_samples`` makes parameter gradients."""

    hyperparameters = {
        "k": Hyper(4, int, minimum=2, help="samples (paths, or per layer) (K >= 2)"),
        "form": Hyper(
            "path",
            str,
            choices=("path", "layer"),
            help="K independent paths (K evaluations, as rloo), or K samples per layer at a "
            "base path's upstream with common random numbers below (1 + (K-1) L)",
        ),
        "grad": Hyper(
            "st",
            str,
            choices=("st", "partial"),
            help="d f / d b of a sample: straight-through backward pass below the layer, or "
            "the partial derivative with the downstream states held (0 below the last layer)",
        ),
    }

    def evals_per_draw(self, model: SBN) -> float:
        K = self.params["k"]
        return float(K) if self.params["form"] == "path" else 1.0 + (K - 1) * model.depth

    def bytes_per_draw(self, problem: Problem) -> int:
        return (2 * self.params["k"] + 3) * super().bytes_per_draw(problem)

    def noise_shapes(self, problem: Problem) -> list[tuple[int, ...]]:
        return _layer_shapes(problem, self.params["k"])

    def samples(self, problem: Problem, noise: Sequence[Tensor]) -> tuple[Path, list[LayerSamples]]:
        """The path(s) -- the K paths ([S, K] batch, ``form=path``) or the base path along
        sample 0 of every layer ([S], ``form=layer``) -- and each layer's K samples."""
        if self.params["form"] == "path":
            path = uniform_path(problem, noise)  # batch [S, K]
            f = point_losses(problem, path.z)  # [S, K, N]
            grads = backward_to_bits(problem, path.z, path.a[1:], 0, self.params["grad"])
            return path, [
                layer_samples(problem, a, p, b, f, g)
                for a, p, b, g in zip(path.a, path.p, path.bits, grads, strict=True)
            ]
        path = uniform_path(problem, [u[:, 0] for u in noise])
        down: list[Tensor | None] = [u[:, :1] for u in noise]  # the base path's, shared
        out = []
        for k in range(problem.model.depth):
            a, p = path.a[k][:, None], path.p[k][:, None]
            bits = torch.lt(noise[k], p, out=noise[k].new_empty(noise[k].shape))
            f, grad = branch_losses(problem, k, bits, down, self.params["grad"])
            out.append(layer_samples(problem, a, p, bits, f, grad))
        return path, out

    def assemble_samples(
        self, problem: Problem, path: Path, logit_grads: Sequence[Tensor], head: bool = True
    ) -> Tensor:
        """[S, P]: (1/K) sum_i of the per-sample logit gradients [S, K, N, n_k] with their inputs
        (each path's, or the base path's), and the pathwise head gradient (averaged over the K
        paths, or the base path's; zero when ``head`` is False)."""
        dz = head_grad(problem, path.z)
        if not head:
            dz = torch.zeros_like(dz)
        if self.params["form"] == "path":
            terms = layer_terms(path, list(logit_grads), dz)
            return assemble(problem, terms, per_point=False).mean(1)
        terms = layer_terms(path, [g.mean(1) for g in logit_grads], dz)
        return assemble(problem, terms, per_point=False)


def leave_one_out_mean(t: Tensor) -> Tensor:
    """(sum_{j != i} t_j) / (K - 1) along dim 1 (the K samples)."""
    K = t.shape[1]
    return (t.sum(1, keepdim=True) - t) / (K - 1)


# ---- DCV ------------------------------------------------------------------------------------


class DoubleCV(LooControlVariates):
    """Double control variates (DCV; Titsias & Shi, AISTATS 2022): RLOO whose leave-one-out
    baseline gets a second, Taylor-based control variate with a coefficient alpha.

    For one binary layer, with its K samples b_i (module docstring; ``form=path``: the K paths'
    states, each with its own upstream), p_i = F(a_i), the losses f_i, the gradients g_i of the
    loss with respect to the layer's bits at b_i (``grad``), the scores s_i = d log q(b_i) / d a,
    the leave-one-out mean gbar_{-i} = (1/(K-1)) sum_{j != i} g_j and the first-order Taylor
    term c_i = gbar_{-i} . (b_i - p_i):

        g_a = (1/K) sum_i { [f_i + alpha c_i - (1/(K-1)) sum_{j != i} (f_j + alpha c_j)] s_i
                            - alpha gbar_{-i} * F'(a_i) }.

    Unbiased for every alpha: the f terms are RLOO; gbar_{-i} does not depend on b_i and, given
    the rest, E[(b_i - p_i)(b_i - p_i)^T] = diag(p_i q_i), so E[c_i s_i | the rest] =
    gbar_{-i} * F'(a_i) (s = (b - p) F' / (p q)), which the last term removes; in the baseline,
    c_j has mean 0 over b_j given the rest and s_i does not depend on b_j. With one layer and
    logistic noise (F' = p q, a shared p) the correction's sum is alpha gbar * p q with gbar the
    mean of all g_i: the authors' ``global_corr``, and this is their estimator of the logits'
    gradient. alpha = 0 is RLOO: ``rloo`` itself for ``form=path`` (tested draw for draw).

    alpha: one per binary layer (as the authors' multilayer code), chosen to minimise the mean
    of |g|^2 over that layer's parameters (W_k, b_k), the objective the authors descend online
    (``variance_loss = mean(eta_grads^2)``, Adam on alpha); since g = A + alpha B is affine in
    alpha, the minimiser over ``warmup`` pilot draws is explicit, alpha_k = -sum <A, B> /
    sum |B|^2 (0 where B = 0). The pilot draws come from the run's generator before the measured
    draws (as ``relax``'s training), so the measured draws are unbiased given alpha;
    ``warmup=0`` keeps alpha = 0 (the authors' initial value).

    Claim: unbiased ("yes"), any f, noise, coding and depth, both forms. Cost
    (``evals_per_draw``): K loss evaluations per draw (``form=path``, as ``rloo``; the abstract's
    "no extra computational cost compared to ... the REINFORCE leave-one-out estimator" in loss
    evaluations) or 1 + (K-1) L (``form=layer``); plus one backward pass per path or branch
    (``grad=st``) and, once per ``draw`` call, ``warmup`` pilot draws. Requires the head to be
    differentiable (for the control variate, not for unbiasedness).
    Reference: Titsias & Shi, "Double control variates for gradient estimation in discrete latent
    variable models", AISTATS 2022 (PMLR 151:6134-6151), arXiv 2111.05300. UNVERIFIED: the
    paper's equation numbers -- its text could not be read here (only the abstract, which states
    "a double control variate for the REINFORCE leave-one-out estimator using Taylor
    expansions"); the formula is the authors' code's. Provenance: thjashin/rodeo ``networks.py``
    (``DiscreteVAE.get_grad_estimation``, ``grad_type == "double_cv"``, its general-K branch:
    ``loo_avg_grad_b``, ``loo_vr``, ``cv``, ``alpha * avg_grad_b * theta * (1 - theta)``),
    thjashin/double-cv ``src/networks.py`` (the same for K = 2 and 4, written out) and
    ``quadratic_loss.ipynb`` (``double_control_variate``, K = 2, alpha trained on the mean square
    of the estimate), and thjashin/rodeo ``networks_multilayer.py``
    (``get_multilayer_grad_estimation``, per-layer alpha, K = 2); all read, the formula
    re-derived here, not copied.
    """

    name = "dcv"
    unbiased = "yes"
    reference = "Titsias & Shi, AISTATS 2022, arXiv 2111.05300 (double control variates)"
    verified = (
        "its correction E[(h·(b − p)) s(b)] = h F′(a) exactly by enumeration (three noises); "
        "α = 0 is `rloo` draw for draw (`form=path`); one binary layer (where both forms are the "
        "paper's estimator): the mean over every joint state of the K samples equals the exact "
        "gradient to 1e-10 (both codings, three noises, three heads, K = 2 and 3, both forms, "
        "α = 0.8); statistically unbiased at depth 3 with the fitted α (both forms and "
        "`grad=partial`; both codings, three noises); lower binary-layer variance than `rloo` at "
        "the same K (paired on the same noise, one-sided z < −3.09; measured ratio 0.63); "
        "negative control: the correction's sign flipped (exact and statistical)"
    )
    tests = ("tests/test_stein_dcv.py",)
    hyperparameters = {
        **LooControlVariates.hyperparameters,
        "warmup": Hyper(64, int, minimum=0, help="pilot draws that fit alpha (0: alpha = 0)"),
    }

    @staticmethod
    def layer_parts(s: LayerSamples) -> tuple[Tensor, Tensor]:
        """(A, B): the per-sample summands [S, K, N, n] of one layer's logit gradient,
        A + alpha B (B holds the correction: E[c_i s_i | the rest] = gbar_{-i} * F'(a_i))."""
        hbar = leave_one_out_mean(s.grad)
        c = (hbar * (s.bits - s.p)).sum(-1)  # [S, K, N]
        A = (s.f - leave_one_out_mean(s.f))[..., None] * s.score
        B = (c - leave_one_out_mean(c))[..., None] * s.score - hbar * s.pdf
        return A, B

    def parts(self, problem: Problem, noise: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Parameter gradients (A [S, P] with the head, B [S, P] with a zero head)."""
        path, layers = self.samples(problem, noise)
        AB = [self.layer_parts(s) for s in layers]
        A = self.assemble_samples(problem, path, [t[0] for t in AB])
        B = self.assemble_samples(problem, path, [t[1] for t in AB], head=False)
        return A, B

    def prepare(self, problem: Problem, generator: torch.Generator) -> Tensor:
        """alpha per binary layer [L] from ``warmup`` pilot draws (zeros when there are none)."""
        L = problem.model.depth
        X = problem.X
        W = self.params["warmup"]
        if W == 0:
            return torch.zeros(L, dtype=X.dtype, device=X.device)
        A, B = self.parts(problem, self.sample_noise(problem, W, generator))
        alphas = []
        for a_k, b_k in zip(problem.split(A)[:L], problem.split(B)[:L], strict=True):
            den = (b_k * b_k).sum()
            num = (a_k * b_k).sum()
            alphas.append(torch.where(den > 0, -num / torch.where(den > 0, den, 1.0), 0.0))
        return torch.stack(alphas)

    def estimate(self, problem: Problem, noise: Sequence[Tensor], context: Any = None) -> Tensor:
        """[S, P] draws given alpha per binary layer (``context``; None: alpha = 0, RLOO)."""
        X = problem.X
        alphas = torch.zeros(problem.model.depth, dtype=X.dtype, device=X.device)
        if context is not None:
            alphas = context
        path, layers = self.samples(problem, noise)
        grads = []
        for k, s in enumerate(layers):
            A, B = self.layer_parts(s)
            grads.append(A + alphas[k] * B)
        return self.assemble_samples(problem, path, grads)


# ---- RODEO ----------------------------------------------------------------------------------


@dataclass
class SteinControl:
    """The learned part of RODEO, one set per binary layer k (leading dim L): the coefficients
    alpha [L] and beta [L], and the control network phi_k(t, f) = W2_k (leaky(wt_k t + wf_k f +
    c_k) - leaky(c_k)) in R^2 (wt, wf, c [L, H], W2 [L, 2, H]; the authors' two-input, two-output
    ``SteinControlNNSingleLayer``, here with its value at (0, 0) subtracted so that a zero loss
    gives a zero estimate; its output bias then cancels and is left out)."""

    alpha: Tensor
    beta: Tensor
    wt: Tensor
    wf: Tensor
    c: Tensor
    W2: Tensor

    def tensors(self) -> list[Tensor]:
        return [self.alpha, self.beta, self.wt, self.wf, self.c, self.W2]

    @classmethod
    def of(cls, tensors: Sequence[Tensor]) -> SteinControl:
        return cls(*tensors)

    def phi(self, k: int, t: Tensor, f: Tensor) -> Tensor:
        """phi_k at inputs t [..., m] and f [...] (f shared by the m values of t): [..., m, 2]."""
        leaky = torch.nn.functional.leaky_relu
        shared = torch.addcmul(self.c[k], f[..., None], self.wf[k])  # [..., H]
        pre = torch.addcmul(shared[..., None, :], t[..., None], self.wt[k])  # [..., m, H]
        out = leaky(pre, LEAKY_SLOPE) @ self.W2[k].T
        return out - leaky(self.c[k], LEAKY_SLOPE) @ self.W2[k].T


def stein_operator(w: Tensor, h_flip: Tensor, h_here: Tensor) -> Tensor:
    """The discrete Stein operator of a factorised Bernoulli q applied to a function h at the
    sample b [..., n], averaged over the n units:

        (A h)(b) = (1/n) sum_d q(1 - b_d) [h(b^(d)) - h(b)],

    with b^(d) = b with unit d flipped, ``w`` = q(1 - b_d) [..., n], ``h_flip`` = h(b^(d))
    [..., n] and ``h_here`` = h(b) [...]. It is (1/n times) the generator of the Markov chain
    that resamples one unit at a time from its marginal, which leaves q invariant (detailed
    balance: q(b) q(1 - b_d) = q(b^(d)) q(b_d)), so E_q[(A h)(b)] = 0 for every h ([derived];
    tests check it by enumeration). The authors' code computes it as ``w1 * h(nbrs) + w2 * h(b)``
    with w2 = q(b_d) - 1 = -w1. Returns [...]."""
    return (w * (h_flip - h_here[..., None])).mean(-1)


class RODEO(LooControlVariates):
    """RODEO (Shi, Zhou, Hwang, Titsias & Mackey, NeurIPS 2022): RLOO with control variates from
    a discrete Stein operator, built from the other samples and learned online.

    For one binary layer (module docstring; K samples b_i -- for ``form=path`` the K paths'
    states, each with its own upstream and q_i --, losses f_i, gradients g_i, scores s(b) =
    d log q(b) / d a, w_d = q_i(1 - b_{i,d}) the probability of unit d's other state),
    with A the Stein operator of q_i (``stein_operator``: (A h)(b) = (1/n) sum_d w_d [h(b^(d)) -
    h(b)], zero mean under q for every h) and for sample i the control function

        h_i(y) = (1/(K-1)) sum_{j != i} phi(g_j . (y - b_j), f_j)  in R^2,

    (phi a small network of the first-order Taylor term around the other sample b_j and of f_j,
    ``SteinControl``, with phi(0, 0) = 0 so that a zero loss gives a zero estimate; h_i depends on
    the other samples only), the logit gradient is

        g_a = (1/K) sum_i { [f_i - (1/(K-1)) sum_{j != i} (f_j + alpha (A h_j^0)(b_j))] s(b_i)
                            + beta (A [h_i^1 s])(b_i) }.

    Unbiased for every (alpha, beta, phi): RLOO's terms; (A h_j^0)(b_j) has mean 0 over b_j
    given the others (h_j does not depend on b_j) and s(b_i) does not depend on b_j; and
    (A [h_i^1 s])(b_i) has mean 0 over b_i because h_i does not depend on b_i. y ranges over b_i
    and its n one-unit flips, so phi runs K (K-1) (n+1) times per point and layer; no extra loss
    evaluation. With alpha = beta = 0 it is RLOO: ``rloo`` for ``form=path`` and
    ``dcv(form=layer)`` at alpha = 0 for ``form=layer`` (both tested draw for draw). For two
    samples this is the authors' ``discrete_stein_avg``; for more, their
    ``discrete_stein_output_avg`` (outputs of phi averaged over j), the README's choices.

    Training, as ``relax`` (``learned.py``'s protocol): alpha, beta and phi (one each per binary
    layer, as the authors' multilayer code) start at alpha = beta = 0 (the authors') with phi's
    weights drawn from the generator (Glorot-uniform, biases 0: Keras's defaults); ``train_steps``
    Adam steps of size ``lr`` on the mean over ``train_draws`` draws of |g|^2 (summed over every
    parameter), the authors' ``variance_loss = mean(eta_grads^2)`` (whose gradient is that of the
    variance: E g does not depend on them); then they are frozen and the measured draws follow
    from the same generator, unbiased given them. The authors' network has 100 hidden units and
    learns with Adam at 1e-3 over a whole VAE training run; here ``hidden`` = 32 and 100 steps at
    0.01 by default.

    Claim: unbiased ("yes"), any f, noise, coding and depth, both forms. Cost
    (``evals_per_draw``): K loss evaluations per draw (``form=path``, as ``rloo``: the abstract's
    "do not require extra evaluations of the target function") or 1 + (K-1) L (``form=layer``);
    one backward pass per path or branch (``grad=st``), phi on K (K-1) (n_k + 1) inputs per
    point and layer; training, once per ``draw`` call: train_steps x
    train_draws draws with a backward pass each (into the control's tensors).
    Reference: Shi, Zhou, Hwang, Titsias & Mackey, "Gradient estimation with discrete Stein
    operators", NeurIPS 2022, arXiv 2202.09497. UNVERIFIED: the paper's equation numbers -- its
    text could not be read here (only its abstract: "a variance reduction technique based on
    Stein operators for discrete distributions ... control variates for the REINFORCE
    leave-one-out estimator ... adapted online to minimize variance and [which] do not require
    extra evaluations of the target function"); the formula is the authors' code's.
    Provenance: thjashin/rodeo ``networks.py`` (``DiscreteVAE.get_grad_estimation``, branch
    ``grad_type.startswith("discrete_stein")``, non-MPF, non-DIFF form: ``w1 = theta (1 - b) +
    (1 - theta) b``, ``w2 = -w1``, ``double_cv``, ``cv``, ``fb_vr``; ``get_avg`` for the
    ``output`` variant), ``SteinControlNNSingleLayer``, ``experiment_launcher_singlelayer.py``
    (the variance loss and its optimisers) and ``networks_multilayer.py`` (the per-layer form);
    all read, the formula re-derived here.
    """

    name = "rodeo"
    unbiased = "yes"
    reference = "Shi, Zhou, Hwang, Titsias & Mackey, NeurIPS 2022, arXiv 2202.09497"
    verified = (
        "the Stein operator's zero mean by enumeration (for a function and for the "
        "score-weighted one; three noises); zero coefficients are `rloo` draw for draw "
        "(`form=path`) and `dcv` at α = 0 (`form=layer`); one binary layer exact to 1e-10 as "
        "`dcv`, with a random control network and α, β ≠ 0; statistically unbiased at depth 3 "
        "for a random control (both forms, both codings, three noises); trained, lower "
        "binary-layer variance than `rloo` at the same K (paired, z < −3.09; measured ratio "
        "0.65); negative control: the Stein operator weighted by the current state's probability "
        "instead of the other state's (exact and statistical)"
    )
    tests = ("tests/test_stein_dcv.py",)
    hyperparameters = {
        **LooControlVariates.hyperparameters,
        **STEIN_HYPERPARAMETERS,
    }

    def bytes_per_draw(self, problem: Problem) -> int:
        m = problem.model
        K, H = self.params["k"], self.params["hidden"]
        return super().bytes_per_draw(problem) + stein_bytes(problem.n_points, K, H, max(m.widths))

    def initial_control(self, problem: Problem, generator: torch.Generator) -> SteinControl:
        X = problem.X
        L, H = problem.model.depth, self.params["hidden"]
        zeros = torch.zeros(L, dtype=X.dtype, device=X.device)
        first = math.sqrt(6.0 / (1 + H))  # Glorot-uniform limits of Dense(H) on 1 input
        second = math.sqrt(6.0 / (H + 2))  # and of Dense(2) on H inputs
        return SteinControl(
            alpha=zeros,
            beta=zeros.clone(),
            wt=(2 * uniforms((L, H), generator, X) - 1) * first,
            wf=(2 * uniforms((L, H), generator, X) - 1) * first,
            c=torch.zeros(L, H, dtype=X.dtype, device=X.device),
            W2=(2 * uniforms((L, 2, H), generator, X) - 1) * second,
        )

    def zero_control(self, problem: Problem) -> SteinControl:
        """alpha = beta = 0 and phi = 0."""
        X = problem.X
        L, H = problem.model.depth, self.params["hidden"]

        def zeros(*shape: int) -> Tensor:
            return torch.zeros(shape, dtype=X.dtype, device=X.device)

        return SteinControl(
            zeros(L), zeros(L), zeros(L, H), zeros(L, H), zeros(L, H), zeros(L, 2, H)
        )

    def prepare(self, problem: Problem, generator: torch.Generator) -> SteinControl:
        control = self.initial_control(problem, generator)
        S = self.params["train_draws"]

        def variance(tensors: list[Tensor]) -> Tensor:
            noise = self.sample_noise(problem, S, generator)
            g = self.estimate(problem, noise, SteinControl.of(tensors))
            return (g * g).sum(-1).mean()

        steps = self.params["train_steps"]
        return SteinControl.of(adam(control.tensors(), variance, steps, self.params["lr"]))

    @staticmethod
    def flip_probability(s: LayerSamples) -> Tensor:
        """w_d = q(1 - b_d): the probability of each unit's other state, the Stein operator's
        weight (the authors' ``w1 = theta (1 - b) + (1 - theta) b``)."""
        return torch.where(s.bits == 1, s.q, s.p)

    def layer_gradient(self, k: int, s: LayerSamples, control: SteinControl) -> Tensor:
        """The per-sample summands [S, K, N, n] of binary layer k's logit gradient."""
        K = self.params["k"]
        b, f, g, score = s.bits, s.f, s.grad, s.score
        # Pairs (i, j = i + r mod K), r = 1..K-1, stacked along dim 1: [S, K-1, K, ...].
        b_j = torch.stack([b.roll(-r, 1) for r in range(1, K)], 1)
        g_j = torch.stack([g.roll(-r, 1) for r in range(1, K)], 1)
        f_j = torch.stack([f.roll(-r, 1) for r in range(1, K)], 1)
        t_here = (g_j * (b[:, None] - b_j)).sum(-1)  # g_j . (b_i - b_j), [S, K-1, K, N]
        t_flip = t_here[..., None] + g_j * (1 - 2 * b[:, None])  # at b_i^(d), [.., N, n]
        # phi at b_i (position 0) and at its n flips, averaged over the other samples j.
        h = control.phi(k, torch.cat((t_here[..., None], t_flip), -1), f_j).mean(1)
        h_here, h_flip = h[..., 0, :], h[..., 1:, :]  # [S, K, N, 2], [S, K, N, n, 2]
        w = self.flip_probability(s)  # [S, K, N, n]
        # Baseline control variate: (A h^0)(b_i), [S, K, N].
        cv0 = stein_operator(w, h_flip[..., 0], h_here[..., 0])
        # Score control variate, per unit e: (A [h^1 s_e])(b_i); flipping unit d changes s_e only
        # for e = d (to the score of the other state).
        n = b.shape[-1]
        wh = w * h_flip[..., 1]  # [S, K, N, n]
        cv1 = (
            score * (wh.sum(-1, keepdim=True) - wh)
            + wh * s.score_flip
            - h_here[..., 1:] * score * w.sum(-1, keepdim=True)
        ) / n
        alpha, beta = control.alpha[k], control.beta[k]
        signal = f - leave_one_out_mean(f + alpha * cv0)
        return signal[..., None] * score + beta * cv1

    def estimate(self, problem: Problem, noise: Sequence[Tensor], context: Any = None) -> Tensor:
        """[S, P] draws given the control (``context``; None: alpha = beta = 0, per-layer RLOO).
        Differentiable in the control's tensors (training), which the measured draws' frozen
        control does not track."""
        control: SteinControl = self.zero_control(problem) if context is None else context
        path, layers = self.samples(problem, noise)
        grads = [self.layer_gradient(k, s, control) for k, s in enumerate(layers)]
        return self.assemble_samples(problem, path, grads)


ESTIMATORS: list[type[Estimator]] = [DoubleCV, RODEO]
