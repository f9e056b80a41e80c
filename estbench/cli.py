"""Command line: ``estbench [--version] COMMAND ...`` (also ``python -m estbench``).

Results go to stdout, errors to stderr as one line ``estbench: error: ...`` with exit code 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ._version import __version__
from .errors import EstbenchError, ModelError

# Only what the parser needs is imported here, none of it torch: `estbench --help`, `cases` and
# `checkpoints` never import torch, the other commands import it where they use it.
from .options import CODING_NAMES as CODINGS
from .options import DEVICE_NAMES as DEVICES
from .options import DTYPE_NAMES as DTYPES
from .options import HEAD_NAMES as HEADS
from .options import NOISE_NAMES as NOISES
from .options import parse_bytes, split_specs

if TYPE_CHECKING:
    from .problem import ExactOutput


def _seed_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _workers_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _duration_arg(text: str) -> float:
    from .runner import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _bytes_arg(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--coding",
        choices=CODINGS,
        default=None,
        help="state coding of the binary units (default: 01, as the seed networks; a weight "
        "checkpoint's own)",
    )
    p.add_argument(
        "--noise",
        choices=list(NOISES),
        default=None,
        help="noise whose CDF gives P(on) (default: logistic; a weight checkpoint's own)",
    )
    p.add_argument(
        "--head",
        choices=list(HEADS),
        default=None,
        help="loss on the linear read-out (default: logistic NLL, labels +-1; a weight "
        "checkpoint's own)",
    )


def _print_exact(
    header: str,
    loss: float,
    output: ExactOutput,
    as_json: bool,
    extra_json: dict[str, object] | None = None,
) -> int:
    """Human or JSON output of ``estbench exact``: the kind's further exact values, and per
    printed gradient its flat vector (the JSON "grad" and the printed norm) and its labelled
    arrays."""
    if as_json:
        grad = {name: v.tolist() for name, v, _ in output.vectors}
        # allow_nan=False: a NaN would be written as the bare token NaN, which is not JSON; the
        # loaders refuse non-finite data, so this only fires on a numerical failure, as an error.
        try:
            text = json.dumps(
                {"loss": loss, **output.values, "grad": grad, **(extra_json or {})},
                allow_nan=False,
            )
        except ValueError:
            raise EstbenchError(
                "the exact objective or gradient is not finite (NaN or inf); expected finite "
                "numbers, which JSON can hold"
            ) from None
        sys.stdout.write(text)
        sys.stdout.write("\n")
        return 0
    import numpy as np

    print(header)
    print(f"exact objective  {loss:.17g}")
    for name, value in output.values.items():
        print(f"{name}  {value:.17g}")
    with np.printoptions(precision=10, linewidth=100, floatmode="maxprec_equal"):
        for name, v, layer in output.vectors:
            shapes = "  ".join(f"{label} {list(t.shape)}" for label, t in layer)
            print(f"\n{name}  {shapes}  |g| = {float(v.norm()):.6e}")
            for label, t in layer:
                prefix = f"  {label} = "
                print(prefix + np.array2string(t.cpu().numpy(), prefix=prefix))
    return 0


def _cmd_exact(args: argparse.Namespace) -> int:
    """The exact objective and gradient of a checkpoint, read by the problem kind its file names
    (``estbench_model``, or its keys); gradients in every parametrisation of the kind (JSON
    ``grad`` is the default one, ``grad_<name>`` the others), and what else the kind prints
    (``ProblemKind.exact_output``)."""
    from .checkpoint import checkpoint_kind, load_data
    from .device import resolve_device
    from .problem import get_kind

    kind = get_kind(checkpoint_kind(args.checkpoint))
    options = {"coding": args.coding, "noise": args.noise, "head": args.head}
    net, data = kind.read(args.checkpoint, options)
    if args.data:
        X, Y = load_data(args.data)
    elif data is not None:
        X, Y = data
    else:
        raise EstbenchError(f"{args.checkpoint}: stores no data (keys X and Y); pass --data FILE")
    kind.check_data(args.data or args.checkpoint, net, X, Y)  # errors name the file and key
    try:
        problem = kind.problem(net, X, Y).to(device=resolve_device(args.device))
        ref = kind.reference(problem, memory_budget=args.memory_budget)
        output = kind.exact_output(problem, ref)
    except ModelError as e:  # data or head that does not fit the network
        raise EstbenchError(f"{args.data or args.checkpoint}: {e}") from None
    names = [name for name, _, _ in output.vectors]
    others: dict[str, object] = {
        f"grad_{wrt}": {n: v.tolist() for n, v in zip(names, problem.split(g), strict=True)}
        for wrt, g in ref.gradients.items()
        if wrt != ref.default
    }
    return _print_exact(
        f"{kind.describe(net)}; {X.shape[0]} data points",
        ref.loss,
        output,
        args.json,
        others,
    )


def _registry():  # noqa: ANN202
    from .estimators.registry import default_registry

    registry = default_registry()
    for problem in registry.problems:
        print(f"estbench: warning: {problem}", file=sys.stderr)
    return registry


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _estimator_list(text: str | None) -> tuple[str, ...] | None:
    """``--estimators``: None when absent; an empty or blank list is an error, not "all"."""
    if text is None:
        return None
    specs = tuple(split_specs(text))
    if not specs:
        raise EstbenchError(
            f"--estimators: expected a comma-separated list of estimator names (e.g. "
            f"'st,psa,concrete(tau=0.1)'), got {text!r}"
        )
    return specs


def _cmd_run(args: argparse.Namespace) -> int:
    from .cases import load_case, with_overrides
    from .compare import check_compare_output, plan_compare
    from .runner import check_output, plan_run

    registry = _registry()
    estimators = _estimator_list(args.estimators)
    for spec in estimators or ():
        if spec != "exact":  # "exact" is a method of [compare], checked with its case
            registry.create(spec)
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    # Every case (and its checkpoint, of the case's model kind) is validated and sized before
    # any work starts, so a bad file or an oversized point fails now, naming it, not after other
    # cases ran. --estimators replaces a case's [measure] estimators, or its [compare]
    # estimators when it has no [measure] (a comparison only: estbench.compare).
    loaded = [load_case(name) for name in args.cases or ["default"]]
    cases = [
        with_overrides(
            c, checkpoint=checkpoint, estimators=None if _compare_only(c) else estimators
        )
        for c in loaded
    ]
    plans = [
        None
        if _compare_only(case)
        else plan_run(
            case,
            Path(args.out),
            seed=args.seed,
            quick=args.quick,
            device=args.device,
            dtype=args.dtype,
            memory_budget=args.memory_budget,
            time_budget=args.time_budget,
        )
        for case in cases
    ]
    compares = [
        None
        if case.compare is None
        else plan_compare(
            case,
            Path(args.out),
            seed=args.seed,
            quick=args.quick,
            estimators=estimators if _compare_only(case) else None,
            memory_budget=args.memory_budget,
            time_budget=args.time_budget,
        )
        for case in cases
    ]
    seen: dict[Path, str] = {}
    for case, plan, compare in zip(cases, plans, compares, strict=True):
        where = str(case.path or case.name)
        directory = plan.directory if plan is not None else compare.directory  # type: ignore[union-attr]
        if directory in seen:
            raise EstbenchError(
                f"{where}: writes to {directory}, as does {seen[directory]} in the same "
                f"command (cases are named after their file); run them with different --out"
            )
        seen[directory] = where
        check_output(directory)
        if compare is not None:
            check_compare_output(directory)
    described: list[Any] = [*plans, *compares]
    for planned in described:
        if planned is not None:
            print(f"estbench: {planned.describe()}", file=sys.stderr)
    deferred: list[tuple[str, Path]] = []
    with _cluster(args) as client:
        code = _execute(args, cases, plans, client, compares, deferred)
    # Reports of a run on Dask are rendered once the cluster is closed: the client's threads
    # would keep the report from drawing its figures in parallel (render._render_figures).
    for name, directory in deferred:
        files = _render(directory, svg=args.svg)
        print(f"{name}: report -> {files.markdown}, {files.html}")
    return code


def _compare_only(case: Any) -> bool:
    """A case with [compare] and no estimators to measure (no [measure] table)."""
    return case.compare is not None and not case.measure.estimators


@contextlib.contextmanager
def _cluster(args: argparse.Namespace) -> Any:
    """A Dask client for ``--workers`` / ``--scheduler`` / ``$DASK_SCHEDULER_ADDRESS``, else
    None (the run stays in this process)."""
    scheduler = args.scheduler or (
        None if args.workers else os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    )
    if args.workers is None and scheduler is None:
        yield None
        return
    from .cluster import connect

    with connect(args.workers, scheduler, memory_budget=args.memory_budget) as client:
        n = len(client.scheduler_info().get("workers", {}))
        print(
            f"estbench: running on {n} Dask workers ({client.scheduler.address})", file=sys.stderr
        )
        yield client


def _execute(
    args: argparse.Namespace,
    cases: list[Any],
    plans: list[Any],
    client: Any,
    compares: list[Any] | None = None,
    deferred: list[tuple[str, Path]] | None = None,
) -> int:
    """Run the plans (and comparisons) of the cases and render each case's report, or, with a
    Dask ``client``, add it to ``deferred`` for rendering after the cluster is closed."""
    from .runner import execute

    failed = 0
    progress = False if args.no_progress else None
    for case, plan, compare in zip(cases, plans, compares or [None] * len(plans), strict=True):
        errors = 0
        if plan is not None:
            report = execute(plan, force=args.force, progress=progress, client=client)
            done = f"{report.points_done} computed, {report.points_skipped} already done"
            print(f"{case.name}: {done} -> {report.directory}/results.csv")
            errors += len(report.errors)
        if compare is not None:
            errors += _execute_compare(args, case, compare, client, progress)
        if not args.no_report:
            directory = (plan or compare).directory
            if client is not None and deferred is not None:
                deferred.append((case.name, directory))
            else:
                files = _render(directory, svg=args.svg)
                print(f"{case.name}: report -> {files.markdown}, {files.html}")
        if errors:
            failed += 1
            print(
                f"estbench: {case.name}: {errors} estimator failures "
                f"(see the error column, or training.json's runs)",
                file=sys.stderr,
            )
    return 2 if failed else 0


def _execute_compare(
    args: argparse.Namespace, case: Any, plan: Any, client: Any, progress: bool | None
) -> int:
    """A case's [compare] (``estbench.compare``), in this process; its number of failed runs."""
    from .compare import execute_compare

    if client is not None:
        print(
            f"estbench: note: {case.name}: the training comparison runs in this process, not on "
            f"the Dask cluster",
            file=sys.stderr,
        )
    report = execute_compare(plan, force=args.force, progress=progress)
    done = f"{report.runs_done} trained, {report.runs_skipped} already done"
    print(f"{case.name}: training runs: {done} -> {report.directory}/training.csv")
    return len(report.errors)


