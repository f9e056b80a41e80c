"""A Monte Carlo reference gradient for points beyond exact enumeration (issue 18).

A case's ``[measure]`` chooses the reference (``ReferenceSpec``, read by ``read_spec``):

* ``reference = "exact"`` (the default): the kind's exact reference, as always;
* ``"mc"``: the mean of R draws of an unbiased estimator at every point;
* ``"auto"``: exact where the kind's exact reference fits the memory budget (``exact_bytes``,
  asked while the run is planned, before any work) and its estimated time (``exact_seconds``)
  is at most ``reference_exact_max_seconds`` (default 60 s: a table built in row blocks fits any
  budget, but at width 16 takes far longer than a Monte Carlo reference), mc beyond.

The reference estimator (``reference_estimator``, else chosen by a pilot run among
``reference_candidates``, else among every estimator of the kind from estbench itself that claims
to be unbiased in every block of the point's network) must claim unbiasedness in every block and
pass its conformance check (``estbench.testing.check_estimator``, with its exact claim test on
the kind's small problems). The pilot draws ``reference_pilot_draws`` of each candidate and keeps
the lowest (loss evaluations per draw) x max over blocks of tr Cov_b / ||g_b||^2, i.e. the fewest
evaluations to reach a given relative SE in the worst block; the cost is the evaluation count
(``Estimator.evals_per_draw``), not the measured time, so the choice, and with it the run, is
reproducible from the seed (the seconds are recorded beside it).

R grows in steps until every block's relative standard error rho_b = sqrt(tr Cov(g_ref)_b) /
||g_b|| (with ||g_b||^2 estimated without its upward bias, ||g_ref||^2 - tr Cov(g_ref)) is at most
``reference_rel_se``, or a cap ends it: ``reference_max_draws`` (stop "max_draws") or
``reference_max_seconds`` (stop "max_seconds"; the only rule that depends on the clock, so a run
it ends is not reproducible byte for byte). The next R is the current R x max_b (rho_b /
target)^2, 5 % more, at most 8 times the current R. The draws are made in chunks of at most
``CHUNK_BYTES`` (and a quarter of the memory budget), each a multiple of ``BATCHES``; the running
mean and per-coordinate variance are merged chunk by chunk (Chan et al.), and every chunk adds
an equal share of its draws to each of ``BATCHES`` batch sums, whose spread gives the
reference's covariance for the corrected metrics (``estbench.mcmetrics``). Everything is float64.

Streams: the pilot of candidate c draws from (root seed, case, point, "mc-reference-pilot", c)
and the reference in shards of at most ``SHARD_DRAWS`` draws, the shard starting at draw i from
(root seed, case, point, "mc-reference@i", estimator): tags no measured estimator's stream uses
(theirs are (root seed, case, point, estimator)), so the reference is independent of the draws
it is compared with. The shards are fixed by the draws alone, so they can be drawn anywhere: on
a Dask cluster each is a task (``mapper``), and the reference is the same as a serial run's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import torch
from torch import Tensor

from .errors import EstbenchError
from .mcmetrics import RefBlock
from .problem import Block
from .schema import Key

MODES = ("exact", "mc", "auto")
BATCHES = 64  # batch means kept for the reference's covariance
CHUNK_BYTES = 64 << 20  # working memory of one chunk of reference draws
GROWTH = 8.0  # R grows at most this factor per step
# Reference draws per shard: the unit of work (one generator, one task on a Dask cluster). Fixed,
# so that the numbers do not depend on how many workers draw them.
SHARD_DRAWS = 4096
STOPS = ("target", "max_draws", "max_seconds")


@dataclass(frozen=True)
class ReferenceSpec:
    """The ``reference*`` keys of a case's ``[measure]`` (module docstring)."""

    mode: str = "exact"
    estimator: str | None = None
    candidates: tuple[str, ...] | None = None
    rel_se: float = 0.01
    max_draws: int = 1_000_000
    max_seconds: float = 3600.0
    pilot_draws: int = 128
    exact_max_seconds: float = 60.0  # auto: the longest estimated exact reference kept

    def quick(self) -> ReferenceSpec:
        """A ``--quick`` run's reference: at most 5 % relative SE, 20,000 draws, 60 s and a
        pilot of 32 draws per candidate."""
        from dataclasses import replace

        return replace(
            self,
            rel_se=max(self.rel_se, 0.05),
            max_draws=min(self.max_draws, 20_000),
            max_seconds=min(self.max_seconds, 60.0),
            pilot_draws=min(self.pilot_draws, 32),
        )


