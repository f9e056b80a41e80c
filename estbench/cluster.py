"""Running a case on Dask: local worker processes, or an existing cluster (``pip install
estbench[dask]``).

A run is a graph of three kinds of task, which the client submits and whose results the client
alone writes, into the same files as a serial run (so a distributed run resumes like a local one
and its workers need no access to the output directory):

* **train**, one per training run of the case (its key: widths and seed) whose snapshots are not
  in ``checkpoints/`` yet: every epoch the sweep measures; the client saves the snapshots;
* **prepare**, one per point not finished: the point's problem and exact reference, computed
  once and handed to the point's cells (``runner.prepare_point``);
* **cell**, one per (point, estimator variant): ``runner.measure_cell``, the function a serial
  run calls. When a point's cells are all in, the client writes the point file.

Every cell draws from its own stream (root seed, case, point, estimator), and the client
assembles the rows in the plan's order, so ``results.csv`` is byte-identical to a serial run's
with one torch thread, whatever the number of workers and the order in which tasks finish
(workers run one torch thread each: Dask's nanny sets ``OMP_NUM_THREADS=1``). An estimator that
raises fills the error column as in a serial run. A worker that dies running a task (killed, out
of memory) has the task rerun elsewhere, up to ``RETRIES`` times in all on a cluster this module
starts (the scheduler's ``distributed.scheduler.allowed-failures`` on one it connects to); a cell
that keeps killing its worker becomes error rows naming the last worker. A failing train or
prepare task stops the run with its error, after the points already finished were written.

Memory: each cell is annotated with the resource ``MEMORY`` (its draws' estimate, bytes) when
every worker declares that resource (``dask worker --resources MEMORY=8e9``; the local cluster
declares the run's memory budget per worker), so a worker is never given more cells at once than
its memory holds; a cell larger than every worker's ``MEMORY`` is refused before the run starts.

On connecting, the estbench, torch, numpy and Python versions and the installed plugins of every
worker are compared with the client's, and a mismatch is refused naming the worker.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import EstbenchError

if TYPE_CHECKING:
    from distributed import Client

    from .runner import Prepared, RunPlan, RunReport

RETRIES = 3  # attempts of a task whose worker dies, on a cluster started here
MEMORY = "MEMORY"  # the Dask resource that cells are annotated with
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


def _dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise EstbenchError(
            "running on Dask needs the dask extra: pip install 'estbench[dask]'"
        ) from None
    return distributed


def versions() -> dict[str, Any]:
    """What must agree between the client and every worker: the versions of estbench, torch,
    numpy and Python, and the plugin packages (estimators and problem kinds) installed."""
    plugins = set()
    for group in ("estbench.estimators", "estbench.problems"):
        for ep in importlib.metadata.entry_points(group=group):
            dist = getattr(ep, "dist", None)
            if dist is not None and dist.name != "estbench":
                plugins.add(f"{dist.name} {dist.version}")
    return {
        "estbench": __version__,
        "torch": importlib.metadata.version("torch"),
        "numpy": importlib.metadata.version("numpy"),
        "python": platform.python_version(),
        "plugins": ", ".join(sorted(plugins)) or "none",
    }


def _worker_versions() -> dict[str, Any]:
    return versions()  # looked up on the worker, by name


def version_mismatch(here: dict[str, Any], workers: dict[str, dict[str, Any]]) -> str | None:
    """The first worker whose ``versions()`` differ from the client's, said in one line."""
    for address, theirs in sorted(workers.items()):
        for key, ours in here.items():
            if theirs.get(key) != ours:
                return (
                    f"worker {address} has {key} {theirs.get(key)}, the client {ours}; install "
                    f"the same versions (and plugins) on every worker"
                )
    return None


def check_workers(client: Client) -> int:
    """Refuse a cluster whose workers differ from the client (``version_mismatch``); the number
    of workers."""
    found = client.run(_worker_versions)
    if not found:
        raise EstbenchError(f"the Dask cluster at {client.scheduler.address} has no workers")
    problem = version_mismatch(versions(), found)
    if problem is not None:
        raise EstbenchError(f"Dask: {problem}")
    return len(found)


