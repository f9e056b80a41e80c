"""Estimators compared by training outcome: a case's ``[compare]`` table (``cases.CompareSpec``).

For every (estimator, seed) the case's model is trained from the seed's initialisation with that
estimator's gradient ("exact": the exact gradient of the minibatch objective), and at step 0,
every ``record_every`` steps and at the last step the *exact* objective of the whole training
set is recorded (the kind's ``reference``: its loss and its exact scalars, ``Reference.columns``,
e.g. the VAE's ELBO and log p(x)), with the training wall time so far (the exact evaluations
excluded) and the loss evaluations so far. Every kind works: training goes through
``ProblemKind.parameters``/``with_parameters`` and the optimisers of ``estbench.training``.

Seeds and randomness. Seed s initialises the network with ``model.seed + s`` (the offset a
``[sweep]`` seed would add) on the case's data as they are at offset 0 (the data are the same
for every seed: a comparison of training, not of data sets); with ``model.checkpoint`` every
seed starts from the stored network. Two explicit generators per run, both from
``runner.stream_seed``: the minibatch order from (root seed, case, seed), shared by all
estimators of a seed (common random numbers for the data order), and the estimator's noise from
(root seed, case, seed, estimator). So a run depends on nothing but its own name and the case:
resuming, reordering or running one run alone gives the same numbers.

Files (``estbench.compare_results``): each finished run is written atomically to
``DIR/<case>/runs/<estimator>_seed<s>.json`` (its rows, timings and error, with the run's
signature); an interrupted run loses at most the run in progress, and the same command resumes.
``training.csv`` and ``training.json`` are assembled from the run files at the end and committed
as one unit. ``compare-run.json`` records the settings (case hash, root seed, estimators,
seeds, steps): a directory holding another comparison is refused unless ``force``.

Before any work the comparison is sized (``plan_compare``): the exact reference's memory on the
whole data set against the memory budget, and the time -- (runs x records) exact evaluations at
the kind's ``exact_seconds``, plus the training steps -- against the time budget; either refusal
names the case file and the ``compare`` keys to change.

Training runs on the CPU, in float64, in this process (a Dask client is not used: a run is a few
seconds to minutes of sequential steps, and the runs of a case are few).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .cases import EXACT_METHOD, Case, CaseError, TrainingSpec, check_problem_kind
from .compare_results import (
    OBJECTIVE,
    TRAINING_CSV,
    TRAINING_JSON,
    commit_training,
    rows_to_csv,
)
from .errors import EstbenchError, MemoryBudgetError
from .estimators.registry import default_registry
from .lock import case_lock
from .options import default_memory_budget, format_bytes
from .problem import ProblemKind, get_kind
from .results import atomic_write, environment, remove_stale_temporaries
from .runner import (
    SECONDS_PER_MAC,
    SECONDS_PER_TRAINING_STEP,
    CaseRunner,
    _differences,
    _duration,
    _labels_data,
    case_directory,
    default_time_budget,
    stream_seed,
)
from .training import _SGD, _Adam, _gradient_fn

FORMAT = 1
RUNS_DIR = "runs"
RUN_FILE = "compare-run.json"
RECORDS = 20  # records per run when compare.record_every is not given
QUICK_RECORDS = 10  # at most about this many records per run with --quick
OBJECTIVE_LABEL = "exact objective"


@dataclass(frozen=True)
class TrainRun:
    """One training run of a comparison: an estimator (its label) and a seed."""

    estimator: str
    seed: int

    @property
    def file(self) -> str:
        """``<estimator>_seed<s>.json``: the label with unsafe characters replaced, and a
        checksum of the label when any were (``rloo(k=2)`` and ``rloo_k=2_`` stay apart)."""
        safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", self.estimator).strip("_")
        if safe != self.estimator:
            safe += f"-{zlib.crc32(self.estimator.encode()):08x}"
        return f"{safe}_seed{self.seed}.json"


@dataclass(frozen=True)
class ComparePlan:
    """A comparison worked out before any work (``plan_compare``)."""

    case: Case
    directory: Path
    labels: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    record_every: int
    batch_size: int
    n_points: int
    root_seed: int
    quick: bool
    memory_budget: int
    signature: dict[str, Any]
    seconds: float
    exact_bytes: int

    @property
    def runs(self) -> list[TrainRun]:
        return [TrainRun(e, s) for e in self.labels for s in self.seeds]

    @property
    def record_steps(self) -> list[int]:
        """0, every ``record_every`` steps, and the last step."""
        return sorted({0, self.steps, *range(0, self.steps + 1, self.record_every)})

    def describe(self) -> str:
        spec = self.case.compare
        assert spec is not None
        e, s = len(self.labels), len(self.seeds)
        return (
            f"{self.case.name}: training comparison of {e} estimator{'s' * (e != 1)} x {s} "
            f"seed{'s' * (s != 1)} x {self.steps:,} steps ({spec.optimizer}, lr {spec.lr:g}, "
            f"batches of {self.batch_size} of {self.n_points} points), exact objective at "
            f"{len(self.record_steps)} steps per run; exact reference memory "
            f"{format_bytes(self.exact_bytes)} (budget {format_bytes(self.memory_budget)}), "
            f"time {_duration(self.seconds)} (rough)"
        )


@dataclass
class CompareReport:
    case: str
    directory: Path
    runs_done: int = 0
    runs_skipped: int = 0
    errors: list[str] = field(default_factory=list)


def _where(case: Case) -> str:
    return str(case.path) if case.path else f"<case {case.name}>"


def initial(case: Case, seed: int) -> tuple[ProblemKind[Any, Any], Any, torch.Tensor, torch.Tensor]:
    """The kind, the network a run of ``seed`` starts from, and the data (module docstring)."""
    kind = get_kind(case.model.kind)
    m = case.model
    if m.checkpoint is not None:  # the stored network (and its data), the same for every seed
        net, X, Y, _ = CaseRunner(case, Path(), progress=lambda _: None).initial({})
        return kind, net, X, Y
    own = kind.case_data(m, 0)
    X, labels = own if own is not None else _labels_data(case, 0)
    stored = case.data.kind == "npz"
    net, Y = kind.initial(m, case.widths_at({}), X, labels, stored=stored, offset=seed)
    if stored:
        kind.check_data(case.data.path or _where(case), net, X, Y)
    return kind, net, X, Y


def _labels(case: Case, names: tuple[str, ...]) -> tuple[str, ...]:
    """Canonical labels ("exact" or the estimator's spec), each of the case's kind, each once."""
    registry = default_registry()
    out: list[str] = []
    for name in names:
        label = name
        if name != EXACT_METHOD:
            est = registry.create(name)
            check_problem_kind(f"{_where(case)}: compare.estimators", est, case.model)
            label = est.spec
        if label in out:
            raise EstbenchError(
                f"{_where(case)}: compare.estimators: {name!r} is listed twice; expected each "
                f"estimator once"
            )
        out.append(label)
    return tuple(out)


def _step_seconds(kind: ProblemKind[Any, Any], net: Any, label: str, batch: int) -> float:
    """A rough time of one training step: the exact gradient of a minibatch, or one draw."""
    if label == EXACT_METHOD:
        return SECONDS_PER_TRAINING_STEP + kind.exact_seconds(net, batch)
    evals = max(default_registry().create(label).evals_per_draw(net), 1.0)
    return SECONDS_PER_TRAINING_STEP + SECONDS_PER_MAC * batch * sum(net.layer_sizes) * evals


def plan_compare(
    case: Case,
    out: Path,
    *,
    seed: int = 0,
    quick: bool = False,
    estimators: tuple[str, ...] | None = None,
    memory_budget: int | None = None,
    time_budget: float | None = None,
) -> ComparePlan:
    """Validate and size a comparison before any work (module docstring). ``estimators``
    replaces ``compare.estimators`` (the CLI's --estimators); ``quick`` trains
    ``compare.quick_steps`` steps, recorded as often as the full run in proportion, but at most
    about ``QUICK_RECORDS`` times."""
    spec = case.compare
    where = _where(case)
    if spec is None:
        raise EstbenchError(f"{where}: compare: the case has no [compare] table")
    if seed < 0:
        raise EstbenchError(f"seed: expected an integer >= 0, got {seed}")
    labels = _labels(case, estimators or spec.estimators)
    budget = default_memory_budget() if memory_budget is None else memory_budget
    kind, net, X, _ = initial(case, spec.seeds[0])
    n = int(X.shape[0])
    batch = spec.batch_size or n
    if batch > n:
        raise CaseError(
            f"{where}: compare.batch_size: expected at most the {n} data points, got {batch}"
        )
    full = spec.steps if spec.steps is not None else spec.epochs * math.ceil(n / batch)  # type: ignore[operator]
    every = spec.record_every or max(1, full // RECORDS)
    steps = full
    if quick:
        steps = min(spec.quick_steps, full)
        every = max(1, every * steps // full, steps // QUICK_RECORDS)
    try:
        exact_bytes = kind.exact_bytes(net, n, budget)
    except MemoryBudgetError as e:
        raise MemoryBudgetError(
            f"{where}: compare: the exact objective of the {n} data points, recorded along the "
            f"way: {e}"
        ) from None
    signature = {
        "format": FORMAT,
        "case_sha256": case.sha256,
        "seed": seed,
        "quick": quick,
        "estimators": list(labels),
        "seeds": list(spec.seeds),
        "steps": steps,
        "record_every": every,
    }
    plan = ComparePlan(
        case=case,
        directory=case_directory(out, case, quick),
        labels=labels,
        seeds=spec.seeds,
        steps=steps,
        record_every=every,
        batch_size=batch,
        n_points=n,
        root_seed=seed,
        quick=quick,
        memory_budget=budget,
        signature=signature,
        seconds=0.0,
        exact_bytes=exact_bytes,
    )
    records = len(plan.record_steps) * len(plan.runs)
    exact = records * kind.exact_seconds(net, n)
    train = len(spec.seeds) * steps * sum(_step_seconds(kind, net, e, batch) for e in labels)
    plan = _with_seconds(plan, exact + train)
    limit = default_time_budget() if time_budget is None else time_budget
    if plan.seconds > limit:
        raise EstbenchError(
            f"{where}: compare: the comparison is estimated at {_duration(plan.seconds)} (rough: "
            f"{records} exact evaluations of {n} points, {_duration(exact)}, and "
            f"{len(plan.runs) * steps:,} training steps, {_duration(train)}), over the time "
            f"budget of {_duration(limit)}; lower compare.seeds, compare.steps or "
            f"compare.estimators, raise compare.record_every, or raise the budget with "
            f"--time-budget DURATION (or ESTBENCH_TIME_BUDGET)"
        )
    return plan


def _with_seconds(plan: ComparePlan, seconds: float) -> ComparePlan:
    from dataclasses import replace

    return replace(plan, seconds=seconds)


def train_run(
    plan: ComparePlan, run: TrainRun, *, tick: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Train one (estimator, seed) run and return its run file's content: the rows of
    training.csv, the kind's column labels, the timings and the error, if any (an estimator
    that raises, or an objective that is no longer finite, ends the run with the rows so far;
    the comparison goes on)."""
    case, spec = plan.case, plan.case.compare
    assert spec is not None
    kind, net, X, Y = initial(case, run.seed)
    thetas, biases = kind.parameters(net)
    params = [p.detach().clone() for pair in zip(thetas, biases, strict=True) for p in pair]
    net = kind.with_parameters(net, tuple(params[0::2]), tuple(params[1::2]))  # updated in place
    sizes = [p.numel() for p in params]
    opt = (
        _SGD(params, spec.lr, spec.momentum) if spec.optimizer == "sgd" else _Adam(params, spec.lr)
    )
    grad = _gradient_fn(TrainingSpec(method=run.estimator), kind, net)
    per_point = (
        None
        if run.estimator == EXACT_METHOD
        else default_registry().create(run.estimator).evals_per_draw(net)
    )
    order_gen = torch.Generator().manual_seed(
        stream_seed(plan.root_seed, case.name, "order", run.seed)
    )
    noise_gen = torch.Generator().manual_seed(
        stream_seed(plan.root_seed, case.name, "noise", run.seed, run.estimator)
    )
    n, batch = plan.n_points, plan.batch_size
    wanted = set(plan.record_steps)
    rows: list[dict[str, Any]] = []
    columns: dict[str, str] = {}
    state = {"wall": 0.0, "exact": 0.0, "seen": 0, "evals": 0.0}

    def record(step: int) -> bool:
        """The exact objective at ``step``; False when it is not finite (the run stops)."""
        t0 = time.perf_counter()
        problem = kind.problem(net, X, Y).to(dtype=torch.float64)
        ref = kind.reference(problem, plan.memory_budget)
        columns.update(ref.columns)
        values = [(OBJECTIVE, float(ref.loss))]
        values += [(k, float(ref.exact[k])) for k in ref.columns]
        for quantity, value in values:
            rows.append(
                {
                    "case": case.name,
                    "estimator": run.estimator,
                    "seed": run.seed,
                    "step": step,
                    "epoch": state["seen"] / n,
                    "evaluations": None if per_point is None else state["evals"],
                    "quantity": quantity,
                    "value": value,
                    "wall_seconds": state["wall"],
                }
            )
        state["exact"] += time.perf_counter() - t0
        return math.isfinite(values[0][1])

    error = None
    try:
        # One untimed gradient from a throwaway generator, the parameters untouched: one-time
        # costs (lazy imports, first calls) must not fall on the first run's wall time.
        grad(kind.problem(net, X[:batch], Y[:batch]), torch.Generator().manual_seed(0))
        if not record(0):
            error = "the exact objective of the initial network is not finite"
        order = torch.empty(0, dtype=torch.long)
        pos = n
        for step in range(1, plan.steps + 1 if error is None else 1):
            t0 = time.perf_counter()
            if pos >= n:  # a new epoch: a new order of the data
                order, pos = torch.randperm(n, generator=order_gen), 0
            idx = order[pos : pos + batch]
            pos += batch
            flat = grad(kind.problem(net, X[idx], Y[idx]), noise_gen)
            grads = [g.view(p.shape) for g, p in zip(torch.split(flat, sizes), params, strict=True)]
            opt.step(grads)
            state["wall"] += time.perf_counter() - t0
            state["seen"] += len(idx)
            state["evals"] += 0.0 if per_point is None else per_point * len(idx)
            if step in wanted and not record(step):
                error = f"the exact objective is not finite at step {step} (training diverged)"
                break
            if tick is not None:
                tick()
    except Exception as e:  # an estimator's failure is recorded, not fatal
        error = f"{type(e).__name__}: {e}"
    return {
        "signature": plan.signature,
        "estimator": run.estimator,
        "seed": run.seed,
        "rows": rows,
        "columns": [[OBJECTIVE, OBJECTIVE_LABEL], *([k, v] for k, v in columns.items())],
        "error": error,
        "train_seconds": state["wall"],
        "exact_seconds": state["exact"],
        "records": len(rows) // max(1, len(columns) + 1),
    }


def _finished(path: Path, plan: ComparePlan, run: TrainRun) -> dict[str, Any] | None:
    """A run file of this comparison and run, or None (absent, unreadable, another run's)."""
    if not path.exists():
        return None
    try:
        done = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    ok = (
        isinstance(done, dict)
        and done.get("signature") == plan.signature
        and done.get("estimator") == run.estimator
        and done.get("seed") == run.seed
    )
    return done if ok else None


def check_compare_output(directory: Path) -> None:
    """Fail before any work if the comparison's files could not be written."""
    for parent in (directory.parent, directory):
        if parent.exists() and not parent.is_dir():
            raise EstbenchError(f"{parent}: exists and is not a directory; expected a directory")
    if (directory / RUNS_DIR).exists() and not (directory / RUNS_DIR).is_dir():
        raise EstbenchError(
            f"{directory / RUNS_DIR}: exists and is not a directory; remove it or use another --out"
        )
    for name in (TRAINING_CSV, TRAINING_JSON, RUN_FILE):
        f = directory / name
        if f.exists() and not f.is_file():
            raise EstbenchError(
                f"{f}: exists and is not a regular file; remove it or use another --out"
            )


def _claim(plan: ComparePlan, force: bool) -> None:
    """Make the directory this comparison's (under the lock; ``runner._claim_directory`` for
    the comparison's files): another comparison's runs are refused unless ``force``."""
    directory = plan.directory
    run_file = directory / RUN_FILE
    found: dict[str, Any] | None = None
    if run_file.exists():
        try:
            found = json.loads(run_file.read_text()).get("signature")
        except (OSError, ValueError, AttributeError):
            found = {"format": None}
    elif any((directory / RUNS_DIR).glob("*.json")) or (directory / TRAINING_JSON).exists():
        found = {"format": None}
    if found is not None and found != plan.signature:
        if not force:
            raise EstbenchError(
                f"{directory}: holds the training comparison of another run "
                f"({_differences(found, plan.signature)}); nothing was changed. Rerun with "
                f"--force to replace it, or use another --out"
            )
        shutil.rmtree(directory / RUNS_DIR, ignore_errors=True)
        for name in (TRAINING_CSV, TRAINING_JSON):
            (directory / name).unlink(missing_ok=True)
    elif force:  # the same settings: train every run again
        shutil.rmtree(directory / RUNS_DIR, ignore_errors=True)
    if found != plan.signature:
        atomic_write(run_file, json.dumps({"signature": plan.signature}, sort_keys=True) + "\n")


def execute_compare(
    plan: ComparePlan,
    *,
    force: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> CompareReport:
    """Carry out a plan: under the directory's lock, train the runs not finished by an earlier
    run of the same comparison, each written as soon as it is done, then commit training.csv
    and training.json (module docstring)."""
    say = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    directory = plan.directory
    check_compare_output(directory)
    report = CompareReport(plan.case.name, directory)
    with case_lock(directory):
        remove_stale_temporaries(directory)
        _claim(plan, force)
        (directory / RUNS_DIR).mkdir(parents=True, exist_ok=True)
        pending = []
        for run in plan.runs:
            done = _finished(directory / RUNS_DIR / run.file, plan, run)
            if done is None:
                pending.append(run)
            else:
                report.runs_skipped += 1
                _note_error(report, done, say=None)
        bar = tqdm(
            total=len(pending) * plan.steps,
            desc=f"{plan.case.name} training",
            unit="step",
            disable=None if progress is None else not progress,
            file=sys.stderr,
        )
        for run in pending:
            bar.set_postfix_str(f"{run.estimator} seed {run.seed}", refresh=False)
            meta = train_run(plan, run, tick=lambda: bar.update(1))
            atomic_write(directory / RUNS_DIR / run.file, json.dumps(meta, sort_keys=True) + "\n")
            report.runs_done += 1
            _note_error(report, meta, say=say)
        bar.close()
        _assemble(plan)
    return report


def _note_error(
    report: CompareReport, meta: dict[str, Any], say: Callable[[str], None] | None
) -> None:
    if meta.get("error"):
        message = f"{report.case} {meta['estimator']} seed {meta['seed']}: {meta['error']}"
        report.errors.append(message)
        if say is not None:
            say(f"estbench: error: {message}")


def _assemble(plan: ComparePlan) -> None:
    """training.csv and training.json from the run files, in the plan's order."""
    case, spec = plan.case, plan.case.compare
    assert spec is not None
    rows: list[dict[str, Any]] = []
    runs = []
    columns: dict[str, str] = {}
    for run in plan.runs:
        meta = json.loads((plan.directory / RUNS_DIR / run.file).read_text())
        rows += meta.pop("rows")
        columns.update({k: v for k, v in meta.pop("columns")})
        meta.pop("signature")
        runs.append(meta)
    commit_training(
        plan.directory,
        rows_to_csv(rows),
        {
            "case": case.record(),
            "run": {
                "seed": plan.root_seed,
                "quick": plan.quick,
                "kind": case.model.kind,
                "estimators": list(plan.labels),
                "seeds": list(plan.seeds),
                "steps": plan.steps,
                "record_every": plan.record_every,
                "record_steps": plan.record_steps,
                "batch_size": plan.batch_size,
                "n_points": plan.n_points,
                "optimizer": spec.optimizer,
                "lr": spec.lr,
                **({"momentum": spec.momentum} if spec.optimizer == "sgd" else {}),
                "device": "cpu",
                "dtype": "float64",
            },
            "columns": [[k, v] for k, v in columns.items()],
            "runs": runs,
            "signature": plan.signature,
            "environment": environment(),
        },
    )


def run_compare(
    case: Case,
    out: Path,
    *,
    seed: int = 0,
    quick: bool = False,
    force: bool = False,
    estimators: tuple[str, ...] | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    memory_budget: int | None = None,
    time_budget: float | None = None,
) -> CompareReport:
    """Plan and carry out the comparison of ``case`` into ``out/<case.name>/`` (module
    docstring); ``estbench run`` does the same for a case with ``[compare]``."""
    plan = plan_compare(
        case,
        out,
        seed=seed,
        quick=quick,
        estimators=estimators,
        memory_budget=memory_budget,
        time_budget=time_budget,
    )
    return execute_compare(plan, force=force, progress=progress, log=log)