# The reference keys of [measure] (estbench.schema.Key; cases.MEASURE_KEYS includes them).
REFERENCE_KEYS = (
    Key(
        "reference",
        "str",
        "exact",
        choices=MODES,
        help="the reference gradient: exact, mc (Monte Carlo) or auto (exact when it fits)",
    ),
    Key("reference_estimator", "str", help="the Monte Carlo reference's estimator (mc, auto)"),
    Key(
        "reference_candidates",
        "str-list",
        accepts="a list of estimator names",
        help="estimators the reference may choose among (mc, auto)",
    ),
    Key(
        "reference_rel_se",
        "float",
        0.01,
        check=lambda v: 0 < v < 1,
        accepts="a number in (0, 1), e.g. 0.01",
        help="target relative standard error of the reference (mc, auto)",
    ),
    Key(
        "reference_max_draws",
        "int",
        1_000_000,
        check=lambda v: v >= 2 * BATCHES,
        accepts=f"an integer >= {2 * BATCHES}",
        help="the most reference draws per point",
    ),
    Key(
        "reference_max_seconds",
        "float",
        3600.0,
        check=lambda v: v > 0,
        accepts="a positive number of seconds",
        help="the most seconds of reference draws",
    ),
    Key(
        "reference_exact_max_seconds",
        "float",
        60.0,
        check=lambda v: v > 0,
        accepts="a positive number of seconds",
        help="auto: the exact gradient's predicted seconds above which mc is used",
    ),
    Key(
        "reference_pilot_draws",
        "int",
        128,
        check=lambda v: v >= 16,
        accepts="an integer >= 16",
        help="pilot draws that choose among the candidates",
    ),
)


def read_spec(ms: Any, file: str, registry: Any, model: Any) -> ReferenceSpec:
    """The reference keys of ``[measure]`` (a ``cases.Table``); errors name the file and key."""
    from .cases import CaseError, check_problem_kind

    mode = ms.get("reference")

    def estimator(key: str, spec: str) -> str:
        try:
            est = registry.create(spec)
        except EstbenchError as e:
            raise CaseError(f"{file}: {key}: {e}") from None
        check_problem_kind(f"{file}: {key}", est, model)
        return str(est.spec)

    name = ms.get("reference_estimator")
    chosen = None if name is None else estimator("measure.reference_estimator", name)
    raw = ms.get("reference_candidates")
    candidates = (
        None
        if raw is None
        else tuple(estimator(f"measure.reference_candidates[{i}]", s) for i, s in enumerate(raw))
    )
    spec = ReferenceSpec(
        mode=mode,
        estimator=chosen,
        candidates=candidates,
        rel_se=ms.get("reference_rel_se"),
        max_draws=ms.get("reference_max_draws"),
        max_seconds=ms.get("reference_max_seconds"),
        exact_max_seconds=ms.get("reference_exact_max_seconds"),
        pilot_draws=ms.get("reference_pilot_draws"),
    )
    if mode == "exact":
        given = sorted(k for k in ms.raw if k.startswith("reference_"))
        if given:
            raise CaseError(
                f'{file}: measure.{given[0]}: only used with measure.reference = "mc" or '
                f'"auto" (measure.reference is "exact")'
            )
    return spec


# ---- the estimator ---------------------------------------------------------------------------