@contextlib.contextmanager
def connect(
    workers: int | None = None, scheduler: str | None = None, *, memory_budget: int | None = None
) -> Iterator[Client]:
    """A client of a local cluster of ``workers`` processes (one torch thread each) or of the
    scheduler at ``scheduler``; closed (and the local cluster stopped) on leaving."""
    distributed = _dask()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as e:
            raise EstbenchError(
                f"--scheduler {scheduler}: cannot connect ({type(e).__name__}: {e})"
            ) from None
        with client:
            check_workers(client)
            yield client
        return
    if workers is None or workers < 1:
        raise EstbenchError(f"--workers: expected an integer >= 1, got {workers}")
    import dask

    from .options import default_memory_budget

    budget = default_memory_budget() if memory_budget is None else memory_budget
    with (
        dask.config.set(
            {
                # a task fails with the first death of its worker; run_on_client retries it alone
                "distributed.scheduler.allowed-failures": 0,
                # Dask's nanny sets glibc's trim threshold, which also fixes the mmap threshold:
                # every large tensor is then mapped and page-faulted in afresh, and estbench's
                # draws run 1.85x slower (measured on depth-sweep); keep glibc's adaptive default
                "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
            }
        ),
        distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            resources={MEMORY: budget},
            dashboard_address=":0",  # any free port: never clash with another cluster
            silence_logs=50,  # a worker killed on purpose, its heartbeat at shutdown: not news
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        check_workers(client)
        yield client


def _has_dashboard() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


# Tasks: module-level functions, so that workers import them by name.


def _plan_task(plan: RunPlan) -> RunPlan:
    return plan


def _train_task(plan: RunPlan, point: dict[str, Any], init: Any, X: Any, Y: Any) -> Any:
    from .runner import CaseRunner

    runner = CaseRunner(plan.case, plan.directory, progress=lambda _: None, show_progress=False)
    return runner.train(point, init, X, Y)


def _prepare_task(
    plan: RunPlan,
    kind: str,
    net: Any,
    X: Any,
    Y: Any,
    epoch: int | None,
    point: dict[str, Any] | None = None,
) -> Any:
    from .runner import prepare_point

    network = net if epoch is None else net[epoch]
    return prepare_point(kind, network, X, Y, plan, point, mapper=_spread)


def _apply(fn: Callable[..., Any], shared: tuple[Any, ...], *job: Any) -> Any:
    return fn(*shared, *job)


def _spread(fn: Callable[..., Any], shared: tuple[Any, ...], jobs: list[tuple[Any, ...]]) -> Any:
    """The ``mcref.Mapper`` of a task on the cluster: the jobs (the shards of a Monte Carlo
    reference) as tasks of their own, spread over the workers, their results in job order. The
    calling task leaves its worker's thread while it waits (``worker_client``), so a worker of
    one thread draws shards too. A single job runs here."""
    if len(jobs) <= 1:
        return [fn(*shared, *job) for job in jobs]
    with _dask().worker_client() as client:
        [common] = client.scatter([shared], broadcast=True, hash=False)
        futures = [client.submit(_apply, fn, common, *job, pure=False) for job in jobs]
        return client.gather(futures)


def _cell_task(plan: RunPlan, point: dict[str, Any], prepared: Prepared, index: int) -> Any:
    from .runner import measure_cell

    return measure_cell(plan, point, prepared, index)


def run_on_client(
    client: Client,
    plan: RunPlan,
    pending: list[dict[str, Any]],
    report: RunReport,
    say: Callable[[str], None],
    tick: Callable[[], None],
) -> None:
    """Every point of ``pending`` on the cluster of ``client``; each point file is written by
    this process as soon as the point's cells are in (module docstring)."""
    distributed = _dask()
    from .results import point_id
    from .runner import CaseRunner, Cell, error_cell, note_cell, point_meta, write_point

    if _has_dashboard() and getattr(client, "dashboard_link", None):
        say(f"estbench: Dask dashboard: {client.dashboard_link}")
    runner = CaseRunner(plan.case, plan.directory, progress=say, show_progress=False)
    resources = _memory_annotation(client, plan)
    run = uuid.uuid4().hex[:8]  # task keys unique to this run on a shared scheduler
    # A task holding the plan, not scattered data: if every worker holding it dies, the
    # scheduler can recompute it.
    plan_f = client.submit(_plan_task, plan, key=f"estbench-plan-{run}")
    trains: dict[Any, tuple[Any, str, Any, Any]] = {}  # training key -> (future, tag, X, Y)
    prepares: dict[str, Any] = {}
    cells: dict[Any, tuple[str, int]] = {}  # future -> (point id, variant index)
    points = {point_id(p): p for p in pending}
    for pid, point in points.items():
        net, X, Y, trained = runner.initial(point)
        epoch = None
        snapshot = runner.snapshot(point) if trained else None
        if snapshot is not None:
            key, tag, epoch, path = snapshot
            if path.exists():  # trained by an earlier run
                net, epoch = runner.kind.load_snapshot(path, net), None
            else:
                if key not in trains:
                    say(f"training {tag} on the cluster")
                    future = client.submit(
                        _train_task, plan_f, point, net, X, Y, key=f"estbench-train-{tag}-{run}"
                    )
                    trains[key] = (future, tag, X, Y)
                net = trains[key][0]
        prepares[pid] = client.submit(
            _prepare_task,
            plan_f,
            runner.kind.name,
            net,
            X,
            Y,
            epoch,
            point,
            key=f"estbench-prepare-{pid}-{run}",
        )
        for index in range(len(plan.variants)):
            future = client.submit(
                _cell_task,
                plan_f,
                point,
                prepares[pid],
                index,
                key=f"estbench-cell-{pid}-{index}-{run}",
                resources=resources(pid),
            )
            cells[future] = (pid, index)
    training = {t[0]: t for t in trains.values()}
    saved: set[Any] = set()
    done: dict[str, dict[int, Cell]] = {pid: {} for pid in points}

    def keep_snapshots() -> None:  # the client keeps them, for a later run
        for future, (_, tag, X, Y) in training.items():
            if future.status == "finished" and future not in saved:
                runner.save_snapshots(tag, future.result(), X, Y)
                saved.add(future)

    def finish(future: Any, cell: Cell) -> None:
        pid, index = cells[future]
        done[pid][index] = cell
        note_cell(report, say, pid, cell)
        tick()
        if len(done[pid]) == len(plan.variants):
            prepared = prepares.pop(pid).result()
            ordered = [done[pid][i] for i in range(len(plan.variants))]
            seconds = prepared.seconds + sum(c.seconds for c in ordered)
            meta = point_meta(plan, points[pid], prepared, ordered, seconds)
            write_point(plan, points[pid], meta, report)

    died = []  # cells whose worker died: retried one at a time below
    try:
        for future in distributed.as_completed([*cells, *training]):
            keep_snapshots()
            if future in training:
                continue  # a training run that failed fails its cells, which say why
            if future.status == "error" and isinstance(
                future.exception(), distributed.KilledWorker
            ):
                died.append(future)
            else:
                finish(future, future.result())  # a failed prepare task raises its error here
        # A worker's death fails every task the scheduler had given it, not only the one that
        # killed it; alone on the cluster, a cell that was merely beside it succeeds.
        for future in died:
            for _ in range(RETRIES - 1):
                client.retry([future])  # with its failed dependencies (prepare, training)
                distributed.wait([future])
                if future.status == "finished":
                    break
            keep_snapshots()
            pid, index = cells[future]
            if future.status == "finished":
                finish(future, future.result())
            elif prepares[pid].status == "error":
                raise EstbenchError(
                    f"{plan.case.name} point {pid}: the worker preparing it (training, exact "
                    f"reference) died {RETRIES} times; {_killed(prepares[pid].exception())}"
                )
            else:
                message = _killed(future.exception())
                finish(
                    future, error_cell(plan, points[pid], prepares[pid].result(), index, message)
                )
    finally:
        # Only what is still pending (an error or an interrupt left it): cancelling a finished
        # task whose result the client has already released trips an assertion in the
        # scheduler (distributed's stimulus_cancel, "assert ts.who_wants"), printed as a
        # traceback on stderr though the run succeeded.
        client.cancel([f for f in (*cells, *prepares.values(), *training) if f.status == "pending"])


def _killed(error: BaseException) -> str:
    worker = getattr(getattr(error, "last_worker", None), "address", None)
    return f"KilledWorker: its worker died each of {RETRIES} times (last: {worker or 'unknown'})"


def _memory_annotation(client: Client, plan: RunPlan) -> Callable[[str], dict[str, float] | None]:
    """The ``resources`` of a point's cells: its draws' memory estimate when every worker
    declares ``MEMORY``, else None; refuses a cell that no worker's ``MEMORY`` holds."""
    from .options import format_bytes

    workers = client.scheduler_info().get("workers", {})
    memory = [w.get("resources", {}).get(MEMORY) for w in workers.values()]
    if not memory or any(m is None for m in memory):
        return lambda pid: None
    largest = max(memory)
    estimates = {e.pid: e.draw_bytes for e in plan.estimates}
    for pid, need in estimates.items():
        if need > largest:
            raise EstbenchError(
                f"{plan.case.name} point {pid}: a cell needs about {format_bytes(need)}, more "
                f"than any Dask worker's {MEMORY} resource ({format_bytes(int(largest))})"
            )
    return lambda pid: {MEMORY: float(estimates.get(pid, 0))}
