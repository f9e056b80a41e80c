"""The ``sbvae`` kind: variational autoencoders with Bernoulli latent layers (sigmoid belief
networks), J = -(1/N) sum_n ELBO(x_n), with the exact ELBO, its gradient and the exact
log-likelihood (``estbench.kinds.sbvae.exact``).

A case names its model and its data in ``[model]`` (``SbvaeModelSpec``; the kind supplies the
data through ``case_data``, and a ``[data]`` table is refused). The exact reference is reported
per factor, encoder and decoder side by side (``enc1``, ``dec1``, ``enc2``, ..., ``prior``),
then each side whole (``encoder``; ``decoder``, the prior included); results.json's ``exact``
section adds the mean exact log-likelihood and the gap log p(x) - ELBO = KL(q || p(z | x)).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...cases import Case, CaseError, ModelSpec, Table
from ...problem import Block, ExactOutput, ProblemKind, Reference
from ...schema import Key

if TYPE_CHECKING:
    from torch import Tensor

    from .model import SBVAE, VAEProblem

DATA_SETS = ("digits", "synthetic")
ARCHITECTURES = ("linear", "nonlinear")
# From benchmarks/sbvae.py (the 10-10 model on 500 digits: about 0.05 s for 500 x 2^10 x 64 +
# 2^20 x 20 units of work on one thread), rounded up: an estimate for the plan, not a promise.
SECONDS_PER_UNIT = 2e-9
# The exact scalars the report's exact-reference table shows beside the loss (Reference.columns).
COLUMNS = {
    "elbo": "mean ELBO",
    "log_likelihood": "mean log p(x)",
    "kl_gap": "mean KL(q ‖ p(z|x))",
}
# Estimators whose derivation does not cover an ELBO (ProblemKind.refusals), each checked against
# the formula spec (estimators.md, §4.4-4.6) and the paper's setting. LEG, Tokui-Sato and ARMS
# are *not* here: their papers cover ELBOs (LEG is for variational inference; Tokui & Sato and
# Dimitriev & Zhou evaluate on Bernoulli VAEs), and this kind has them (vae-leg,
# vae-tokui-sato, vae-arms).
REFUSALS = {
    "psa": (
        "PSA (Shekhovtsov, Yanush & Flach, NeurIPS 2020, arXiv 2006.03143; spec §4.4) propagates "
        "single-flip sensitivities down a feed-forward chain from a loss of the last binary layer "
        "alone; the ELBO's integrand log p(x, z) - log q(z | x) depends on every latent layer "
        "directly and on the encoder's parameters, for which its recursion has no term"
    ),
    "sa": (
        "SA (the PSA authors' code, gradeval/model.py fw_SA; spec §4.5) has PSA's setting, a loss "
        "of the last binary layer alone, and no derivation for a loss on every latent layer such "
        "as the ELBO's log p(x, z) - log q(z | x)"
    ),
}


@dataclass(frozen=True)
class SbvaeModelSpec(ModelSpec):
    """``[model]`` of a VAE: the latent widths (``widths``, or ``width`` and ``depth``), and

    * ``architecture``: "linear" (logits linear in the layer below) or "nonlinear" (tanh MLPs of
      ``hidden`` sizes, default [32]: the 64-32-12 model of the literature for the digits);
    * ``data``: "digits" (the first ``n_points`` of the 1,797 8x8 digits, D = 64) or "synthetic"
      (``n_points`` patterns of ``dim`` pixels from a random SBN); ``binarisation`` of the digits
      "fixed" or "dynamic" (``estbench.kinds.sbvae.data``);
    * ``scale``: initial weights ~ N(0, scale^2 / fan-in) (biases 0, the decoder's output bias at
      the logit of the pixel means).

    Seeds: the model's ``seed`` plus the point's sweep seed, one stream for the data (dynamic
    binarisation, synthetic patterns) and another for the initial weights."""

    architecture: str = "linear"
    hidden: tuple[int, ...] = ()
    data: str = "digits"
    binarisation: str = "fixed"
    n_points: int = 1797
    dim: int = 16
    scale: float = 1.0


def _seed(*parts: int) -> int:
    """A 63-bit seed of independent streams (data, weights) from the case's seed."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)