@cache
def _conforms(spec: str) -> tuple[bool, str]:
    """Whether an estimator passes its conformance check (once per process)."""
    from .testing import check_estimator

    report = check_estimator(spec, raise_on_failure=False)
    failed = [r.name for r in report.results if not r.passed]
    return report.passed, ", ".join(failed)


def unbiased_everywhere(est: Any, model: Any) -> bool:
    """The estimator claims every pair 0..L of ``model`` unbiased."""
    return bool(est.unbiased_layers(model).issuperset(range(model.depth + 1)))


def _default_parametrisation(est: Any) -> bool:
    """The estimator targets its kind's default parametrisation (no ``wrt``, or that one)."""
    from .problem import get_kind

    wrt = getattr(est, "wrt", None)
    return wrt is None or wrt == get_kind(est.problem).parametrisations[0]


def check_reference_estimator(est: Any, model: Any, where: str) -> None:
    """Refuse an estimator that cannot serve as a reference: one not claiming unbiasedness in
    every block, one in another parametrisation, or one failing its conformance check."""
    if not unbiased_everywhere(est, model):
        raise EstbenchError(
            f"{where}: {est.spec!r} does not claim to be unbiased in every block (its claim: "
            f"{est.claim(model)}); expected an unbiased estimator, e.g. disarm or rloo"
        )
    if not _default_parametrisation(est):
        raise EstbenchError(
            f"{where}: {est.spec!r} estimates the gradient wrt {est.wrt!r}; expected an "
            f"estimator of the default parametrisation"
        )
    ok, failed = _conforms(est.spec)
    if not ok:
        raise EstbenchError(
            f"{where}: {est.spec!r} fails its conformance check ({failed}); expected one that "
            f"passes `estbench check {est.spec}`"
        )


def candidates(spec: ReferenceSpec, kind: str, model: Any, where: str) -> list[Any]:
    """The estimators a point's reference may use: ``reference_estimator``; else
    ``reference_candidates``; else every estimator of the kind from estbench itself that claims
    to be unbiased in every block, in the default parametrisation, with independent draws
    (``stochastic``; a baseline estimated from earlier draws of the stream would correlate them,
    so variants whose class takes one keep its default, none)."""
    from .estimators.registry import default_registry

    registry = default_registry()
    if spec.estimator is not None:
        est = registry.create(spec.estimator)
        check_reference_estimator(est, model, f"{where}: measure.reference_estimator")
        return [est]
    if spec.candidates is not None:
        out = []
        for i, name in enumerate(spec.candidates):
            est = registry.create(name)
            check_reference_estimator(est, model, f"{where}: measure.reference_candidates[{i}]")
            out.append(est)
        return out
    out = []
    for name in sorted(registry):
        entry = registry[name]
        if entry.source != "estbench" or getattr(entry.cls, "problem", "sbn") != kind:
            continue
        est = registry.create(name)
        if not est.stochastic or not _default_parametrisation(est):
            continue
        if unbiased_everywhere(est, model) and _conforms(est.spec)[0]:
            out.append(est)
    if not out:
        raise EstbenchError(
            f"{where}: measure.reference: no estimator of kind {kind!r} claims to be unbiased "
            f"in every block; name one with measure.reference_estimator"
        )
    return out


# ---- the reference ---------------------------------------------------------------------------


