"""Problem kinds: what a kind of objective provides, so the harness never asks which one it runs.

A *problem kind* is a family of objectives J(theta) = E[l] with stochastic binary variables inside,
small instances of which estbench can solve exactly: SBN classifiers with real weights (``sbn``),
SBNs with Bernoulli weights (``weights``), and whatever third parties add. The harness (cases,
runner, measure, metrics, results, report, testing, training, cli) handles every kind through this
one interface and knows no kind by name.

The contract a kind implements (``ProblemKind``)
------------------------------------------------

* **Identity.** ``name`` is what case files (``[model] kind = "..."``), checkpoint files (the
  ``estbench_model`` marker, ``checkpoint_marker``) and estimators (``Estimator.problem``) use;
  ``description`` names it in messages ("an SBN with real weights"). A file without the marker
  is the kind's whose ``recognises_checkpoint(keys)`` accepts its keys (a published format that
  has no marker), else an SBN's (the seed networks' layout).
* **Case files.** ``model_keys()`` declares the kind's own ``[model]`` keys
  (``estbench.schema.Key``: name, type, default, what it accepts, help; the docs' case-file
  reference lists them), and ``parse_model(table, common)`` reads them from the ``[model]`` table
  of a case (a ``Table``: typed look-ups of declared keys, unknown keys are errors naming the file
  and key) into the kind's own frozen ``ModelSpec`` subclass; ``check_case(case)`` checks what
  needs several tables at once.
* **Problems.** ``case_data(spec, offset)`` is the data of a case point when the kind's
  ``[model]`` names them (None: the case's ``[data]``, as for classifiers);
  ``initial(spec, widths, X, labels, stored, offset)`` builds the untrained
  network of a case point and its targets (``targets`` makes them for a given network; a kind
  without targets returns a [N, 0] tensor); ``check_data(source, net, X, Y)`` checks data read
  from a file against a network, naming the file and key;
  ``load(spec, path, where)`` reads a checkpoint named in a case (the network and its data, if
  stored) and ``read(path, options)`` one given on its own (``estbench exact``);
  ``save(path, net, X, Y)`` and ``load_snapshot(path, like)`` store and re-read training
  snapshots; ``problem(net, X, Y)`` is what estimators and the exact solver receive;
  ``network_type()`` is the class of its networks (``kind_of``). A network has ``depth``,
  ``input_dim``, ``widths``, ``out_dim``, ``layer_sizes`` and ``dtype``
  (``estbench.estimators.base.ModelLike``); a problem has ``model``, ``X``, ``n_points``,
  ``n_params``, ``device``, ``split`` and ``to`` (``ProblemLike``).
* **Training.** ``parameters(net)`` are the trained tensors, pair by pair (theta_k, b_k), and
  ``with_parameters(net, thetas, biases)`` the network with new ones; a flat gradient is
  concat_k(theta_k.reshape(-1), b_k) in that order. ``default_training`` names the estimator
  used when a case's ``[training]`` does not say.
* **The exact reference.** ``reference(problem, budget)`` gives the expected loss, the exact
  gradient in every parametrisation an estimator may target (``parametrisations``; the first is
  the default, and an estimator with a ``wrt`` attribute names another), the blocks that results
  and reports show (``Block``: name, slice of the flat gradient, label), and the kind's entries
  of results.json's ``exact`` section (``columns``: those of its scalars that the report's
  exact-reference table shows, with their labels); ``gradient_arrays`` shapes it for printing, and
  ``exact_output`` is what ``estbench exact`` prints (by default one vector per pair,
  ``layer0``..``layerL``, and no further values).
  ``exact_gradient(problem)`` is the default
  parametrisation's gradient alone (training with ``method = "exact"``).
* **Sizing.** ``size_floor(spec, width, depth, n_points, input_dim, classes)`` bounds a point's
  memory from the case's numbers alone; ``exact_bytes(net, n_points, budget)`` is the
  reference's memory (raising ``MemoryBudgetError`` beyond ``budget``) and ``exact_seconds(net,
  n_points)`` a rough time, both before anything is built.
* **Path moments.** ``path_moments(estimator, problem, context, max_paths)``: the exact mean and
  variance of one draw by enumeration, for the kind's path estimators, or None when the estimator
  has none or the enumeration is over ``max_paths``.
* **Claims.** ``claim_pairs(claim, model)``: the parameter pairs a claim of the kind's own
  vocabulary covers (``claims``: claim -> meaning, e.g. the VAE kind's "decoder only"), beside
  the generic ``CLAIMS`` of ``estbench.estimators.base``; an estimator of the kind may claim one
  (``Estimator.claim``), and ``unbiased_layers`` and every block whose pairs it covers follow,
  with no kind-specific code in the harness.
* **Conformance.** ``check_problems()`` (small problems, each solvable exactly) and
  ``zero_loss_problem()`` (an identically zero loss) feed ``estbench.testing.check_estimator``,
  which checks every estimator of every kind with the same code; ``reference_network()`` is the
  network on which ``estbench list`` states each estimator's cost.
* **Estimators.** ``estimators()`` lists the kind's own estimator classes (each with
  ``problem = name``), which the estimator registry adds beside the plugins of
  ``estbench.estimators``. ``refusals()`` names estimators (of any kind) whose derivation does
  not cover the kind's objective, each with the reason (default: none): a case of the kind that
  asks for one is refused with that reason (``cases.check_problem_kind``), and ``estbench
  list`` prints them after its table.

Kinds are registered in the entry-point group ``estbench.problems`` (name = the kind's ``name``,
object = the ``ProblemKind`` subclass), the built-in ones by estbench's own pyproject.toml, so a
third-party package adds a kind with one line of its own and nothing in estbench changes::

    [project.entry-points."estbench.problems"]
    my-kind = "my_package.kind:MyKind"

Loading follows the estimator registry: a kind that fails to import or breaks this contract's
metadata is reported and skipped, never fatal; ``ESTBENCH_DISABLE_PLUGINS=1`` keeps only
estbench's own kinds.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

from .errors import EstbenchError

if TYPE_CHECKING:
    from torch import Tensor

    from .cases import Case, ModelSpec, Table
    from .schema import Key

GROUP = "estbench.problems"
BUILTIN = "estbench"  # the distribution whose entry points are the built-in kinds
NAME = re.compile(r"[a-z][a-z0-9-]*")

P = TypeVar("P")  # the kind's problem type (what ``Estimator.draw`` receives)
N = TypeVar("N")  # the kind's network type


class ProblemKindError(EstbenchError):
    """An unknown kind, or a kind that breaks the contract."""


@dataclass(frozen=True)
class Block:
    """A named part of the flat gradient that results and reports show on its own.

    ``name`` is the ``layer`` column of results.csv (``layer0``, ``layer1.W``, ``all``), ``slice``
    its coordinates in the flat gradient [P], ``label`` the panel title of figures (``layer1
    (Bernoulli η + b)``), and ``pairs`` the parameter pairs k it belongs to (``(1,)`` for
    ``layer1.W``; all binary layers for ``all``): an estimator claims a block unbiased when it
    claims every one of them (``Estimator.unbiased_layers``)."""

    name: str
    slice: slice
    label: str
    pairs: tuple[int, ...]


def pair_blocks(layer_sizes: tuple[int, ...]) -> list[Block]:
    """One block per parameter pair, ``layer0``..``layerL`` (the last is the head), then
    ``all``: the pairs below the head pooled (when there are any)."""
    out, start = [], 0
    depth = len(layer_sizes) - 1
    for k, size in enumerate(layer_sizes):
        name = f"layer{k}"
        label = f"{name} (head)" if k == depth else name
        out.append(Block(name, slice(start, start + size), label, (k,)))
        start += size
    if depth > 0:
        below = slice(0, start - layer_sizes[-1])
        out.append(Block("all", below, "all binary layers", tuple(range(depth))))
    return out


@dataclass(frozen=True)
class Reference:
    """A point's exact reference: the expected loss, the exact gradient in each parametrisation
    (flat [P], float64; the first key is the default), the blocks measured, the kind's
    entries of the ``exact`` section of results.json (JSON-serialisable), and ``columns``: the
    scalar entries of ``exact`` that reports show beside the loss in their exact-reference
    table, key -> column label, in order (e.g. ``{"elbo": "exact ELBO"}``; default none)."""

    loss: float
    gradients: Mapping[str, Tensor]
    blocks: list[Block]
    exact: dict[str, Any]
    columns: Mapping[str, str] = field(default_factory=dict)

    @property
    def default(self) -> str:
        return next(iter(self.gradients))

    def gradient(self, wrt: str | None = None) -> Tensor:
        """The exact gradient an estimator targets: ``wrt`` (its ``wrt`` attribute) or the
        default parametrisation."""
        key = self.default if wrt is None else wrt
        if key not in self.gradients:
            raise ProblemKindError(
                f"no exact gradient wrt {key!r}; this problem has {', '.join(self.gradients)}"
            )
        return self.gradients[key]


class ProblemKind(ABC, Generic[P, N]):
    """A kind of problem; the contract is the module docstring. Subclasses set the class
    attributes and implement every abstract method; one instance per kind is used."""

    name: ClassVar[str]
    description: ClassVar[str]
    default_training: ClassVar[str]
    parametrisations: ClassVar[tuple[str, ...]] = ("theta",)
    # The value of the ``estbench_model`` key in its checkpoint files; None: files without it.
    checkpoint_marker: ClassVar[str | None] = None
    # Bias claims of the kind's own (claim -> what it means), beside the generic ``CLAIMS``;
    # ``claim_pairs`` gives the pairs each covers.
    claims: ClassVar[Mapping[str, str]] = {}

    def recognises_checkpoint(self, keys: frozenset[str]) -> bool:
        """Whether a checkpoint file *without* the ``estbench_model`` marker, with these keys,
        is this kind's: for a kind whose published file format has no marker (files that estbench
        writes carry the marker anyway). The default: no."""
        return False

    # ---- case files --------------------------------------------------------------------------

    def model_keys(self) -> tuple[Key, ...]:
        """The kind's own ``[model]`` keys (besides the common ones, ``cases.MODEL_KEYS``): the
        keys ``parse_model`` may read, listed on the docs' case-file reference. Default: none."""
        return ()

    @abstractmethod
    def parse_model(self, table: Table, common: dict[str, Any]) -> ModelSpec:
        """The ``[model]`` table as the kind's ``ModelSpec``: ``common`` holds the keys every
        kind has (``ModelSpec``'s fields, already read); the kind reads its own, declared by
        ``model_keys()``, from ``table`` (``table.get(name)``; keys it does not read are errors
        naming the file and key)."""

    def check_case(self, case: Case) -> None:  # noqa: B027  (optional hook)
        """Checks that need several tables at once; ``CaseError`` naming the file and key."""

    # ---- problems ----------------------------------------------------------------------------

    def case_data(self, spec: ModelSpec, offset: int) -> tuple[Tensor, Tensor] | None:
        """The data (X, labels) of a case point when the kind's ``[model]`` names them (seeds
        offset by the point's ``offset``), or None: the case's ``[data]`` (the default)."""
        return None

    def check_data(self, source: str | Path, net: N, X: Tensor, Y: Tensor) -> None:
        """Data read from ``source`` (a checkpoint or data file) must fit ``net``; an error
        names the file and the key. The default: inputs of the network's width and targets its
        head accepts (``estbench.checkpoint.fit_data``)."""
        from .checkpoint import fit_data

        fit_data(source, net, X, Y)

    @abstractmethod
    def initial(
        self,
        spec: ModelSpec,
        widths: tuple[int, ...],
        X: Tensor,
        labels: Tensor,
        *,
        stored: bool,
        offset: int,
    ) -> tuple[N, Tensor]:
        """The untrained network of a case point (hidden ``widths``, seeds offset by the point's
        ``offset``) and its targets: from class ``labels``, or as stored in a data file
        (``stored``)."""

    @abstractmethod
    def load(
        self, spec: ModelSpec, path: Path, where: str
    ) -> tuple[N, tuple[Tensor, Tensor] | None]:
        """The network of a checkpoint named by a case (``where``: the case, for messages) and
        its stored data (X, Y), if any; stored settings that contradict ``spec`` are an error."""

    @abstractmethod
    def read(
        self, path: Path, options: Mapping[str, str | None]
    ) -> tuple[N, tuple[Tensor, Tensor] | None]:
        """A checkpoint file on its own (``estbench exact``): the network and its stored data.
        ``options`` are the command's settings (``coding``, ``noise``, ``head``; None when not
        given): a kind whose files store them refuses a contradicting one, naming it."""

    @abstractmethod
    def targets(self, spec: ModelSpec, net: N, labels: Tensor, *, stored: bool) -> Tensor:
        """Targets of ``net``'s head from class ``labels`` or as stored (a checkpoint without
        data measured on the case's data)."""

    @abstractmethod
    def save(self, path: Path, net: N, X: Tensor, Y: Tensor) -> None:
        """A training snapshot with its data, atomically."""

    @abstractmethod
    def load_snapshot(self, path: Path, like: N) -> N:
        """A snapshot written by ``save`` for a network like ``like``; a file of another network
        (left by another version of the case) is an error, never silently measured."""

    @abstractmethod
    def network_type(self) -> type:
        """The class of the kind's networks (``kind_of`` finds a network's kind by it)."""

    @abstractmethod
    def problem(self, net: N, X: Tensor, Y: Tensor) -> P:
        """The problem of a network and its data (validated)."""

    @abstractmethod
    def describe(self, net: N) -> str:
        """A short description of a network for messages."""

    def size_floor(
        self, spec: ModelSpec, width: int, depth: int, n_points: int, input_dim: int, classes: int
    ) -> int:
        """A lower bound in bytes on a point of a synthetic-data case beyond its inputs (widest
        hidden layer ``width``, ``depth`` layers, data of ``classes`` classes), from the case's
        numbers alone (exact integers: a width of 10^6 must not overflow), so that a huge case
        is refused before anything of that size is built; 0 when the kind has none."""
        return 0

    # ---- training ----------------------------------------------------------------------------

    @abstractmethod
    def parameters(self, net: N) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """(theta_k), (b_k): what training updates, pair by pair."""

    @abstractmethod
    def with_parameters(self, net: N, thetas: tuple[Tensor, ...], biases: tuple[Tensor, ...]) -> N:
        """``net`` with new parameters (same structure)."""

    # ---- exact reference ---------------------------------------------------------------------

    @abstractmethod
    def reference(self, problem: P, memory_budget: int | None = None) -> Reference:
        """The exact reference of a problem (module docstring), in float64."""

    def blocks(self, problem: P, gradient: Tensor) -> list[Block]:
        """The blocks of a point whose gradient is known only as an estimate, ``gradient`` (a
        Monte Carlo reference in the default parametrisation, ``estbench.mcref``). The default:
        ``pair_blocks``; a kind whose ``reference`` gives other blocks overrides this."""
        return pair_blocks(problem.model.layer_sizes)  # type: ignore[attr-defined]

    @abstractmethod
    def gradient_arrays(self, problem: P, reference: Reference) -> list[list[tuple[str, Tensor]]]:
        """Per pair, the exact gradient as labelled arrays in the network's shapes (``estbench
        exact`` prints them), e.g. [("dW", [n_out, n_in]), ("db", [n_out])]."""

    def exact_output(self, problem: P, reference: Reference) -> ExactOutput:
        """What ``estbench exact`` prints: named flat gradient vectors with their labelled
        arrays, and further exact values. The default: one vector per pair (``layer{k}``, the
        arrays of ``gradient_arrays``), no further values."""
        vectors = problem.split(reference.gradient())  # type: ignore[attr-defined]
        arrays = self.gradient_arrays(problem, reference)
        named = [(f"layer{k}", v, a) for k, (v, a) in enumerate(zip(vectors, arrays, strict=True))]
        return ExactOutput(named, {})

    @abstractmethod
    def exact_gradient(self, problem: P) -> Tensor:
        """The exact gradient in the default parametrisation, flat [P]."""

    @abstractmethod
    def exact_bytes(self, net: N, n_points: int, memory_budget: int) -> int:
        """Memory of the exact reference; ``MemoryBudgetError`` when over ``memory_budget``."""

    @abstractmethod
    def exact_seconds(self, net: N, n_points: int) -> float:
        """A rough time for the exact reference (for the estimate printed before a run)."""

    def path_moments(
        self, estimator: Any, problem: P, context: Any, max_paths: int
    ) -> PathMoments | None:
        """Exact moments of one draw of ``estimator`` by enumeration, or None (module
        docstring). The default: no path estimators."""
        return None

    def path_count(self, estimator: Any, net: N) -> int | None:
        """Configurations ``path_moments`` would enumerate for ``estimator`` (None: it has no
        exact moments), for the time estimate."""
        return None

    def claim_pairs(self, claim: str, model: N) -> tuple[int, ...] | None:
        """The parameter pairs (0..depth) that ``claim``, one of the kind's ``claims``, covers
        on ``model``; None when it is not one of them. The default: the kind has none."""
        return None

    # ---- conformance -------------------------------------------------------------------------

    @abstractmethod
    def check_problems(self) -> list[P]:
        """Small problems, exactly solvable, on which every estimator of the kind is checked."""

    @abstractmethod
    def zero_loss_problem(self) -> P:
        """A problem whose loss is identically zero (every estimate must be zero)."""

    def estimators(self) -> list[type]:
        """The kind's own estimator classes (registered with the kind's package as their
        source); other packages add estimators for it through ``estbench.estimators``."""
        return []

    def refusals(self) -> Mapping[str, str]:
        """Estimator name -> why its derivation does not cover this kind's objective (one
        sentence, naming the paper or spec section that was checked). A case of this kind that
        asks for one is an error stating the reason, rather than a guess; ``estbench list``
        shows them. The default: none."""
        return {}

    @abstractmethod
    def reference_network(self) -> N:
        """The network on which ``estbench list`` states costs (the seed study's shape)."""


