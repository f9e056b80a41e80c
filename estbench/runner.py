"""Run a case: every case point x every estimator -> tidy rows, written as the run goes.

For each case point (the sweep's product of depth, width, checkpoint and seed) the runner builds
the data and the network (initialised and trained, or from a checkpoint), computes the exact
gradient once, and measures every estimator variant (``tau`` in the sweep expands the estimators
that have a ``tau`` parameter). Each finished point is written atomically to
``DIR/<case>/points/<point>.json``; a re-run skips finished points, so an interrupted run loses
at most the point in progress. An estimator that raises or returns NaN/inf (or draws of the wrong
shape, dtype or device) fills the ``error`` column of its rows and the run goes on.
``results.csv`` and ``results.json`` are assembled from the point files at the end and committed
as one unit (``results.commit_results``).

Finished work is never lost (``plan_run``, ``run_case``):

* before any work, the whole case is planned: every point's exact reference and draws are
  checked against the memory budget, naming the point, the estimate and ``--memory-budget``;
* a directory records the run it belongs to (``run.json``: case hash, seed, estimators, device,
  dtype); a run whose settings differ is refused, naming what differs, unless ``force`` replaces
  the old results; ``--quick`` runs go to their own directory, ``<case>-quick``;
* one run at a time per directory: a lock file (``.lock``, with the holder's pid) is taken.

Randomness: every stream is seeded from (root seed, case, point, estimator spec) through
``numpy.random.SeedSequence``, so results do not depend on the order in which things run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .cases import Case, check_problem_kind
from .data import make_dataset
from .device import device_name, dtype_name, resolve_device, resolve_dtype
from .device import generator as make_generator
from .errors import EstbenchError, MemoryBudgetError
from .estimators.base import Estimator
from .estimators.registry import default_registry
from .lock import case_lock
from .mcref import McReference, ReferenceSpec, reference_bytes
from .measure import MeasureOptions, Row, measure
from .options import default_memory_budget, format_bytes
from .problem import Block, ProblemKind, Reference, get_kind, kind_of
from .results import (
    atomic_write,
    commit_results,
    environment,
    point_id,
    remove_stale_temporaries,
    rows_to_csv,
)
from .training import train

POINT_FORMAT = 2  # 2: the draws' random stream of estbench.rng (1: torch.rand)


def stream_seed(*parts: Any) -> int:
    """A 63-bit seed from a root seed and names, independent of execution order."""
    words = [int(p) if isinstance(p, int) else zlib.crc32(str(p).encode()) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] >> 1)


@dataclass
class Variant:
    """An estimator as measured: its instance and its tau (if swept)."""

    estimator: Estimator
    tau: float | None = None

    @property
    def label(self) -> str:
        """Its name in results: the canonical spec, e.g. ``concrete(tau=0.5)``."""
        return self.estimator.spec


def estimator_variants(case: Case, extra: list[Estimator] | None = None) -> list[Variant]:
    """The estimators of a run (the case's, or --estimators, plus API objects), each swept over
    ``tau`` when it has that parameter; one listed twice is an error naming it."""
    registry = default_registry()
    base = [registry.create(s) for s in case.measure.estimators] + list(extra or [])
    for est in base:  # --estimators and API objects bypass the case file's validation
        check_problem_kind(case.name, est, case.model)
    taus = case.sweep.get("tau")
    out: list[Variant] = []
    for est in base:
        if taus and "tau" in est.hyperparameters:
            for tau in taus:
                variant = type(est)(**{**est.params, "tau": tau})
                out.append(Variant(variant, tau))
        else:
            out.append(Variant(est))
    seen: set[str] = set()
    for v in out:
        if v.label in seen:
            raise EstbenchError(
                f"{_where(case)}: measure.estimators: {v.label!r} is listed twice (the same "
                f"estimator and parameters); expected each estimator once"
            )
        seen.add(v.label)
    return out


def _where(case: Case) -> str:
    return str(case.path) if case.path else f"<case {case.name}>"


@dataclass
class RunReport:
    case: str
    directory: Path
    points_done: int = 0
    points_skipped: int = 0
    errors: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # claimed-unbiased estimators that failed


def _labels_data(case: Case, seed_offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    d = case.data
    if d.kind == "npz":
        from .data import load_dataset

        return load_dataset(d.path)  # type: ignore[arg-type]
    params: dict[str, Any] = {}
    if d.kind in ("moons", "xor"):
        params["noise"] = d.noise
    if d.kind == "blobs":
        params.update(classes=d.classes, dim=d.dim)
    X, labels = make_dataset(d.kind, d.n, d.seed + seed_offset, **params)
    return X, labels


class CaseRunner:
    """Builds the problems of a case's points (training once per architecture and seed)."""

    def __init__(
        self,
        case: Case,
        directory: Path,
        *,
        progress: Callable[[str], None],
        show_progress: bool | None = None,
    ) -> None:
        self.show_progress = None if show_progress is None else not show_progress  # tqdm disable
        self.case = case
        self.directory = directory
        self.progress = progress
        self.kind: ProblemKind[Any, Any] = get_kind(case.model.kind)
        self._trained_nets: dict[tuple[Any, ...], dict[int, Any]] = {}

    def initial(self, point: dict[str, Any]) -> tuple[Any, torch.Tensor, torch.Tensor, bool]:
        """The point's network before training (its shapes are the trained network's), its data
        and whether it is to be trained -- cheap, so a whole case can be planned up front."""
        case, m, kind = self.case, self.case.model, self.kind
        offset = int(point.get("seed", 0))
        stored = case.data.kind == "npz"  # targets as stored in the file, else class labels
        if m.checkpoint is not None:
            net, data = case_checkpoint(case)
            if data is not None:
                X, Y = data
            else:
                X, labels = self._data(offset)
                Y = kind.targets(m, net, labels, stored=stored)
            # errors name the file and the key X or Y
            source = m.checkpoint if data is not None else case.data.path
            kind.check_data(source or f"{_where(case)}: data", net, X, Y)
            return net, X, Y, False
        X, labels = self._data(offset)
        net, Y = kind.initial(m, case.widths_at(point), X, labels, stored=stored, offset=offset)
        if stored:  # the stored targets must fit the head; errors name the file and the key
            kind.check_data(case.data.path or _where(case), net, X, Y)
        return net, X, Y, case.training is not None

    def _data(self, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The point's data and labels: the kind's own (``ProblemKind.case_data``), else the
        case's ``[data]``."""
        own = self.kind.case_data(self.case.model, offset)
        return own if own is not None else _labels_data(self.case, offset)

    def problem(self, point: dict[str, Any]) -> Any:
        """The point's problem (``network`` with its data, as the kind's problem)."""
        return self.kind.problem(*self.network(point))

    def network(self, point: dict[str, Any]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """The point's network -- from ``model.checkpoint``, or initialised (and trained to the
        point's epoch if the case has ``[training]``) -- and its data."""
        net, X, Y, trained = self.initial(point)
        if trained:
            snapshot = self.snapshot(point)
            assert snapshot is not None
            key, tag, epoch, path = snapshot
            if path.exists():  # trained by an earlier (possibly interrupted) run
                net = self.kind.load_snapshot(path, net)
            else:
                if key not in self._trained_nets:
                    self._trained_nets[key] = self.train(point, net, X, Y)
                    self.save_snapshots(tag, self._trained_nets[key], X, Y)
                net = self._trained_nets[key][epoch]
        return net, X, Y

    def snapshot(self, point: dict[str, Any]) -> tuple[tuple[Any, ...], str, int, Path] | None:
        """For a point that is trained: its training run's key and tag, the epoch it is measured
        at, and the file of that snapshot in ``checkpoints/`` (which a later run reuses)."""
        if self.case.model.checkpoint is not None or self.case.training is None:
            return None
        epoch = int(point.get("checkpoint", max(self.case.training.measure_at)))
        offset = int(point.get("seed", 0))
        widths = self.case.widths_at(point)
        tag = f"w{'-'.join(map(str, widths))}_seed{offset}"
        path = self.directory / "checkpoints" / f"{tag}_epoch{epoch}.npz"
        return (widths, offset), tag, epoch, path

    def train(self, point: dict[str, Any], init: Any, X: torch.Tensor, Y: torch.Tensor) -> Any:
        """``init`` trained through every epoch the sweep measures: {epoch: network}."""
        spec = self.case.training
        snapshot = self.snapshot(point)
        assert spec is not None and snapshot is not None
        tag = snapshot[1]
        epochs = sorted(set(self.case.sweep.get("checkpoint", spec.measure_at)))
        train_spec = replace(
            spec, measure_at=tuple(epochs), seed=spec.seed + int(point.get("seed", 0))
        )
        self.progress(f"training {tag} for {max(epochs)} epochs ({spec.method})")
        with tqdm(
            total=max(epochs),
            desc=f"training {tag}",
            unit="epoch",
            file=sys.stderr,
            disable=self.show_progress,
            leave=False,
        ) as bar:
            return train(init, X, Y, train_spec, on_epoch=lambda _: bar.update(1), kind=self.kind)

    def save_snapshots(
        self, tag: str, nets: dict[int, Any], X: torch.Tensor, Y: torch.Tensor
    ) -> None:
        for e, net in nets.items():
            self.kind.save(self.directory / "checkpoints" / f"{tag}_epoch{e}.npz", net, X, Y)


def case_checkpoint(case: Case) -> tuple[Any, tuple[torch.Tensor, torch.Tensor] | None]:
    """The network of ``model.checkpoint`` (or ``--checkpoint``) and its data if stored, read by
    the case's kind (which checks the stored settings against the case's)."""
    m = case.model
    assert m.checkpoint is not None
    return get_kind(m.kind).load(m, m.checkpoint, _where(case))


def run_settings(
    case: Case, *, device: str | None = None, dtype: str | None = None
) -> tuple[torch.device, torch.dtype]:
    """The device and draw dtype of a run: the arguments (the CLI's --device and --dtype) over
    the case's ``measure.device`` and ``measure.dtype``. An unusable device is an error naming
    where it was asked for, before any work starts."""
    file = str(case.path) if case.path else f"<case {case.name}>"
    dev = resolve_device(
        device or case.measure.device,
        where="--device" if device else f"{file}: measure.device",
    )
    draw_dtype = resolve_dtype(
        dtype or case.measure.dtype, where="--dtype" if dtype else f"{file}: measure.dtype"
    )
    return dev, draw_dtype


def reference(problem: Any, memory_budget: int | None = None) -> tuple[Reference, dict[str, Any]]:
    """The exact reference of a point (its kind's ``reference``) and the ``exact`` section of
    results.json: the loss, the gradient's norm per
    block in the default parametrisation (``grad_norm``) and in any other where they differ
    (``grad_norm_<name>``), the widths and point count, the blocks with their labels (which
    reports show as panel titles), the kind's own entries, and ``columns``: [key, label] of the
    kind's scalar entries that the report's exact-reference table shows (only when there are
    any)."""
    kind = kind_of(problem.model)
    ref = kind.reference(problem, memory_budget)
    default = ref.gradient()
    norms = {b.name: float(default[b.slice].norm()) for b in ref.blocks}
    exact: dict[str, Any] = {
        "loss": ref.loss,
        "grad_norm": norms,
        "widths": list(problem.model.widths),
        "n_points": problem.n_points,
        "kind": kind.name,
        "blocks": [[b.name, b.label] for b in ref.blocks],  # in order (the file sorts keys)
    }
    for wrt, g in ref.gradients.items():
        other = {b.name: float(g[b.slice].norm()) for b in ref.blocks}
        if other != norms:
            exact[f"grad_norm_{wrt}"] = other
    exact.update(ref.exact)
    if ref.columns:
        missing = [k for k in ref.columns if k not in ref.exact]
        if missing:
            raise ValueError(f"{kind.name}: Reference.columns names {missing}, not in its exact")
        exact["columns"] = [[k, label] for k, label in ref.columns.items()]
    return ref, exact


def _error_rows(blocks: list[Block], message: str) -> list[Row]:
    """An estimator that failed: one rel_bias row per block, NaN, with the message."""
    return [Row(b.name, "rel_bias", math.nan, method="", error=message) for b in blocks]


# Peak memory of one estimator's measurement, in float64 copies of its [S, P] draws: the draws,
# a draw-dtype copy or the chunks being concatenated, and the per-layer prefix sums of the
# grouped metrics (the layer blocks, then "all").
DRAW_COPIES = 4
# Rough CPU cost of one multiply-add of a draw's forward/backward pass and of one element of the
# bootstrap products; only for the time estimate printed before a run. Calibrated against the
# shipped cases' measured times (results.json "seconds") and rounded up so that the estimate is
# not below them on this kind of 2-core machine: an estimate, not a promise.
SECONDS_PER_MAC = 3e-10
SECONDS_PER_BOOT_ELEMENT = 4e-9
# Exact moments of a path estimator: one multiply-add of one enumerated path (from the seed study
# on a shipped network: about 3 s per estimator for 2^15 paths x 200 points x 65 multiply-adds).
SECONDS_PER_PATH_MAC = 1e-8
# One training step (a mini-batch), from the seed study's REINFORCE training (1.3 s / 20 epochs
# of 20 batches); an upper estimate for the exact method on small networks.
SECONDS_PER_TRAINING_STEP = 3e-3
DEFAULT_TIME_BUDGET = 24 * 3600.0  # seconds; override with ESTBENCH_TIME_BUDGET or the argument


def parse_duration(text: str | float) -> float:
    """'90s', '30m', '2h', '3d' or a plain number of seconds -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = str(text).strip().lower()
    scale = units.get(raw[-1:], 1) if raw else 1
    number = raw[:-1] if raw[-1:] in units else raw
    try:
        value = float(number) * scale
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"cannot read {text!r} as a duration (examples: 90s, 30m, 2h, 3d)")
    return value


def default_time_budget() -> float:
    env = os.environ.get("ESTBENCH_TIME_BUDGET")
    if not env:
        return DEFAULT_TIME_BUDGET
    try:
        return parse_duration(env)
    except ValueError as e:
        raise EstbenchError(f"ESTBENCH_TIME_BUDGET: {e}") from None


@dataclass(frozen=True)
class PointPlan:
    pid: str
    widths: tuple[int, ...]
    n_points: int
    n_params: int
    exact_bytes: int
    draw_bytes: int
    seconds: float
    reference: str = "exact"  # the point's reference: exact, or mc (measure.reference)


@dataclass(frozen=True)
class RunPlan:
    """What a run of a case will do, worked out before any work starts (``plan_run``)."""

    case: Case
    directory: Path
    variants: list[Variant]
    opts: MeasureOptions
    signature: dict[str, Any]
    points: list[dict[str, Any]]
    estimates: list[PointPlan]
    device: torch.device
    memory_budget: int
    notes: list[str] = field(default_factory=list)  # what the run leaves out, said up front
    reference: ReferenceSpec = ReferenceSpec()  # measure.reference (--quick: ReferenceSpec.quick)

    def reference_of(self, point: dict[str, Any]) -> str:
        """The reference a point is planned with: "exact" or "mc"."""
        pid = point_id(point)
        return next((e.reference for e in self.estimates if e.pid == pid), "exact")

    @property
    def peak_bytes(self) -> int:
        return max((max(e.exact_bytes, e.draw_bytes) for e in self.estimates), default=0)

    @property
    def seconds(self) -> float:
        return sum(e.seconds for e in self.estimates)

    def describe(self) -> str:
        n, v = len(self.points), len(self.variants)
        return (
            f"{self.case.name}: {n} point{'s' * (n != 1)} x {v} estimator"
            f"{'s' * (v != 1)} x {self.opts.draws:,} draws; estimated peak memory "
            f"{format_bytes(self.peak_bytes)} (budget {format_bytes(self.memory_budget)}), "
            f"time {_duration(self.seconds)} (rough)"
        )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"about {max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def case_directory(out: Path, case: Case, quick: bool) -> Path:
    """``out/<case>``; a ``--quick`` smoke run writes beside it, to ``out/<case>-quick``, so it
    never replaces (or is mistaken for) the full run's results."""
    return Path(out) / (f"{case.name}-quick" if quick else case.name)


def measure_options(case: Case, quick: bool, draw_dtype: torch.dtype) -> MeasureOptions:
    return MeasureOptions(
        draws=min(case.measure.quick_draws, case.measure.draws) if quick else case.measure.draws,
        M=case.measure.M,
        metrics=case.measure.metrics,
        exact_moments=case.measure.exact_moments,
        max_paths=case.measure.max_paths,
        bootstrap=min(case.measure.bootstrap, 50) if quick else case.measure.bootstrap,
        dtype=draw_dtype,
    )


def plan_run(
    case: Case,
    out: Path,
    *,
    seed: int = 0,
    quick: bool = False,
    extra_estimators: list[Estimator] | None = None,
    device: str | None = None,
    dtype: str | None = None,
    memory_budget: int | None = None,
    time_budget: float | None = None,
) -> RunPlan:
    """Validate and size a whole run before any work: the device and dtype, the estimators, and
    for every point of the sweep the memory of its exact reference and of its draws against the
    memory budget (a refusal names the point, the estimate and ``--memory-budget``), and the
    estimated time of the whole run against the time budget (seconds; ``--time-budget``)."""
    if seed < 0:
        raise EstbenchError(f"seed: expected an integer >= 0, got {seed}")
    dev, draw_dtype = run_settings(case, device=device, dtype=dtype)
    budget = default_memory_budget() if memory_budget is None else memory_budget
    variants = estimator_variants(case, extra_estimators)
    opts = measure_options(case, quick, draw_dtype)
    signature = {
        "format": POINT_FORMAT,
        "case_sha256": case.sha256,
        "seed": seed,
        "quick": quick,
        "estimators": [v.label for v in variants],
        "device": str(dev),
        "dtype": dtype_name(draw_dtype),
    }
    directory = case_directory(out, case, quick)
    runner = CaseRunner(case, directory, progress=lambda _: None)
    points = case.points() or [{}]
    ref_spec = case.measure.reference.quick() if quick else case.measure.reference
    if ref_spec.mode != "exact":
        _check_mc_variants(case, variants)
    estimates = [_plan_point(runner, point, variants, opts, budget, ref_spec) for point in points]
    first_mc = next((e for e in estimates if e.reference == "mc"), None)
    if first_mc is not None:  # the reference estimator (or candidates), checked before any work
        from .mcref import candidates

        model = runner.initial(points[[point_id(p) for p in points].index(first_mc.pid)])[0]
        candidates(ref_spec, case.model.kind, model, _where(case))
    plan = RunPlan(
        case,
        directory,
        variants,
        opts,
        signature,
        points,
        estimates,
        dev,
        budget,
        reference=ref_spec,
    )
    limit = default_time_budget() if time_budget is None else time_budget
    if plan.seconds > limit:
        slowest = max(estimates, key=lambda e: e.seconds)
        raise EstbenchError(
            f"{_where(case)}: the run is estimated at {_duration(plan.seconds)} (rough; the "
            f"slowest point, {slowest.pid}, {_duration(slowest.seconds)}), over the time budget "
            f"of {_duration(limit)}; shrink the case, or raise the budget with --time-budget "
            f"DURATION (or ESTBENCH_TIME_BUDGET), e.g. --time-budget 3d"
        )
    taus = case.sweep.get("tau")
    if taus and all(v.tau is None for v in variants):
        plan.notes.append(
            f"sweep.tau = {list(taus)} is dropped: none of the estimators "
            f"({', '.join(v.label for v in variants)}) has a tau parameter"
        )
    dropped = [M for M in opts.M if opts.draws // M < 2]
    if dropped:
        plan.notes.append(
            f"with {opts.draws} draws, rel_rmse_grouped and cos_* (which need 2 groups of M "
            f"draws) are left out for M = {', '.join(map(str, dropped))}; rel_rmse covers every M"
        )
    return plan


def _check_mc_variants(case: Case, variants: list[Variant]) -> None:
    """A Monte Carlo reference is a gradient in the kind's default parametrisation: an
    estimator of another one (``wrt``) cannot be measured against it."""
    for v in variants:
        wrt = getattr(v.estimator, "wrt", None)
        if wrt is not None and wrt != get_kind(case.model.kind).parametrisations[0]:
            raise EstbenchError(
                f"{_where(case)}: measure.reference: {v.label!r} estimates the gradient wrt "
                f"{wrt!r}, which a Monte Carlo reference does not give; expected measure."
                f'reference = "exact", or estimators of the default parametrisation'
            )


def _plan_point(
    runner: CaseRunner,
    point: dict[str, Any],
    variants: list[Variant],
    opts: MeasureOptions,
    budget: int,
    ref_spec: ReferenceSpec | None = None,
) -> PointPlan:
    pid = point_id(point)
    where = f"{_where(runner.case)}: point {pid}"
    advice = "raise the budget with --memory-budget SIZE (or ESTBENCH_MEMORY_BUDGET)"
    floor = _size_floor(runner, point)
    if ref_spec is not None and ref_spec.mode != "exact" and floor > budget:
        # an exact reference over the budget is what mc and auto are for: the floor of the
        # network's weights alone (8 bytes per width^2 per layer) decides
        width, depth = max(runner.case.widths_at(point)), len(runner.case.widths_at(point))
        floor = 8 * width * width * max(depth, 1)
    if floor > budget:  # before anything of that size is built
        raise MemoryBudgetError(
            f"{where}: its data, network and exact reference need at least "
            f"{format_bytes(floor)}, over the memory budget of {format_bytes(budget)} "
            f"({budget} bytes); shrink the case (data.n, model.width, model.depth, "
            f"model.outputs) or {advice}"
        )
    kind = runner.kind
    model, X, _, _ = runner.initial(point)
    n_points, n_params = int(X.shape[0]), int(sum(model.layer_sizes))
    mode = "exact" if ref_spec is None else ref_spec.mode
    reference_kind = "exact"
    if mode == "mc":
        exact, reference_kind = reference_bytes(n_params, budget), "mc"
    else:
        try:
            exact = kind.exact_bytes(model, n_points, budget)
            if mode == "auto":
                assert ref_spec is not None
                if kind.exact_seconds(model, n_points) > ref_spec.exact_max_seconds:
                    exact, reference_kind = reference_bytes(n_params, budget), "mc"
        except MemoryBudgetError as e:
            if mode != "auto":
                raise MemoryBudgetError(f"{where}: {e}") from None
            exact, reference_kind = reference_bytes(n_params, budget), "mc"
    if reference_kind == "mc" and exact > budget:  # its chunk fits the budget; not its vectors
        raise MemoryBudgetError(
            f"{where}: its Monte Carlo reference needs about {format_bytes(exact)}, over the "
            f"memory budget of {format_bytes(budget)} ({budget} bytes); {advice}"
        )
    draw_bytes = 8 * opts.draws * (DRAW_COPIES * n_params + opts.bootstrap)
    if draw_bytes > budget:
        raise MemoryBudgetError(
            f"{where}: {opts.draws:,} draws of {n_params} parameters need about "
            f"{format_bytes(draw_bytes)} ({draw_bytes} bytes) per estimator, over the memory "
            f"budget of {format_bytes(budget)} ({budget} bytes); use fewer measure.draws or "
            f"{advice}"
        )
    fan_in = (model.input_dim, *model.widths)
    macs = n_points * sum(
        a * b for a, b in zip(fan_in, (*model.widths, model.out_dim), strict=True)
    )
    evals = 0.0
    for v in variants:
        evals += max(v.estimator.evals_per_draw(model), 1.0)
    seconds = opts.draws * (
        SECONDS_PER_MAC * macs * evals
        + SECONDS_PER_BOOT_ELEMENT * len(variants) * opts.bootstrap * n_params
    )
    if opts.exact_moments:  # path estimators' moments, enumerated
        for v in variants:
            paths = kind.path_count(v.estimator, model)
            if paths is not None and paths <= opts.max_paths:
                seconds += SECONDS_PER_PATH_MAC * paths * macs
    if reference_kind == "exact":
        seconds += kind.exact_seconds(model, n_points)
    else:  # the time cap bounds it (a rough upper estimate)
        assert ref_spec is not None
        seconds += min(ref_spec.max_seconds, SECONDS_PER_MAC * macs * 4 * ref_spec.max_draws)
    training = runner.case.training
    if training is not None and "checkpoint" in point:
        steps = int(point["checkpoint"]) * math.ceil(n_points / training.batch_size)
        seconds += SECONDS_PER_TRAINING_STEP * steps
    return PointPlan(
        pid, model.widths, n_points, n_params, exact, draw_bytes, seconds, reference_kind
    )


def _size_floor(runner: CaseRunner, point: dict[str, Any]) -> int:
    """A lower bound, in bytes, on what a point of a synthetic-data case needs (its data and its
    kind's ``size_floor``), from the case's numbers alone, so that a huge size is refused before
    anything of that size is allocated. Checkpoints and npz data sets are bounded by their files
    (0 here)."""
    case = runner.case
    m, d = case.model, case.data
    if m.checkpoint is not None or d.kind == "npz":
        return 0
    if "depth" in point or "width" in point or m.widths is None:
        width = int(point.get("width", m.width or 0))
        depth = int(point.get("depth", m.depth or 0))
    else:
        width, depth = max(m.widths), len(m.widths)
    dim = d.dim if d.kind == "blobs" else 2
    classes = d.classes if d.kind == "blobs" else 2
    return 8 * d.n * dim + runner.kind.size_floor(m, width, depth, d.n, dim, classes)


RUN_FILE = "run.json"
WRITTEN = ("results.csv", "results.json", "report.md", "report.html", RUN_FILE)


def check_output(directory: Path) -> None:
    """Fail before any work if results could not be written: ``--out`` or the case directory is
    not a directory, or a file the run writes is in the way (e.g. a directory)."""
    for parent in (directory.parent, directory):
        if parent.exists() and not parent.is_dir():
            raise EstbenchError(f"{parent}: exists and is not a directory; expected a directory")
    for sub in ("points", "checkpoints", "figures"):
        if (directory / sub).exists() and not (directory / sub).is_dir():
            raise EstbenchError(
                f"{directory / sub}: exists and is not a directory; remove it or use another --out"
            )
    for name in WRITTEN:
        f = directory / name
        if f.exists() and not f.is_file():
            raise EstbenchError(
                f"{f}: exists and is not a regular file; remove it or use another --out"
            )


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    labels = {
        "case_sha256": "the case file changed",
        "seed": "seed {old} -> {new}",
        "estimators": "estimators {old} -> {new}",
        "device": "device {old} -> {new}",
        "dtype": "dtype {old} -> {new}",
        "format": "written by another estbench version, or before run.json was kept",
        "quick": "quick {old} -> {new}",
    }
    if old.get("format") != new.get("format"):  # nothing else can be compared
        return labels["format"]
    diffs = [
        labels.get(k, k + " {old} -> {new}").format(old=old.get(k), new=new.get(k))
        for k in new
        if old.get(k) != new.get(k)
    ]
    return "; ".join(diffs) or "unknown differences"


def _claim_directory(directory: Path, signature: dict[str, Any], force: bool) -> None:
    """Make ``directory`` this run's (under the lock): a directory holding another run's
    finished results is refused unless ``force``, which removes them first."""
    found: dict[str, Any] | None = None
    run_file = directory / RUN_FILE
    if run_file.exists():
        try:
            found = json.loads(run_file.read_text()).get("signature")
        except (OSError, ValueError, AttributeError):
            found = {"format": None}
    else:  # a directory from before run.json: its points and results are another run's
        points = (
            sorted((directory / "points").glob("*.json")) if (directory / "points").is_dir() else []
        )
        if points or (directory / "results.json").exists():
            found = {"format": None}
    if found is not None and found != signature:
        if not force:
            raise EstbenchError(
                f"{directory}: holds the results of another run ({_differences(found, signature)})"
                f"; nothing was changed. Rerun with --force to replace them, or use another --out"
            )
        for sub in ("points", "checkpoints"):
            shutil.rmtree(directory / sub, ignore_errors=True)
        for name in ("results.csv", "results.json"):
            (directory / name).unlink(missing_ok=True)
    elif force:  # same settings: recompute the points (training snapshots are reused)
        shutil.rmtree(directory / "points", ignore_errors=True)
    if found != signature:
        atomic_write(run_file, json.dumps({"signature": signature}, sort_keys=True) + "\n")


def run_case(
    case: Case,
    out: Path,
    *,
    seed: int = 0,
    quick: bool = False,
    force: bool = False,
    extra_estimators: list[Estimator] | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    device: str | None = None,
    dtype: str | None = None,
    memory_budget: int | None = None,
    time_budget: float | None = None,
    client: Any = None,
) -> RunReport:
    """Run every point of ``case`` into ``out/<case.name>/`` (``out/<case.name>-quick/`` with
    ``quick``; see the module docstring).

    ``device`` (cpu | cuda) and ``dtype`` (of the draws: float64 | float32) override the case's
    ``measure.device`` and ``measure.dtype``; ``memory_budget`` (bytes) the default budget.
    ``force`` replaces the results of a run with other settings and recomputes finished points.
    ``client``: a ``distributed.Client`` whose cluster runs the points (``estbench.cluster``).
    """
    plan = plan_run(
        case,
        out,
        seed=seed,
        quick=quick,
        extra_estimators=extra_estimators,
        device=device,
        dtype=dtype,
        memory_budget=memory_budget,
        time_budget=time_budget,
    )
    return execute(plan, force=force, progress=progress, log=log, client=client)


def execute(
    plan: RunPlan,
    *,
    force: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    client: Any = None,
) -> RunReport:
    """Carry out a plan of ``plan_run`` (``run_case`` is the two together; the CLI plans every
    case of a command first, then executes the plans): under the directory's lock, claim the
    directory for this run (``force``: see ``run_case``) and run the points not finished, here
    or, given a Dask ``client``, on its cluster (``estbench.cluster``)."""
    say = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    check_output(plan.directory)
    with case_lock(plan.directory):
        remove_stale_temporaries(plan.directory)
        _claim_directory(plan.directory, plan.signature, force)
        return _run(plan, say, progress, client)


def _run(
    plan: RunPlan, say: Callable[[str], None], progress: bool | None, client: Any = None
) -> RunReport:
    """Every point of the plan not finished by an earlier run with the same signature (resume),
    then results.csv and results.json from the point files."""
    case, directory, variants = plan.case, plan.directory, plan.variants
    (directory / "points").mkdir(parents=True, exist_ok=True)
    report = RunReport(case.name, directory)
    for note in plan.notes:
        say(f"estbench: note: {case.name}: {note}")
    runner = CaseRunner(case, directory, progress=say, show_progress=progress)
    # disable=None: tqdm turns itself off when stderr is not a terminal
    bar = tqdm(
        total=len(plan.points) * len(variants),
        desc=case.name,
        unit="est",
        disable=None if progress is None else not progress,
        file=sys.stderr,
    )
    pending = []
    for point in plan.points:
        done = _finished(directory / "points" / f"{point_id(point)}.json", plan.signature)
        if done is not None:
            report.points_skipped += 1
            _collect_flags(report, done)
            bar.update(len(variants))
        else:
            pending.append(point)
    if client is not None:
        from .cluster import run_on_client

        run_on_client(client, plan, pending, report, say, lambda: bar.update(1))
    for point in pending if client is None else ():
        meta = _run_point(plan, runner, point, report, say, lambda: bar.update(1))
        write_point(plan, point, meta, report)
    bar.close()
    for flag in report.flags:
        say(f"estbench: WARNING: {flag}")
    workers = None if client is None else len(client.scheduler_info().get("workers", {}))
    _assemble(plan, workers)
    return report


def write_point(
    plan: RunPlan, point: dict[str, Any], meta: dict[str, Any], report: RunReport
) -> None:
    """A finished point's file, written atomically: a later run with the same signature skips
    the point."""
    path = plan.directory / "points" / f"{point_id(point)}.json"
    atomic_write(path, json.dumps(meta, sort_keys=True, default=_json_default) + "\n")
    report.points_done += 1
    _collect_flags(report, meta)


def _finished(path: Path, signature: dict[str, Any]) -> dict[str, Any] | None:
    """The point file of an earlier run with this signature, or None (not there, unreadable
    -- e.g. cut short by a crash before its atomic rename -- or another run's)."""
    if not path.exists():
        return None
    try:
        done = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return done if isinstance(done, dict) and done.get("signature") == signature else None


@dataclass
class Prepared:
    """A point's problem (float64, on the run's device) and its exact reference, shared by the
    point's estimator cells (``prepare_point``)."""

    problem: Any
    ref: Reference
    exact: dict[str, Any]  # results.json's ``exact`` section of the point
    seconds: float
    mc: McReference | None = None  # a Monte Carlo reference (``ref`` holds its mean)
    reference: dict[str, Any] | None = None  # results.json's ``reference`` entry (not exact)


@dataclass
class Cell:
    """One estimator variant at one point (``measure_cell``): its rows of results.csv and its
    entry of the point file (``info["error"]`` when it failed)."""

    label: str
    rows: list[dict[str, Any]]
    info: dict[str, Any]
    seconds: float


def prepare_point(
    kind: str,
    net: Any,
    X: torch.Tensor,
    Y: torch.Tensor,
    plan: RunPlan,
    point: dict[str, Any] | None = None,
    mapper: Any = None,
) -> Prepared:
    """The problem of a point's (trained) network and its reference -- exact, or Monte Carlo
    where the plan says so (``mc_reference``; ``mapper`` draws its shards, see
    ``estbench.mcref.compute``) -- computed once and shared by the point's estimators. The
    reference is float64 on the run's device (the network was built on the CPU)."""
    t0 = time.perf_counter()
    point = {} if point is None else point
    problem = get_kind(kind).problem(net, X, Y).to(dtype=torch.float64, device=plan.device)
    if plan.reference_of(point) == "mc":
        ref, exact, mc = mc_reference(problem, plan, point, mapper)
        return Prepared(problem, ref, exact, time.perf_counter() - t0, mc, mc.record())
    ref, exact = reference(problem, plan.memory_budget)
    record = None if plan.reference.mode == "exact" else {"kind": "exact"}
    return Prepared(problem, ref, exact, time.perf_counter() - t0, None, record)


def mc_reference(
    problem: Any, plan: RunPlan, point: dict[str, Any], mapper: Any = None
) -> tuple[Reference, dict[str, Any], McReference]:
    """A point's Monte Carlo reference (``estbench.mcref.compute``) from the streams (root
    seed, case, point, tag, estimator), as a ``Reference`` (its mean in the default
    parametrisation; the loss unknown: NaN) with the ``exact`` section of results.json (loss
    null, the norms of the mean) and the reference itself."""
    from .mcref import compute, serial_map

    kind = kind_of(problem.model)
    seed, pid = plan.signature["seed"], point_id(point)
    mc, blocks = compute(
        problem,
        plan.reference,
        lambda g: kind.blocks(problem, g),
        lambda tag, spec: stream_seed(seed, plan.case.name, pid, tag, spec),
        plan.memory_budget,
        f"{_where(plan.case)}: point {pid}",
        serial_map if mapper is None else mapper,
    )
    ref = Reference(math.nan, {kind.parametrisations[0]: mc.mean}, blocks, {})
    exact: dict[str, Any] = {
        "loss": None,
        "grad_norm": {b.name: float(mc.mean[b.slice].norm()) for b in blocks},
        "widths": list(problem.model.widths),
        "n_points": problem.n_points,
        "kind": kind.name,
        "blocks": [[b.name, b.label] for b in blocks],
    }
    return ref, exact, mc


def measure_cell(plan: RunPlan, point: dict[str, Any], prepared: Prepared, index: int) -> Cell:
    """Estimator variant ``index`` of the plan at one point. Its draws come from its own stream
    (root seed, case, point, estimator), so a cell gives the same numbers whenever and wherever
    it runs; an estimator that fails is recorded (error rows and message), never fatal."""
    t0 = time.perf_counter()
    variant = plan.variants[index]
    rows, info = _measure_variant(plan, point, prepared.problem, prepared.ref, variant, prepared.mc)
    return _cell(plan, point, index, rows, info, time.perf_counter() - t0)


def error_cell(
    plan: RunPlan, point: dict[str, Any], prepared: Prepared, index: int, message: str
) -> Cell:
    """A cell that could not be measured (its worker died): error rows with ``message``."""
    info = {"tau": plan.variants[index].tau, "error": message}
    return _cell(plan, point, index, _error_rows(prepared.ref.blocks, message), info, 0.0)


def _cell(
    plan: RunPlan,
    point: dict[str, Any],
    index: int,
    rows: list[Row],
    info: dict[str, Any],
    seconds: float,
) -> Cell:
    variant = plan.variants[index]
    extra = {"case": plan.case.name, "estimator": variant.label, "tau": variant.tau}
    return Cell(variant.label, [{**r.as_dict(), **extra, **point} for r in rows], info, seconds)


def point_meta(
    plan: RunPlan, point: dict[str, Any], prepared: Prepared, cells: list[Cell], seconds: float
) -> dict[str, Any]:
    """The point file's content: the point, the run's signature, the exact section, every
    estimator's entry and rows, in the plan's order of estimators."""
    meta = {
        "point": point,
        "signature": plan.signature,
        "estimators": {c.label: c.info for c in cells},
        "exact": prepared.exact,
        "seconds": seconds,
        "rows": [r for c in cells for r in c.rows],
    }
    if prepared.reference is not None:  # measure.reference is mc or auto
        meta["reference"] = prepared.reference
    return meta


def note_cell(report: RunReport, say: Callable[[str], None], pid: str, cell: Cell) -> None:
    """Say and record an estimator's failure."""
    if "error" in cell.info:
        message = f"{report.case} {pid} {cell.label}: {cell.info['error']}"
        report.errors.append(message)
        say(f"estbench: error: {message}")


def _run_point(
    plan: RunPlan,
    runner: CaseRunner,
    point: dict[str, Any],
    report: RunReport,
    say: Callable[[str], None],
    tick: Callable[[], None],
) -> dict[str, Any]:
    """One point: its problem and exact reference (computed once, shared by the estimators),
    then every estimator variant; returns the point file's content (rows included)."""
    t0 = time.perf_counter()
    prepared = prepare_point(runner.kind.name, *runner.network(point), plan, point)
    cells = []
    for index in range(len(plan.variants)):
        cells.append(measure_cell(plan, point, prepared, index))
        note_cell(report, say, point_id(point), cells[-1])
        tick()
    return point_meta(plan, point, prepared, cells, time.perf_counter() - t0)


def _measure_variant(
    plan: RunPlan,
    point: dict[str, Any],
    problem: Any,
    ref: Reference,
    variant: Variant,
    mc: McReference | None = None,
) -> tuple[list[Row], dict[str, Any]]:
    case, pid = plan.case, point_id(point)
    seed = plan.signature["seed"]
    gen = make_generator(plan.device, stream_seed(seed, case.name, pid, variant.label))
    wrt = getattr(variant.estimator, "wrt", None)
    info: dict[str, Any] = {"tau": variant.tau}
    if wrt is not None:
        info["wrt"] = wrt
    try:
        m = measure(
            variant.estimator,
            problem,
            ref.gradient(wrt),
            plan.opts,
            generator=gen,
            blocks=ref.blocks,
            mc=mc,
        )
    except Exception as e:  # an estimator's failure is recorded, not fatal
        info["error"] = f"{type(e).__name__}: {e}"
        return _error_rows(ref.blocks, info["error"]), info
    info.update(
        seconds_per_draw=m.seconds_per_draw,
        exact=m.exact,
        claimed_unbiased=m.claimed,
        verdicts=m.verdicts,
        evals_per_draw=variant.estimator.evals_per_draw(problem.model),
        unbiased=variant.estimator.claim(problem.model),
    )
    if variant.estimator.variance_claims:
        info["variance_claims"] = [
            [c[0], c[1], list(c[2]) if len(c) > 2 else []]
            for c in variant.estimator.variance_claims
        ]
    if mc is not None:
        info["detectable_rel_bias"] = m.detectable
    return m.rows, info


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__}")


def _collect_flags(report: RunReport, meta: dict[str, Any]) -> None:
    pid = point_id(meta.get("point", {}))
    for label, info in meta.get("estimators", {}).items():
        if "error" in info and not any(label in e for e in report.errors):
            report.errors.append(f"{report.case} {pid} {label}: {info['error']}")
        for layer in info.get("claimed_unbiased", []):
            if not info.get("verdicts", {}).get(layer, True):
                report.flags.append(
                    f"{report.case} {pid}: {label} claims to be unbiased in {layer}, but the "
                    f"unbiasedness test rejects it there"
                )


def _assemble(plan: RunPlan, workers: int | None = None) -> None:
    """results.csv and results.json from the point files, committed as one unit; ``workers``:
    the number of Dask workers that ran the points (None: this process)."""
    case, directory, signature = plan.case, plan.directory, plan.signature
    rows: list[dict[str, Any]] = []
    per_point = []
    for point in plan.points:
        path = directory / "points" / f"{point_id(point)}.json"
        meta = json.loads(path.read_text())
        rows += meta.pop("rows")
        per_point.append(meta)
    commit_results(
        directory,
        rows_to_csv(rows),
        {
            "case": case.record(),
            "run": {
                "seed": signature["seed"],
                "quick": signature["quick"],
                "device": signature["device"],
                "device_name": device_name(torch.device(signature["device"])),
                "dtype": signature["dtype"],
                "exact_dtype": "float64",
                "estimators": signature["estimators"],
                **({} if workers is None else {"dask_workers": workers}),
            },
            "signature": signature,
            "environment": environment(),
            "points": per_point,
        },
    )