def _render(directory: Path, **options: Any) -> Any:
    """Render a case directory's report under its lock (a run writing there is waited for by
    refusal, not raced), after clearing what a killed render left (temporary files)."""
    from .lock import case_lock  # torch-free
    from .report import render_report
    from .results import remove_stale_temporaries

    if not directory.is_dir():  # render_report names the problem; no lock file is created
        return render_report(directory, **options)
    with case_lock(directory):
        remove_stale_temporaries(directory)
        return render_report(directory, **options)


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import MAX_POINT_FIGURES

    for directory in args.directories:
        files = _render(
            Path(directory),
            max_point_figures=None if args.all_figures else MAX_POINT_FIGURES,
            svg=args.svg,
        )
        print(
            f"{directory}: {files.markdown}, {files.html}, {len(files.figures)} figures "
            f"({'PNG + SVG' if args.svg else 'PNG'}) in {files.markdown.parent / 'figures'}"
        )
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from .catalogue import catalogue
    from .problem import plugins_disabled

    found = catalogue(plugins=not plugins_disabled())
    for warning in found["warnings"]:
        print(f"estbench: warning: {warning}", file=sys.stderr)
    rows = found["rows"]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    header = ("name", "family", "problem", "unbiased", "evals", "parameters", "package")
    table = [header] + [
        (
            r["name"],
            r["family"],
            r["problem"] + (f" ({r['wrt']})" if r["wrt"] else ""),
            _shorten(r["unbiased"], 30),
            f"{r['evals_per_draw_5_5_5']:g}",
            ", ".join(f"{k}={v['default']}" for k, v in r["hyperparameters"].items()) or "-",
            f"{r['package']} {r['version']}",
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(
        f"\n{len(rows)} estimators; evals = loss evaluations per draw on the kind's reference "
        "network (a 5-5-5 SBN for sbn and weights). "
        "problem: "
        + "; ".join(f"{name} ({description})" for name, description in found["kinds"].items())
        + ". "
        "Variants: name(key=value), e.g. concrete(tau=0.1)."
    )
    refused = [
        (kind, name, reason)
        for kind, table in found.get("refusals", {}).items()
        for name, reason in table.items()
    ]
    if refused:
        print("\nRefused (the derivation does not cover the kind's objective; asking is an error):")
        for kind, name, reason in refused:
            print(f"  {name} for {kind}: {reason}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from .testing import check_estimator

    registry = _registry()
    specs = [s for arg in args.estimators for s in split_specs(arg)]
    if args.all:
        specs += list(registry)
    if not specs:
        raise EstbenchError("name at least one estimator, or pass --all")
    estimators = [registry.create(s) for s in specs]
    failed = 0
    for est in estimators:
        report = check_estimator(est, n_draws=args.draws, seed=args.seed, raise_on_failure=False)
        print(
            report.format()
            if args.verbose or not report.passed
            else f"{report.estimator}: PASS ({len(report.results)} checks)"
        )
        failed += not report.passed
    return 1 if failed else 0


def _cmd_checkpoints(args: argparse.Namespace) -> int:
    """``estbench checkpoints``: the shipped networks a ``seed:`` name can address."""
    from .shipped import SEED_CHECKPOINTS

    rows = [
        {
            "name": c.name,
            "file": c.file,
            "path": str(c.path),
            "architecture": c.architecture,
            "description": c.description,
        }
        for c in SEED_CHECKPOINTS
    ]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for r in rows:
        print(f"{r['name']}  {r['file']}\n  {r['architecture']}\n  {r['description']}")
    print(
        "\nUse a name wherever a checkpoint is accepted: estbench exact --checkpoint "
        "seed:chk-100, estbench run psa-5-5-5 --checkpoint seed:chk-100, or "
        'model.checkpoint = "seed:chk-100" in a case file.'
    )
    return 0


def _cmd_cases(args: argparse.Namespace) -> int:
    """``estbench cases``: the shipped cases; ``--copy NAME [DEST]`` copies one out to edit."""
    from .shipped import copy_case, shipped_cases

    if args.copy is not None:
        written = copy_case(args.copy, args.dest)
        for path in written:
            print(f"wrote {path}")
        print(f"run it with: estbench run {written[0]}")
        return 0
    if args.dest is not None:
        raise EstbenchError(
            f"cases: unexpected argument {args.dest!r}; expected none (to list the cases) or "
            "--copy NAME [DEST] (to copy one)"
        )
    cases = shipped_cases()
    if not cases:
        from .shipped import cases_dir

        raise EstbenchError(f"{cases_dir()}: no shipped case files; expected *.toml files there")
    width = max(len(c.name) for c in cases)
    for c in cases:
        print(f"{c.name.ljust(width)}  {_shorten(c.summary, max(100 - width - 2, 40))}".rstrip())
    print(
        f"\n{len(cases)} shipped cases in {cases[0].path.parent}; run one with `estbench run "
        "NAME`, copy one to edit with `estbench cases --copy NAME [DEST]`."
    )
    return 0


_SVG_HELP = "an SVG twin of every PNG figure (about doubles the report's rendering time)"


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):  # noqa: ANN001
        super().__init__(option_strings, dest, nargs=0, help="show versions and exit")

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        from .catalogue import catalogue
        from .problem import plugins_disabled

        lines = [f"estbench {__version__}"]
        rows = catalogue(plugins=not plugins_disabled())["rows"]
        plugins = sorted({(r["package"], r["version"]) for r in rows if r["package"] != "estbench"})
        lines += [f"plugin {dist} {version}" for dist, version in plugins]
        print("\n".join(lines))
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """Usage errors end like every other error: one ``estbench: error:`` line, exit code 1."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"estbench: error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="estbench",
        description="Accuracy of gradient estimators for stochastic binary networks, "
        "measured against exact gradients.",
    )
    parser.add_argument("-V", "--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "exact",
        help="exact objective and per-layer gradients of a checkpoint",
        description="Print the exact expected loss and its gradient for every layer "
        "(concat(vec W_k, b_k); layer L is the head), by layer-wise enumeration.",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="FILE.npz|seed:NAME",
        help="network as keys W0, b0, ..., WL, bL (+ X, Y), or a stochastic-weight checkpoint, "
        "or a shipped network by name: seed:chk-1, seed:chk-100 (`estbench checkpoints`)",
    )
    p.add_argument(
        "--data",
        metavar="FILE.npz|seed:NAME",
        help="take X, Y from this file (or shipped network) instead of the checkpoint",
    )
    _add_model_options(p)
    p.add_argument(
        "--memory-budget",
        type=_bytes_arg,
        default=None,
        metavar="SIZE",
        help="refuse above this much memory, e.g. 2GiB (default: $ESTBENCH_MEMORY_BUDGET or 1GiB)",
    )
    p.add_argument(
        "--device", choices=DEVICES, default="cpu", help="compute on cpu (default) or cuda"
    )
    p.add_argument(
        "--json", action="store_true", help='print {"loss": float, "grad": {"layer0": [...], ...}}'
    )
    p.set_defaults(func=_cmd_exact)

    p = sub.add_parser(
        "run",
        help="run cases: exact gradients, estimator draws, metrics -> results and report",
        description="Run case files (names of shipped cases or paths) and write DIR/<case>/"
        "results.csv, results.json and the report (report.md, report.html, figures/). "
        "Finished case points are skipped on a re-run.",
    )
    p.add_argument(
        "cases", nargs="*", metavar="CASE", help="case names or .toml paths (default: default)"
    )
    p.add_argument("--out", default="out", metavar="DIR", help="results directory (default: out)")
    p.add_argument(
        "--seed", type=_seed_arg, default=0, help="root seed of the draws, >= 0 (default 0)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="few draws, for a smoke run (written to DIR/<case>-quick, beside the full run's)",
    )
    p.add_argument(
        "--estimators",
        metavar="LIST",
        help="only these estimators, e.g. 'st,psa,concrete(tau=0.1)'",
    )
    p.add_argument(
        "--checkpoint",
        metavar="FILE.npz|seed:NAME",
        help="measure this network instead of the case's model and training: a file, or a "
        "shipped network by name, e.g. seed:chk-100 (`estbench checkpoints`)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="recompute finished case points, and replace the results of a run with other "
        "settings (seed, estimators, case file, device, dtype) instead of refusing",
    )
    p.add_argument(
        "--memory-budget",
        type=_bytes_arg,
        default=None,
        metavar="SIZE",
        help="refuse a point whose exact gradient or draws need more, e.g. 4GiB (default: "
        "$ESTBENCH_MEMORY_BUDGET or 1GiB)",
    )
    p.add_argument(
        "--time-budget",
        type=_duration_arg,
        default=None,
        metavar="DURATION",
        help="refuse a run estimated to take longer, e.g. 3d (default: $ESTBENCH_TIME_BUDGET "
        "or 24h; the estimate is rough)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--device",
        choices=DEVICES,
        default=None,
        help="where the exact gradient and the draws run (default: the case's measure.device, "
        "else cpu); training stays on the CPU",
    )
    p.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default=None,
        help="dtype of the estimator draws (default: the case's measure.dtype, else float64); "
        "the exact reference and the metrics are always float64",
    )
    p.add_argument(
        "--no-report", action="store_true", help="results files only, no report.md/report.html"
    )
    p.add_argument("--svg", action="store_true", help=_SVG_HELP)
    cluster = p.add_mutually_exclusive_group()
    cluster.add_argument(
        "--workers",
        type=_workers_arg,
        metavar="N",
        help="run on a local Dask cluster of N worker processes, one torch thread each "
        "(needs pip install 'estbench[dask]')",
    )
    cluster.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on the Dask cluster of this scheduler, e.g. tcp://host:8786 (default: "
        "$DASK_SCHEDULER_ADDRESS; without either, the run stays in this process)",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "report",
        help="render report.md, report.html and figures/ from saved results",
        description="Re-render the report of case directories written by `estbench run` "
        "(DIR/<case>) from results.csv and results.json, without recomputing anything.",
    )
    p.add_argument("directories", nargs="+", metavar="DIR/CASE", help="case result directories")
    p.add_argument(
        "--all-figures",
        action="store_true",
        help="per-point figures for every point of a sweep (default: at most 4 points)",
    )
    p.add_argument("--svg", action="store_true", help=_SVG_HELP)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "list",
        help="every registered estimator with its metadata",
        description="List built-in and plugin estimators.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser(
        "check",
        help="run the conformance checks on estimators",
        description="Shapes, determinism, zero loss, and the unbiasedness claim against exact "
        "gradients (estbench.testing.check_estimator). Exit 1 if any check fails.",
    )
    p.add_argument(
        "estimators",
        nargs="*",
        metavar="NAME",
        help="estimators, e.g. st 'concrete(tau=0.1)' (comma lists allowed)",
    )
    p.add_argument("--all", action="store_true", help="check every registered estimator")
    p.add_argument(
        "--draws", type=int, default=20000, help="draws for the statistical checks (default 20000)"
    )
    p.add_argument("--seed", type=_seed_arg, default=0, help="seed of the checks (default 0)")
    p.add_argument("-v", "--verbose", action="store_true", help="show every check")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser(
        "checkpoints",
        help="the shipped networks (seed:chk-1, seed:chk-100)",
        description="List the networks shipped with estbench: the name to give wherever a "
        "checkpoint is accepted, the file, the architecture and what it is.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=_cmd_checkpoints)

    p = sub.add_parser(
        "cases",
        help="list the shipped cases, or copy one out to edit",
        description="List the shipped case files (name and the first line of the description), "
        "or with --copy NAME copy one (and a data file it refers to) to DEST (a folder or a "
        ".toml path; default: the working directory). Existing files are never overwritten.",
    )
    p.add_argument("--copy", metavar="NAME", help="copy this shipped case")
    p.add_argument("dest", nargs="?", metavar="DEST", help="where --copy writes (default: .)")
    p.set_defaults(func=_cmd_cases)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except EstbenchError as e:
        # One line, whatever the message holds (e.g. a key or a file name with a newline).
        print(f"estbench: error: {' '.join(str(e).splitlines())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        resume = " (rerun the same command to resume: finished points are kept)"
        print(f"estbench: interrupted{resume if args.command == 'run' else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0
    except (MemoryError, RuntimeError) as e:
        if not isinstance(e, MemoryError) and "allocate" not in str(e):
            raise
        print(
            f"estbench: error: out of memory ({' '.join(str(e).split())[:200]}); lower "
            f"--memory-budget (the exact solver sizes its tables to it) or shrink the case",
            file=sys.stderr,
        )
        return 1
    except OSError as e:  # a file or directory that cannot be read or written
        where = f"{e.filename}: " if e.filename else ""
        print(f"estbench: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1


__all__ = ["main", "build_parser"]
