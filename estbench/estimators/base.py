"""The estimator contract, stated once.

An estimator receives a **problem** -- an SBN (parameters, coding, noise, head) with a data batch
X [N, d] and targets Y -- a number of draws S and a ``torch.Generator``, and returns

    draw(problem, S, generator=g) -> Tensor [S, P]

S independent single-sample estimates of the gradient of the full-batch objective
J = (1/N) sum_n E[l(z(x_L), y_n) | X_n] with respect to every parameter, flattened per layer in
the core order: concat over k = 0..L of concat(W_k.reshape(-1), b_k) (``Problem.split`` splits a
[.., P] tensor into the L+1 layer vectors). One draw follows the seed protocol: every data point
gets its own noise, and the estimate is the gradient of the mean loss.

Rules every estimator follows:

* randomness only from the generator passed in (never global RNG state); the same generator state
  gives bit-identical output for the same S and memory budget;
* device and dtype are the problem's (``problem.X``): every tensor an estimator creates lives
  there (``torch.zeros(..., dtype=X.dtype, device=X.device)``, ``torch.eye(..., device=...)``),
  and uniforms come from ``estbench.rng.uniforms``, which draws on the generator's device (a
  CUDA run passes a CUDA generator). float32 problems are allowed (``Problem.to``) for the draws;
  tests/test_device.py runs every estimator on the ``meta`` device to catch a stray CPU tensor;
* no Python loop over draws or data points; draws are computed in chunks whose size the base class
  derives from ``bytes_per_draw`` and the memory budget;
* metadata as class attributes: ``name`` (what users type), ``family``, ``unbiased`` (the claim
  about its bias, one of ``CLAIMS``: "yes", "head only", "last layer only", "no", or one of its
  problem kind's own ``ProblemKind.claims`` such as the VAE kind's "decoder only";
  ``claim(model)`` when parameters change it) from which ``unbiased_layers`` follows,
  ``evals_per_draw`` (evaluations of the loss on a complete path per draw), ``hyperparameters``
  (name -> ``Hyper`` with default), ``reference``, and ``problem``: the name of the problem kind
  it handles (``estbench.problem``), ``"sbn"`` (default, this module's ``Problem``),
  ``"weights"`` (an ``estbench.kinds.weights.WeightProblem``, SBNs with Bernoulli weights) or a
  plugin's kind; and what verifies it: ``verified`` (one or a few sentences, Markdown: the
  oracle, closed form, statistical test or negative control that confirms the implementation)
  and ``tests`` (the test files that do it, paths from the root of the repository that holds
  the estimator, e.g. ``"tests/test_score_estimators.py"``), from which the documentation's
  "How each estimator is verified" tables are generated. Every built-in states both; for a
  plugin they are optional (default empty: the tables then say "not stated by the plugin").
  They are not inherited: a subclass states its own, or none (its tests are not its parent's);
* an estimator whose only randomness is the sampled path subclasses ``PathEstimator`` and also
  provides ``path_estimate(problem, bits)``: the estimate for given binary states, per data point,
  so that its exact mean and variance can be computed by enumerating paths.

Variants are configured instances, not new classes: ``Concrete(tau=0.1)``, spelled
``concrete(tau=0.1)`` in the registry, the CLI and case files.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, NamedTuple, Protocol, TypeVar, final

import torch
from torch import Tensor

from ..errors import EstbenchError
from ..options import default_memory_budget

CHUNK_BYTES = 64 << 20  # working memory of one chunk of draws (CPU)
CUDA_CHUNK_BYTES = 256 << 20  # on a GPU: fewer, larger kernels (no cache to fit)
MIN_CHUNK_DRAWS = 64  # draws per chunk, at least (within the memory budget)
FAMILIES = ("score-function", "relaxation", "straight-through", "path-analytic", "deterministic")
# What an estimator may claim about its bias (``Estimator.claim``), and the pairs k = 0..L
# (L = the head) each claim covers: every pair; the head alone (its gradient is pathwise when the
# states are hard); the last binary layer's pair and the head; none.
CLAIMS: dict[str, Callable[[int], Iterable[int]]] = {
    "yes": lambda depth: range(depth + 1),
    "head only": lambda depth: (depth,),
    "last layer only": lambda depth: (depth - 1, depth),
    "no": lambda depth: (),
}


def claim_layers(claim: str, model: Any, kind: str) -> frozenset[int] | None:
    """The pairs a claim covers on ``model``: a generic claim (``CLAIMS``) by the model's depth,
    else one of the problem kind ``kind``'s own (``ProblemKind.claim_pairs``); None when it is
    neither."""
    if claim in CLAIMS:
        return frozenset(CLAIMS[claim](model.depth))
    from ..problem import get_kind

    pairs = get_kind(kind).claim_pairs(claim, model)
    return None if pairs is None else frozenset(pairs)


def known_claims(kind: str) -> list[str]:
    """Every claim an estimator of problem kind ``kind`` may make: ``CLAIMS`` and the kind's."""
    from ..problem import get_kind

    return [*CLAIMS, *get_kind(kind).claims]