@dataclass(frozen=True)
class ExactOutput:
    """``estbench exact``'s output of a problem (``ProblemKind.exact_output``): ``vectors``, per
    printed gradient its name (the JSON ``grad`` key), its flat vector and its labelled arrays
    in the parameters' shapes; ``values``, further exact numbers by name (JSON top-level keys
    beside ``loss``, e.g. ``log_likelihood``)."""

    vectors: list[tuple[str, Tensor, list[tuple[str, Tensor]]]]
    values: dict[str, float]


@dataclass(frozen=True)
class PathMoments:
    """Exact moments of one draw of a path estimator (``ProblemKind.path_moments``): the
    per-coordinate ``mean`` and ``variance`` [P], and the ``problem`` whose ``split`` cuts them
    into the parameter pairs."""

    mean: Tensor
    variance: Tensor
    problem: Any

    def layer_means(self) -> list[Tensor]:
        return list(self.problem.split(self.mean))

    def layer_total_variances(self) -> list[Tensor]:
        """tr Cov of each pair's vector."""
        return [v.sum() for v in self.problem.split(self.variance)]


@dataclass(frozen=True, eq=False)
class DataProblem(Generic[N]):
    """The problem pattern of kinds whose networks read a data batch: a network ``model`` with
    inputs ``X`` [N, d] and targets ``Y`` (canonical for its head), in the network's dtype and
    device. The network provides ``check_data(X, Y)`` (validation and conversion), ``to`` and
    ``layer_sizes``; a kind subclasses this with its network type (``Problem``,
    ``WeightProblem``)."""

    model: N
    X: Tensor
    Y: Tensor

    @classmethod
    def create(cls, model: N, X: object, Y: object) -> Self:
        return cls(model, *model.check_data(X, Y))  # type: ignore[attr-defined]

    def to(self, *, dtype: Any = None, device: Any = None) -> Self:
        """The same problem in another floating dtype and/or on another device (integer labels
        keep their dtype); ``self`` when nothing changes."""
        import torch

        if (dtype is None or dtype == self.X.dtype) and (
            device is None or torch.device(device) == self.X.device
        ):
            return self
        y_dtype = dtype if self.Y.is_floating_point() else None
        return type(self)(
            self.model.to(dtype=dtype, device=device),  # type: ignore[attr-defined]
            self.X.to(device=device, dtype=dtype),
            self.Y.to(device=device, dtype=y_dtype),
        )

    @property
    def device(self) -> Any:
        return self.X.device

    @property
    def dtype(self) -> Any:
        return self.X.dtype

    @property
    def n_points(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_params(self) -> int:
        return sum(self.model.layer_sizes)  # type: ignore[attr-defined]

    def split(self, flat: Tensor) -> list[Tensor]:
        """[..., P] -> one [..., P_k] per parameter pair."""
        import torch

        sizes = list(self.model.layer_sizes)  # type: ignore[attr-defined]
        return list(torch.split(flat, sizes, dim=-1))


def contract_fault(cls: Any) -> str | None:
    """What is wrong with a kind class's metadata, or None."""
    if not (isinstance(cls, type) and issubclass(cls, ProblemKind)):
        return f"is not a ProblemKind subclass (got {cls!r})"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return f"name must be lowercase letters, digits and dashes, got {name!r}"
    for attr in ("description", "default_training"):
        if not isinstance(getattr(cls, attr, None), str):
            return f"{attr} must be a string"
    params = getattr(cls, "parametrisations", None)
    if not (isinstance(params, tuple) and params and all(isinstance(p, str) for p in params)):
        return "parametrisations must be a non-empty tuple of names"
    abstract = sorted(getattr(cls, "__abstractmethods__", ()))
    if abstract:
        return f"abstract methods left: {', '.join(abstract)}"
    return None


@dataclass(frozen=True)
class KindRegistry:
    """The kinds found: name -> instance, with the source distribution of each, and the plugins
    that could not be loaded (``problems``: reported, not fatal)."""

    kinds: Mapping[str, ProblemKind[Any, Any]]
    sources: Mapping[str, str]  # the distribution of each kind ("estbench" for the built-ins)
    versions: Mapping[str, str]
    problems: tuple[str, ...]

    def get(self, name: str, where: str = "") -> ProblemKind[Any, Any]:
        try:
            return self.kinds[name]
        except KeyError:
            prefix = f"{where}: " if where else ""
            known = ", ".join(repr(k) for k in sorted(self.kinds))
            raise ProblemKindError(
                f"{prefix}unknown problem kind {name!r}; expected one of {known}"
            ) from None

    def by_marker(self, marker: str | None) -> ProblemKind[Any, Any] | None:
        for kind in self.kinds.values():
            if kind.checkpoint_marker == marker:
                return kind
        return None

    def by_keys(self, keys: frozenset[str]) -> list[ProblemKind[Any, Any]]:
        """The kinds that recognise a file without a marker by its keys
        (``ProblemKind.recognises_checkpoint``)."""
        return [k for k in self.kinds.values() if k.recognises_checkpoint(keys)]


def _load(ep: importlib.metadata.EntryPoint) -> ProblemKind[Any, Any]:
    cls = ep.load()
    fault = contract_fault(cls)
    if fault is not None:
        raise ProblemKindError(fault)
    if cls.name != ep.name:
        raise ProblemKindError(f"entry point {ep.name!r} names a kind called {cls.name!r}")
    return cls()


def plugins_disabled() -> bool:
    """``ESTBENCH_DISABLE_PLUGINS`` set (to anything but 0): only estbench's own kinds and
    estimators are loaded."""
    return os.environ.get("ESTBENCH_DISABLE_PLUGINS", "").strip() not in ("", "0")


def kinds(*, plugins: bool | None = None) -> KindRegistry:
    """Every problem kind: estbench's own and, unless plugins are off (``plugins=False`` or
    ``ESTBENCH_DISABLE_PLUGINS=1``), those of installed packages (entry-point group
    ``estbench.problems``)."""
    return _kinds(not plugins_disabled() if plugins is None else plugins)


@lru_cache(maxsize=2)
def _kinds(plugins: bool) -> KindRegistry:
    found: dict[str, ProblemKind[Any, Any]] = {}
    sources: dict[str, str] = {}
    versions: dict[str, str] = {}
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    eps = []
    for ep in importlib.metadata.entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "<unknown package>"
        if (dist, ep.name) not in seen:  # the same distribution visible twice on sys.path
            seen.add((dist, ep.name))
            eps.append((dist, ep))
    for dist, ep in sorted(eps, key=lambda item: (item[0] != BUILTIN, item[0], item[1].name)):
        if dist != BUILTIN and not plugins:
            continue
        version = ep.dist.version if ep.dist is not None else "?"
        where = f"problem kind {ep.name!r} from package {dist} {version} ({ep.value})"
        try:
            kind = _load(ep)
        except Exception as e:  # a broken plugin is reported, never fatal
            if dist == BUILTIN:
                raise
            problems.append(f"{where} is skipped: {type(e).__name__}: {e}")
            continue
        if kind.name in found:
            problems.append(
                f"{where} is skipped: the name is taken by package {sources[kind.name]}"
            )
            continue
        found[kind.name] = kind
        sources[kind.name] = dist
        versions[kind.name] = version
    for name in ("sbn", "weights"):
        if name not in found:  # a source tree run without installing it
            raise ProblemKindError(
                f"the built-in problem kind {name!r} is not registered; install estbench "
                "(pip install -e .) so that its entry points exist"
            )
    return KindRegistry(found, sources, versions, tuple(problems))


def kind_of(net: Any) -> ProblemKind[Any, Any]:
    """The kind whose networks ``net`` is one of (a problem's ``model``)."""
    for kind in kinds().kinds.values():
        if isinstance(net, kind.network_type()):
            return kind
    raise ProblemKindError(f"no problem kind has networks of type {type(net).__name__}")


def get_kind(name: str, where: str = "") -> ProblemKind[Any, Any]:
    """The kind called ``name``; an unknown name is an error naming ``where`` and the kinds."""
    return kinds().get(name, where)