class SbvaeKind(ProblemKind["VAEProblem", "SBVAE"]):
    """Bernoulli-latent VAEs (module docstring)."""

    name = "sbvae"
    description = "a VAE with Bernoulli latent layers (sigmoid belief network)"
    default_training = "exact"
    parametrisations = ("theta",)
    checkpoint_marker = "sbvae"  # estbench.kinds.sbvae.checkpoint.MARKER
    claims = {
        "decoder only": "unbiased in the decoder's factors and the prior (pathwise at the "
        "sampled z), biased in the encoder",
    }

    def recognises_checkpoint(self, keys: frozenset[str]) -> bool:
        from .checkpoint import recognises

        return recognises(keys)

    # ---- case files --------------------------------------------------------------------------

    def model_keys(self) -> tuple[Key, ...]:
        from .data import BINARISATIONS, N_DIGITS

        return (
            Key(
                "architecture",
                "str",
                "linear",
                choices=ARCHITECTURES,
                help="linear (one stochastic layer) or nonlinear (deterministic hidden layers)",
            ),
            Key(
                "hidden",
                "int-list",
                check=lambda v: all(h > 0 for h in v),
                accepts="a non-empty list of positive integers",
                default_text="[32] (nonlinear)",
                help="deterministic hidden widths of the nonlinear architecture",
            ),
            Key(
                "data",
                "str",
                "digits",
                choices=DATA_SETS,
                help="the data: the 8x8 digits, or synthetic binary vectors",
            ),
            Key(
                "binarisation",
                "str",
                "fixed",
                choices=BINARISATIONS,
                help="of the digits: fixed (thresholded) or dynamic (resampled)",
            ),
            Key(
                "dim",
                "int",
                16,
                check=lambda v: 1 <= v <= 4096,
                accepts="an integer in 1..4096",
                help="dimension of the synthetic data",
            ),
            Key(
                "n_points",
                "int",
                accepts=f"an integer in 1..{N_DIGITS} (digits), 1..10^6",
                default_text=f"{N_DIGITS} (digits), 200 (synthetic)",
                help="number of data points",
            ),
            Key(
                "scale",
                "float",
                1.0,
                check=lambda v: v > 0,
                accepts="a number > 0",
                help="scale of the initialisation",
            ),
        )

    def parse_model(self, table: Table, common: dict[str, Any]) -> ModelSpec:
        from .data import N_DIGITS

        architecture = table.get("architecture")
        hidden = table.get("hidden")
        if hidden is not None and architecture == "linear":
            table.fail(
                table.key("hidden"),
                'no hidden layers with architecture = "linear" (or set architecture = "nonlinear")',
                hidden,
            )
        data = table.get("data")
        limit = N_DIGITS if data == "digits" else 10**6
        binarisation = table.get("binarisation")
        if data == "synthetic" and "binarisation" in table.raw:
            table.fail(
                table.key("binarisation"), 'no binarisation with data = "synthetic"', binarisation
            )
        dim = table.get("dim")
        if data == "digits" and "dim" in table.raw:
            table.fail(
                table.key("dim"), 'no dim with data = "digits" (the digits have 64 pixels)', dim
            )
        own = {
            "architecture": architecture,
            "hidden": tuple(hidden or ((32,) if architecture == "nonlinear" else ())),
            "data": data,
            "binarisation": binarisation,
            "n_points": table.get(
                "n_points",
                default=N_DIGITS if data == "digits" else 200,
                check=lambda v: 1 <= v <= limit,
                expected=f"an integer in 1..{limit}",
            ),
            "dim": dim,
            "scale": table.get("scale"),
        }
        return SbvaeModelSpec(**common, **own)

    def check_case(self, case: Case) -> None:
        """The data are the model's (``model.data``): a ``[data]`` table would be ignored, so it
        is refused."""
        file = str(case.path) if case.path else f"<case {case.name}>"
        if "data" in tomllib.loads(case.text):
            raise CaseError(
                f'{file}: data: a VAE case names its data in [model] (model.data = "digits" or '
                '"synthetic", model.n_points, model.binarisation); expected no [data] table'
            )

    # ---- problems ----------------------------------------------------------------------------

    def case_data(self, spec: ModelSpec, offset: int) -> tuple[Tensor, Tensor]:
        from .data import digits, synthetic

        assert isinstance(spec, SbvaeModelSpec)
        seed = _seed(spec.seed + offset, 1)
        if spec.data == "digits":
            X = digits(spec.n_points, spec.binarisation, seed)
        else:
            X = synthetic(spec.n_points, spec.dim, seed)
        return X, X.new_zeros(X.shape[0], 0)

    def initial(
        self,
        spec: ModelSpec,
        widths: tuple[int, ...],
        X: Tensor,
        labels: Tensor,
        *,
        stored: bool,
        offset: int,
    ) -> tuple[SBVAE, Tensor]:
        """Weights ~ N(0, scale^2 / fan-in), biases 0, p_b1 the logit of the pixel means of X
        (``random_sbvae``); no targets ([N, 0])."""
        import torch

        from .model import random_sbvae

        assert isinstance(spec, SbvaeModelSpec)
        g = torch.Generator().manual_seed(_seed(spec.seed + offset, 2))
        net = random_sbvae(
            X.shape[1], widths, spec.hidden, generator=g, scale=spec.scale, data_mean=X.mean(0)
        )
        return net, X.new_zeros(X.shape[0], 0)

    def targets(self, spec: ModelSpec, net: SBVAE, labels: Tensor, *, stored: bool) -> Tensor:
        return labels.new_zeros(labels.shape[0], 0)

    def check_data(self, source: str | Path, net: SBVAE, X: Tensor, Y: Tensor) -> None:
        from ...errors import CheckpointError, ModelError

        try:
            net.check_data(X, Y)
        except ModelError as e:
            raise CheckpointError(f"{source}: key X: {e}") from None

    def load(
        self, spec: ModelSpec, path: Path, where: str
    ) -> tuple[SBVAE, tuple[Tensor, Tensor] | None]:
        """The stored model and its X; an architecture that contradicts the case's is an error."""
        from ...errors import CheckpointError
        from .checkpoint import load_sbvae_checkpoint

        assert isinstance(spec, SbvaeModelSpec)
        net, X = load_sbvae_checkpoint(path)
        stored = "linear" if net.linear else "nonlinear"
        if stored != spec.architecture:
            raise CheckpointError(
                f"{path}: a {stored} VAE, but {where}: model.architecture gives "
                f"{spec.architecture!r}; expected the same (a checkpoint is measured as stored)"
            )
        return net, (X, X.new_zeros(X.shape[0], 0))

    def read(
        self, path: Path, options: Mapping[str, str | None]
    ) -> tuple[SBVAE, tuple[Tensor, Tensor] | None]:
        """A VAE has no coding, noise or head to choose: any such option is refused."""
        from ...errors import CheckpointError
        from .checkpoint import load_sbvae_checkpoint

        for option, value in options.items():
            if value is not None:
                raise CheckpointError(
                    f"{path}: --{option} {value}: a VAE checkpoint has no {option} setting "
                    "({0, 1} states, Bernoulli factors); leave the option out"
                )
        net, X = load_sbvae_checkpoint(path)
        return net, (X, X.new_zeros(X.shape[0], 0))

    def save(self, path: Path, net: SBVAE, X: Tensor, Y: Tensor) -> None:
        from .checkpoint import save_sbvae_checkpoint

        save_sbvae_checkpoint(path, net, X)

    def load_snapshot(self, path: Path, like: SBVAE) -> SBVAE:
        from ...checkpoint import other_snapshot
        from .checkpoint import load_sbvae_checkpoint

        net, _ = load_sbvae_checkpoint(path)
        if (net.data_dim, net.latent, net.hidden) != (like.data_dim, like.latent, like.hidden):
            raise other_snapshot(path, net, like)
        return net

    def problem(self, net: SBVAE, X: Tensor, Y: Tensor) -> VAEProblem:
        from .model import VAEProblem

        return VAEProblem.create(net, X, Y)

    def network_type(self) -> type:
        from .model import SBVAE

        return SBVAE

    def describe(self, net: SBVAE) -> str:
        return net.describe()

    def size_floor(
        self, spec: ModelSpec, width: int, depth: int, n_points: int, input_dim: int, classes: int
    ) -> int:
        """The states of every latent layer and the data's first-layer posteriors: at least
        8 (depth 2^width width + n_points 2^width) bytes (exact integers)."""
        assert isinstance(spec, SbvaeModelSpec)
        states = 2 ** min(width, 64)
        return 8 * (depth * states * width + spec.n_points * states)

    # ---- training ----------------------------------------------------------------------------

    def parameters(self, net: SBVAE) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """(W, b) per linear map in flat order; the prior is the pair (empty, p_prior)."""
        thetas = tuple(
            net.params[w] if w is not None else net.params[b].new_zeros(0) for w, b in net.pairs
        )
        return thetas, tuple(net.params[b] for _, b in net.pairs)

    def with_parameters(
        self, net: SBVAE, thetas: tuple[Tensor, ...], biases: tuple[Tensor, ...]
    ) -> SBVAE:
        params = {}
        for (w, b), theta, bias in zip(net.pairs, thetas, biases, strict=True):
            if w is not None:
                params[w] = theta
            params[b] = bias
        return net.replace(params)

    def claim_pairs(self, claim: str, model: SBVAE) -> tuple[int, ...] | None:
        """ "decoder only": the pairs of the decoder's factors and the prior (the blocks
        ``dec1``.., ``prior`` and ``decoder``)."""
        if claim != "decoder only":
            return None
        return tuple(range(model.n_latent * (len(model.hidden) + 1), len(model.pairs)))

    # ---- exact reference ---------------------------------------------------------------------

    def reference(self, problem: VAEProblem, memory_budget: int | None = None) -> Reference:
        from .exact import exact_elbo, exact_log_likelihood

        m = problem.model
        result = exact_elbo(m, problem.X, memory_budget=memory_budget)
        ll = float(exact_log_likelihood(m, problem.X, memory_budget=memory_budget).mean())
        elbo = -float(result.loss)
        gradient = result.flat(m.to(dtype=result.loss.dtype))
        exact = {
            "log_likelihood": ll,
            "elbo": elbo,
            "kl_gap": ll - elbo,
            "latent": list(m.latent),
            "hidden": list(m.hidden),
            "data_dim": m.data_dim,
        }
        return Reference(float(result.loss), {"theta": gradient}, vae_blocks(m), exact, COLUMNS)

    def blocks(self, problem: VAEProblem, gradient: Tensor) -> list[Block]:
        """``vae_blocks``: they do not depend on the gradient."""
        return vae_blocks(problem.model)

    def gradient_arrays(
        self, problem: VAEProblem, reference: Reference
    ) -> list[list[tuple[str, Tensor]]]:
        """Per pair: ("d q_W1", [n_1, D]), ("d q_b1", [n_1]), ...; the prior ("d p_prior")."""
        m = problem.model
        grads = m.unflat(reference.gradient())
        return [[(f"d {k}", grads[k]) for k in pair if k is not None] for pair in m.pairs]

    def exact_output(self, problem: VAEProblem, reference: Reference) -> ExactOutput:
        """One flat vector per parameter key (row-major), named by the key, and the mean exact
        log-likelihood (issue 16's ``estbench exact --json``)."""
        m = problem.model
        grads = m.unflat(reference.gradient())
        vectors = [(k, grads[k].reshape(-1), [(f"d {k}", grads[k])]) for k in m.keys]
        return ExactOutput(vectors, {"log_likelihood": reference.exact["log_likelihood"]})

    def exact_gradient(self, problem: VAEProblem) -> Tensor:
        from .exact import exact_elbo

        m = problem.model
        result = exact_elbo(m, problem.X)
        return result.flat(m.to(dtype=result.loss.dtype)).to(dtype=m.dtype)

    def exact_bytes(self, net: SBVAE, n_points: int, memory_budget: int) -> int:
        from .exact import plan_exact

        return plan_exact(net, n_points, memory_budget).bytes

    def exact_seconds(self, net: SBVAE, n_points: int) -> float:
        """The data term N S_1 (D + n_1 + sum hidden) and the tables S_{k-1} S_k (n_{k-1} +
        n_k), each about three times (the value recursion, its gradient, log p(x))."""
        S = [2**n for n in net.latent]
        data = n_points * S[0] * (net.data_dim + net.latent[0] + sum(net.hidden))
        tables = sum(
            a * b * (n + m)
            for a, b, n, m in zip(S, S[1:], net.latent, net.latent[1:], strict=False)
        )
        return SECONDS_PER_UNIT * 3 * (data + tables)

    def path_moments(
        self, estimator: Any, problem: VAEProblem, context: Any, max_paths: int
    ) -> Any:
        """The path estimators' (``VAEPathEstimator``: REINFORCE, MuProp, LEG, the
        straight-through family) exact moments, enumerating the 2^{sum n_k} latent states of each
        point (``moments``); None for the others or over ``max_paths`` states per point."""
        from .estimators.base import VAEPathEstimator
        from .moments import path_count, path_moments

        if not isinstance(estimator, VAEPathEstimator) or path_count(problem.model) > max_paths:
            return None
        return path_moments(estimator, problem, context=context, max_paths=max_paths)

    def path_count(self, estimator: Any, net: SBVAE) -> int | None:
        from .estimators.base import VAEPathEstimator
        from .moments import path_count

        return path_count(net) if isinstance(estimator, VAEPathEstimator) else None

    # ---- conformance -------------------------------------------------------------------------

    def check_problems(self) -> list[VAEProblem]:
        """Three tiny VAEs on the same 4 points of 3 pixels: D = 3 with latent (2,) linear, latent
        (2, 2) linear, and latent (2,) with a tanh hidden layer of 3; biases and prior logits
        N(0, 0.5) so that no factor sits at 1/2. At most 2^4 joint latent states."""
        import torch

        from .model import random_sbvae

        X = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]], dtype=torch.float64)
        out = []
        for seed, latent, hidden in ((21, (2,), ()), (22, (2, 2), ()), (23, (2,), (3,))):
            g = torch.Generator().manual_seed(seed)
            m = random_sbvae(3, latent, hidden, generator=g, scale=1.5)
            params = {
                k: v + 0.7 * torch.randn(v.shape, generator=g, dtype=v.dtype) if v.dim() == 1 else v
                for k, v in m.params.items()
            }
            out.append(self.problem(m.replace(params), X, X.new_zeros(4, 0)))
        return out

    def zero_loss_problem(self) -> VAEProblem:
        """Every factor saturated (logits +-800: sigmoid is exactly 0 or 1 in float64), the
        encoder's z equal to the prior's and the data equal to the decoder's output: every z
        drawn is the one state of probability 1, log p(x, z) = log q(z | x) = 0 exactly, and
        every score and pathwise derivative at it is 0."""
        import torch

        from .model import SBVAE

        sat = torch.tensor([800.0, -800.0], dtype=torch.float64)
        params = {
            "q_W1": torch.zeros(2, 2, dtype=torch.float64),
            "q_b1": sat.clone(),
            "p_W1": torch.zeros(2, 2, dtype=torch.float64),
            "p_b1": -sat,
            "p_prior": sat.clone(),
        }
        X = torch.tensor([[0.0, 1.0]] * 3, dtype=torch.float64)
        return self.problem(SBVAE(2, (2,), (), params), X, X.new_zeros(3, 0))

    def estimators(self) -> list[type]:
        from .estimators import ESTIMATORS

        return list(ESTIMATORS)

    def refusals(self) -> Mapping[str, str]:
        """PSA and SA: derived for a loss of the last binary layer alone (``REFUSALS``)."""
        return REFUSALS

    def reference_network(self) -> SBVAE:
        """The vae-linear case's shape: 64 pixels, one latent layer of 12, linear."""
        import torch

        from .model import random_sbvae

        return random_sbvae(64, (12,), generator=torch.Generator().manual_seed(0))


def vae_blocks(m: SBVAE) -> list[Block]:
    """Per factor, encoder and decoder side by side (``enc1``, ``dec1``, ..., ``prior``), then
    ``encoder`` and ``decoder`` (the prior included)."""
    sizes = m.layer_sizes
    per = len(m.hidden) + 1  # pairs of one factor
    starts = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    L = m.n_latent

    def block(name: str, label: str, pairs: range) -> Block:
        return Block(name, slice(starts[pairs.start], starts[pairs.stop]), label, tuple(pairs))

    out = []
    for k in range(1, L + 1):
        below = "x" if k == 1 else f"z{k - 1}"
        enc = range((k - 1) * per, k * per)
        dec = range((L + k - 1) * per, (L + k) * per)
        out.append(block(f"enc{k}", f"enc{k}: q(z{k} | {below})", enc))
        out.append(block(f"dec{k}", f"dec{k}: p({below} | z{k})", dec))
    n = len(sizes)
    out.append(block("prior", f"prior: p(z{L})", range(n - 1, n)))
    out.append(block("encoder", "encoder (all)", range(0, L * per)))
    out.append(block("decoder", "decoder (all, prior included)", range(L * per, n)))
    return out