class _Accumulator:
    """Running mean, sum of squared deviations (Chan et al.'s merge, chunk by chunk), batch sums
    and nonzero counts of the reference draws, all float64 on the problem's device."""

    def __init__(self, P: int, device: torch.device) -> None:
        f64 = torch.float64
        self.n = 0
        self.mean = torch.zeros(P, dtype=f64, device=device)
        self.m2 = torch.zeros(P, dtype=f64, device=device)
        self.batch = torch.zeros(BATCHES, P, dtype=f64, device=device)
        self.events = torch.zeros(P, dtype=torch.int64, device=device)

    def add(self, draws: Tensor) -> None:
        c = draws.shape[0]
        cm = draws.mean(0)
        cm2 = ((draws - cm) ** 2).sum(0)
        n = self.n + c
        delta = cm - self.mean
        self.mean += delta * (c / n)
        self.m2 += cm2 + delta * delta * (self.n * c / n)
        self.n = n
        self.batch += draws.reshape(BATCHES, c // BATCHES, -1).sum(1)
        self.events += (draws != 0).sum(0)

    def merge(self, other: _Accumulator) -> None:
        """Add another accumulator's draws (Chan et al.'s pairwise merge)."""
        if other.n == 0:
            return
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean += delta * (other.n / n)
        self.m2 += other.m2 + delta * delta * (self.n * other.n / n)
        self.n = n
        self.batch += other.batch
        self.events += other.events

    @property
    def lam(self) -> Tensor:
        """Var of the mean per coordinate: s_i^2 / n."""
        return self.m2 / ((self.n - 1) * self.n)

    def factor(self) -> Tensor:
        """Y [K, P] with Y'Y = (covariance of the batch means) / K ~= Cov(mean)."""
        means = self.batch / (self.n // BATCHES)
        return (means - means.mean(0)) / math.sqrt(BATCHES * (BATCHES - 1))


def rel_se(mean: Tensor, lam: Tensor, blocks: list[Block]) -> dict[str, float]:
    """Per block, sqrt(tr Cov) / sqrt(||mean||^2 - tr Cov) (inf where the latter is <= 0)."""
    out = {}
    for b in blocks:
        tr = float(lam[b.slice].sum())
        G = float(mean[b.slice] @ mean[b.slice]) - tr
        out[b.name] = math.sqrt(tr / G) if G > 0 else math.inf
    return out


@dataclass
class McReference:
    """A point's Monte Carlo reference (``compute``): the mean of ``draws`` draws of
    ``estimator`` [P], the variance of that mean per coordinate, the factor of its covariance
    (``BATCHES`` x P), the nonzero counts, and what results.json records (``record``)."""

    estimator: str
    draws: int
    mean: Tensor
    lam: Tensor
    Y: Tensor
    events: Tensor
    rel_se: dict[str, float]
    stop: str
    target: float
    seconds: float
    seconds_per_draw: float
    pilot: dict[str, dict[str, float]] = field(default_factory=dict)

    def block(self, b: Block) -> RefBlock:
        sl = b.slice
        return RefBlock(self.mean[sl], self.lam[sl], self.Y[:, sl], self.events[sl], self.draws)

    def record(self) -> dict[str, Any]:
        """results.json's ``reference`` entry of the point."""
        return {
            "kind": "mc",
            "estimator": self.estimator,
            "draws": self.draws,
            "rel_se": self.rel_se,
            "target_rel_se": self.target,
            "stop": self.stop,
            "seconds": self.seconds,
            "seconds_per_draw": self.seconds_per_draw,
            "pilot": self.pilot,
        }


def chunk_draws(P: int, memory_budget: int) -> int:
    """Draws per chunk: a multiple of ``BATCHES`` within ``CHUNK_BYTES`` and a quarter of the
    memory budget (at least ``BATCHES``)."""
    per_draw = 8 * P
    fit = min(CHUNK_BYTES, memory_budget // 4) // (per_draw * BATCHES)
    return BATCHES * max(1, int(fit))


def reference_bytes(P: int, memory_budget: int) -> int:
    """Memory of the reference computation: one chunk of draws and its centred copy, the batch
    sums, and a few P-vectors (the estimator's own working memory is bounded by ``draw``)."""
    return 8 * P * (2 * chunk_draws(P, memory_budget) + BATCHES + 8)


def _pilot(
    ests: list[Any],
    problem: Any,
    blocks: list[Block],
    n: int,
    make_gen: Callable[[str], torch.Generator],
    memory_budget: int,
) -> tuple[Any, dict[str, dict[str, float]]]:
    """The candidate with the lowest evals x max_b tr Cov_b / ||g_b||^2 from ``n`` draws each;
    ||g_b|| pooled over the candidates (inverse-variance weighted means), so that every
    candidate is scored against the same norm. One that raises is left out (recorded)."""
    stats: dict[str, tuple[Any, Tensor, Tensor, float]] = {}
    info: dict[str, dict[str, float]] = {}
    for est in ests:
        gen = make_gen(est.spec)
        t0 = time.perf_counter()
        try:
            d = est.draw(problem, n, generator=gen, memory_budget=memory_budget)
        except Exception as e:  # a candidate that fails is not chosen
            info[est.spec] = {"error": f"{type(e).__name__}: {e}"}  # type: ignore[dict-item]
            continue
        if not bool(torch.isfinite(d).all()):
            info[est.spec] = {"error": "NaN or inf in its draws"}  # type: ignore[dict-item]
            continue
        seconds = (time.perf_counter() - t0) / n
        d = d.to(torch.float64)
        stats[est.spec] = (est, d.mean(0), d.var(0), seconds)
    if not stats:
        raise EstbenchError(
            "measure.reference: every reference candidate failed in the pilot: "
            + "; ".join(f"{k}: {v.get('error')}" for k, v in info.items())
        )
    norms = {}
    for b in blocks:
        sl = b.slice
        w = [1.0 / max(float(v[sl].sum()), 1e-300) for _, _, v, _ in stats.values()]
        g = sum(wi * m[sl] for wi, (_, m, _, _) in zip(w, stats.values(), strict=True))
        norms[b.name] = max(float((g / sum(w)).norm()) ** 2, 1e-300)  # type: ignore[union-attr]
    best, best_score = None, math.inf
    for spec, (est, _, var, seconds) in stats.items():
        worst = max(float(var[b.slice].sum()) / norms[b.name] for b in blocks)
        evals = max(float(est.evals_per_draw(problem.model)), 1.0)
        score = evals * worst
        info[spec] = {"evals_per_draw": evals, "worst_block_var": worst, "score": score}
        info[spec]["seconds_per_draw"] = seconds
        if score < best_score:
            best, best_score = est, score
    if best is None:  # every score was inf or NaN: the first that drew
        best = next(iter(stats.values()))[0]
    return best, info


Mapper = Callable[[Callable[..., Any], tuple[Any, ...], list[tuple[Any, ...]]], list[Any]]


def serial_map(
    fn: Callable[..., Any], shared: tuple[Any, ...], jobs: list[tuple[Any, ...]]
) -> list[Any]:
    """``fn(*shared, *job)`` for every job, in order, here (the default ``Mapper``)."""
    return [fn(*shared, *job) for job in jobs]


def draw_shard(
    problem: Any,
    est: Any,
    context: Any,
    memory_budget: int,
    where: str,
    seed: int,
    n: int,
) -> tuple[_Accumulator, float]:
    """``n`` reference draws (a multiple of ``BATCHES``) from the generator seeded ``seed``, in
    chunks of ``chunk_draws``, summarised in an ``_Accumulator``; and the seconds they took. A
    module-level function, so that a Dask worker can run it (``Mapper``)."""
    from .device import generator, synchronize

    gen = generator(problem.device, seed)
    acc = _Accumulator(problem.n_params, problem.device)
    chunk = chunk_draws(problem.n_params, memory_budget)
    t0 = time.perf_counter()
    while acc.n < n:
        d = est.draw(
            problem,
            min(chunk, n - acc.n),
            generator=gen,
            memory_budget=memory_budget,
            context=context,
        )
        if not bool(torch.isfinite(d).all()):
            raise EstbenchError(
                f"{where}: measure.reference: the reference estimator {est.spec!r} drew NaN or inf"
            )
        acc.add(d.to(torch.float64))
    synchronize(problem.device)
    return acc, time.perf_counter() - t0


def shards(start: int, stop: int) -> list[tuple[int, int]]:
    """[start, stop) cut at the multiples of ``SHARD_DRAWS``: (first draw, count) per shard. A
    shard is named by its first draw, whatever the rounds before it drew."""
    out = []
    while start < stop:
        end = min(stop, (start // SHARD_DRAWS + 1) * SHARD_DRAWS)
        out.append((start, end - start))
        start = end
    return out


def compute(
    problem: Any,
    spec: ReferenceSpec,
    blocks_of: Callable[[Tensor], list[Block]],
    seed_of: Callable[[str, str], int],
    memory_budget: int,
    where: str,
    mapper: Mapper = serial_map,
) -> tuple[McReference, list[Block]]:
    """The Monte Carlo reference of a float64 ``problem`` and its blocks (``blocks_of`` gives
    the kind's blocks for a gradient). ``seed_of(tag, estimator)`` is the seed of a stream: the
    pilot's (tag ``mc-reference-pilot``), the reference estimator's ``prepare``
    (``mc-reference``) and each shard of its draws (``mc-reference@<first draw>``, see
    ``shards``). ``mapper`` draws a round's shards (``serial_map``: here, one after another; the
    Dask runner passes one that spreads them over the workers); the result is the same either
    way, since the shards and their seeds depend on the round's draws alone and their summaries
    are merged in order."""
    from .device import generator
    from .problem import kind_of

    kind = kind_of(problem.model)
    ests = candidates(spec, kind.name, problem.model, where)
    P = problem.n_params
    blocks = blocks_of(torch.ones(P, dtype=torch.float64, device=problem.device))
    pilot: dict[str, dict[str, float]] = {}
    if len(ests) == 1:
        est = ests[0]
    else:
        est, pilot = _pilot(
            ests,
            problem,
            blocks,
            spec.pilot_draws,
            lambda s: generator(problem.device, seed_of("mc-reference-pilot", s)),
            memory_budget,
        )
    context = est.prepare(problem, generator(problem.device, seed_of("mc-reference", est.spec)))
    acc = _Accumulator(P, problem.device)
    cap = max(spec.max_draws // BATCHES, 2) * BATCHES
    want = min(cap, BATCHES * math.ceil(max(spec.pilot_draws, 2 * BATCHES) / BATCHES))
    t0 = time.perf_counter()
    stop = ""
    drawing = 0.0
    shared = (problem, est, context, memory_budget, where)
    while not stop:
        jobs = [(seed_of(f"mc-reference@{first}", est.spec), n) for first, n in shards(acc.n, want)]
        for part, seconds in mapper(draw_shard, shared, jobs):
            acc.merge(part)
            drawing += seconds
        rho = rel_se(acc.mean, acc.lam, blocks)
        worst = max(rho.values())
        elapsed = time.perf_counter() - t0
        if worst <= spec.rel_se:
            stop = "target"
        elif elapsed > spec.max_seconds:
            stop = "max_seconds"
        elif acc.n >= cap:
            stop = "max_draws"
        else:
            need = acc.n * (worst / spec.rel_se) ** 2 * 1.05 if math.isfinite(worst) else math.inf
            nxt = min(max(need, acc.n + BATCHES), GROWTH * acc.n, cap)
            # A round ends near the time cap rather than far past it: no more draws than the
            # time left allows at the rate of the rounds so far (the clock is the one rule that
            # is not reproducible, as the module docstring says).
            rate = acc.n / max(elapsed, 1e-9)
            nxt = min(nxt, acc.n + max(rate * (spec.max_seconds - elapsed), BATCHES))
            want = min(cap, BATCHES * math.ceil(nxt / BATCHES))
    blocks = blocks_of(acc.mean)
    rho = rel_se(acc.mean, acc.lam, blocks)
    ref = McReference(
        estimator=est.spec,
        draws=acc.n,
        mean=acc.mean,
        lam=acc.lam,
        Y=acc.factor(),
        events=acc.events,
        rel_se=rho,
        stop=stop,
        target=spec.rel_se,
        seconds=time.perf_counter() - t0,
        seconds_per_draw=drawing / max(acc.n, 1),
        pilot=pilot,
    )
    return ref, blocks