class VarianceClaim(NamedTuple):
    """A published ordering (``Estimator.variance_claims``): this estimator's gradient variance
    below ``other``'s at equal loss evaluations, per ``source``, about the blocks whose names
    match one of ``blocks`` (shell patterns, e.g. ``("enc*",)`` for a VAE's encoder blocks;
    empty: every block). Reports test it in those blocks and show the others apart."""

    other: str
    source: str
    blocks: tuple[str, ...] = ()


class ModelLike(Protocol):
    """What the base class reads of a problem's network (``SBN`` and ``WeightSBN`` have it)."""

    @property
    def depth(self) -> int: ...
    @property
    def input_dim(self) -> int: ...
    @property
    def widths(self) -> tuple[int, ...]: ...
    @property
    def out_dim(self) -> int: ...
    @property
    def layer_sizes(self) -> tuple[int, ...]: ...


class ProblemLike(Protocol):
    """What the base class reads of a problem (``Problem`` and ``WeightProblem`` have it)."""

    @property
    def model(self) -> ModelLike: ...
    @property
    def X(self) -> Tensor: ...
    @property
    def n_points(self) -> int: ...
    @property
    def n_params(self) -> int: ...
    @property
    def device(self) -> torch.device: ...
    def split(self, flat: Tensor) -> list[Tensor]: ...
    def to(
        self, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> ProblemLike: ...


# The problem an estimator's ``draw`` receives and the network in it: (Problem, SBN) for
# ``problem = "sbn"``, (WeightProblem, WeightSBN) for ``problem = "weights"``.
ProblemT = TypeVar("ProblemT", bound=ProblemLike)
ModelT = TypeVar("ModelT", bound=ModelLike)


class EstimatorError(EstbenchError):
    """A bad estimator name, parameter or configuration."""


@dataclass(frozen=True)
class Hyper:
    """A hyperparameter: default, type, and the values it may take."""

    default: Any
    kind: type = float
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None  # inclusive unless ``exclusive``
    exclusive: bool = False
    help: str = ""

    def check(self, estimator: str, name: str, value: Any) -> Any:
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, self.kind) or isinstance(value, bool) != (self.kind is bool):
            raise EstimatorError(
                f"{estimator}: parameter {name} must be {self.kind.__name__}, got {value!r}"
            )
        if self.choices is not None and value not in self.choices:
            raise EstimatorError(
                f"{estimator}: parameter {name} must be one of "
                f"{', '.join(map(str, self.choices))}; got {value!r}"
            )
        low = self.minimum
        if (
            low is not None
            and isinstance(value, int | float)
            and (value <= low if self.exclusive else value < low)
        ):
            rel = ">" if self.exclusive else ">="
            raise EstimatorError(
                f"{estimator}: parameter {name} must be {rel} {low}, got {value!r}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise EstimatorError(f"{estimator}: parameter {name} must be finite, got {value!r}")
        return value


class Estimator(ABC, Generic[ProblemT, ModelT]):
    """Base class of all estimators; see the module docstring for the contract. Generic over the
    problem ``draw`` receives and its network: ``Estimator[Problem, SBN]`` (``problem = "sbn"``)
    or ``Estimator[WeightProblem, WeightSBN]`` (``"weights"``); a bare ``Estimator`` is either."""

    name: ClassVar[str]
    family: ClassVar[str]
    unbiased: ClassVar[str]  # the claim with the default parameters, one of CLAIMS
    reference: ClassVar[str]
    hyperparameters: ClassVar[dict[str, Hyper]] = {}
    stochastic: ClassVar[bool] = True  # False for deterministic "estimators" (mean field)
    problem: ClassVar[str] = "sbn"  # the problem kind it handles (estbench.problem)
    # Published orderings to test (``VarianceClaim``: another estimator's name, the source, and
    # the blocks the source's claim is about) where the source reports this estimator's gradient
    # variance below the other's at equal loss evaluations. The runner records them and reports
    # state, per block, whether the measurement agrees (with its CI), counting the claim's blocks.
    variance_claims: ClassVar[tuple[VarianceClaim | tuple[str, str], ...]] = ()
    # What confirms the implementation, and the test files that do it (module docstring); empty
    # for a class that does not state them. Not inherited (``__init_subclass__``).
    verified: ClassVar[str] = ""
    tests: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass is another implementation: its parent's verification is not its own.
        if "verified" not in cls.__dict__:
            cls.verified = ""
        if "tests" not in cls.__dict__:
            cls.tests = ()

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.hyperparameters))
        if unknown:
            allowed = ", ".join(self.hyperparameters) or "none"
            raise EstimatorError(
                f"{self.name}: unknown parameter {unknown[0]!r} (parameters: {allowed})"
            )
        self.params: dict[str, Any] = {
            key: spec.check(self.name, key, params.get(key, spec.default))
            for key, spec in self.hyperparameters.items()
        }

    # ---- metadata -------------------------------------------------------------------------

    @property
    def spec(self) -> str:
        """The canonical spelling: name plus every parameter that differs from its default."""
        changed = [
            f"{k}={v}" for k, v in self.params.items() if v != self.hyperparameters[k].default
        ]
        return f"{self.name}({', '.join(changed)})" if changed else self.name

    def __repr__(self) -> str:
        return f"<estimator {self.spec}>"

    def claim(self, model: ModelT) -> str:
        """What this configuration claims about its bias on ``model``, one of ``CLAIMS`` or of
        its problem kind's ``claims`` (``claim_layers``): the
        class's ``unbiased``, unless its parameters change it (override this, never
        ``unbiased_layers``, so that the sentence and the layers have one source)."""
        return self.unbiased

    @final
    def unbiased_layers(self, model: ModelT) -> frozenset[int]:
        """Indices of the pairs (0..L, L = head) whose gradient the estimator claims unbiased:
        those of its ``claim`` (``claim_layers``)."""
        claim = self.claim(model)
        layers = claim_layers(claim, model, self.problem)
        if layers is None:
            raise EstimatorError(f"{self.name}: unknown claim {claim!r}")
        return layers

    def evals_per_draw(self, model: ModelT) -> float:
        """Evaluations of the loss on a complete path per draw (cost, spec §0 "FE")."""
        return 1.0

    def bytes_per_draw(self, problem: ProblemT) -> int:
        """Working memory of one draw; the base class sizes chunks from it. Override if larger."""
        m = problem.model
        per_point = 16 * (sum(m.widths) + m.input_dim + m.out_dim) + 4 * problem.n_params
        return 8 * problem.n_points * per_point

    # ---- drawing --------------------------------------------------------------------------

    def draw(
        self,
        problem: ProblemT,
        n_draws: int,
        *,
        generator: torch.Generator,
        memory_budget: int | None = None,
        context: Any = None,
    ) -> Tensor:
        """[n_draws, P] i.i.d. single-draw estimates, computed in memory-bounded chunks.

        ``context`` is the result of ``prepare`` when the caller already has it (so that exact
        moments and draws share e.g. a frozen baseline); by default it is prepared here.
        """
        if n_draws < 1:
            raise EstimatorError(f"{self.name}: the number of draws must be >= 1, got {n_draws}")
        chunk = self.chunk_size(problem, n_draws, memory_budget)
        if context is None:
            context = self.prepare(problem, generator)
        parts = []
        for start in range(0, n_draws, chunk):
            n = min(chunk, n_draws - start)
            part = self._draw(problem, n, generator, context)
            # Checked per chunk, so a wrong block is named here rather than failing in cat.
            expected = (n, problem.n_params)
            if not isinstance(part, Tensor) or tuple(part.shape) != expected:
                got = list(part.shape) if isinstance(part, Tensor) else type(part).__name__
                raise EstimatorError(
                    f"estimator {self.spec!r}: _draw returned {got} for {n} draws; expected "
                    f"shape {list(expected)} ([draws, parameters])"
                )
            parts.append(part)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def chunk_size(self, problem: ProblemT, n_draws: int, memory_budget: int | None = None) -> int:
        """Draws per chunk: what fits in CHUNK_BYTES of working memory (chunks that fit in cache
        run faster than one huge batch), but at least MIN_CHUNK_DRAWS (smaller chunks pay the
        per-chunk Python overhead again and again, and their tensors are too small for torch to
        split elementwise work across threads -- it does so above 32768 elements), and never more
        than the memory budget holds. Timings: docs/performance.md."""
        budget = default_memory_budget() if memory_budget is None else memory_budget
        per_draw = max(1, self.bytes_per_draw(problem))
        target = CUDA_CHUNK_BYTES if problem.X.device.type == "cuda" else CHUNK_BYTES
        chunk = max(target // per_draw, MIN_CHUNK_DRAWS)
        return max(1, min(n_draws, chunk, budget // per_draw))

    def prepare(self, problem: ProblemT, generator: torch.Generator) -> Any:
        """Work done once per ``draw`` call and shared by its draws (e.g. a frozen baseline
        estimated from independent samples). The result is passed to ``_draw`` as ``context``."""
        return None

    @abstractmethod
    def _draw(
        self, problem: ProblemT, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        """[n_draws, P] estimates; the chunking is done by ``draw``."""
