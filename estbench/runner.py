"""Run a case: every case point x every estimator -> tidy rows, written as the run goes.

For each case point (the sweep's product of depth, width, checkpoint and seed) the runner builds
the data and the network (initialised and trained, or from a checkpoint), computes the exact
gradient once, and measures every estimator variant (``tau`` in the sweep expands the estimators
that have a ``tau`` parameter). Each finished point is written atomically to
``DIR/<case>/points/<point>.json``; a re-run skips finished points (``force`` recomputes), so an
interrupted run loses at most the point in progress. An estimator that raises or returns NaN/inf
fills the ``error`` column of its rows and the run goes on. ``results.csv`` and ``results.json``
are assembled from the point files at the end.

Randomness: every stream is seeded from (root seed, case, point, estimator spec) through
``numpy.random.SeedSequence``, so results do not depend on the order in which things run.
"""

from __future__ import annotations

import json
import math
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
from .checkpoint import load_checkpoint, save_checkpoint
from .data import make_dataset, targets_for_head
from .device import device_name, dtype_name, resolve_device, resolve_dtype
from .device import generator as make_generator
from .errors import CheckpointError, EstbenchError
from .estimators.base import Estimator, Problem
from .estimators.registry import default_registry
from .exact import exact_gradient
from .initialization import ap2_init, uniform_sbn
from .measure import MeasureOptions, Slice, layer_slices, measure, weight_layer_slices
from .model import SBN, random_sbn
from .results import atomic_write, environment, point_id, rows_to_csv, write_json
from .training import Net, train
from .weights import (
    WeightProblem,
    WeightSBN,
    load_weight_checkpoint,
    random_weight_sbn,
    save_weight_checkpoint,
)

POINT_FORMAT = 1


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
    return out


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
        self._trained: dict[tuple[Any, ...], dict[int, Any]] = {}

    def _initial(
        self, widths: tuple[int, ...], X: torch.Tensor, out_dim: int, seed_offset: int
    ) -> SBN:
        m = self.case.model
        g = torch.Generator().manual_seed(m.seed + seed_offset)
        kw = {"generator": g, "coding": m.coding, "noise": m.noise, "head": m.head}
        if m.init == "ap2":
            return ap2_init(X, widths, out_dim, **kw)
        if m.init == "uniform":
            return uniform_sbn(X.shape[1], widths, out_dim, **kw)
        return random_sbn(X.shape[1], widths, out_dim, scale=m.scale, **kw)

    def _data(
        self, seed_offset: int, out_dim: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Inputs, targets for the head, and the head's output count."""
        X, labels = _labels_data(self.case, seed_offset)
        m = self.case.model
        if self.case.data.kind == "npz":  # targets as stored
            return X, labels, out_dim or m.outputs or (labels.shape[1] if labels.dim() == 2 else 1)
        classes = int(labels.max()) + 1
        if out_dim is None:
            out_dim = m.outputs or (1 if m.head == "logistic" else max(classes, 2))
        return X, targets_for_head(labels, m.head, out_dim), out_dim

    def problem(self, point: dict[str, Any]) -> Problem:
        case, m = self.case, self.case.model
        offset = int(point.get("seed", 0))
        if m.kind == "weights":
            return self._weight_problem(point, offset)  # type: ignore[return-value]
        if m.checkpoint is not None:
            model, data = case_checkpoint(case)
            X, Y = data if data is not None else self._data(offset, model.out_dim)[:2]
            return Problem.create(model, X, Y)
        widths = case.widths_at(point)
        X, Y, out_dim = self._data(offset)
        model = self._initial(widths, X, out_dim, offset)
        if case.training is not None:
            epoch = int(point.get("checkpoint", max(case.training.measure_at)))
            model = self._trained_model(model, X, Y, widths, offset, epoch)
        return Problem.create(model, X, Y)

    def _weight_problem(self, point: dict[str, Any], offset: int) -> WeightProblem:
        """A stochastic-binary-weight network: from ``model.checkpoint``, or at initialisation
        (``random_weight_sbn``: eta ~ N(0, eta_scale^2), real W ~ N(0, scale^2 / fan-in),
        b ~ N(0, 0.25)) and then trained if the case has ``[training]``."""
        m = self.case.model
        if m.checkpoint is not None:
            model, data = case_checkpoint(self.case)
            X, Y = data if data is not None else self._data(offset, model.out_dim)[:2]
            return WeightProblem.create(model, X, Y)
        widths = self.case.widths_at(point)
        X, Y, out_dim = self._data(offset)
        model = random_weight_sbn(
            X.shape[1],
            widths,
            out_dim,
            generator=torch.Generator().manual_seed(m.seed + offset),
            kinds=m.weight_kinds(len(widths)),
            eta_scale=m.eta_scale,
            scale=m.scale,
            coding=m.coding,
            activation=m.activation_name,
            head=m.head,
            weight_noise=m.weight_noise,
        )
        if self.case.training is not None:
            epoch = int(point.get("checkpoint", max(self.case.training.measure_at)))
            model = self._trained_model(model, X, Y, widths, offset, epoch)
        return WeightProblem.create(model, X, Y)

    def _trained_model(
        self,
        init: Net,
        X: torch.Tensor,
        Y: torch.Tensor,
        widths: tuple[int, ...],
        offset: int,
        epoch: int,
    ) -> Net:
        """``init`` (an SBN or a WeightSBN) trained to ``epoch``; every snapshot of the sweep is
        stored in ``checkpoints/`` and reused by a later (e.g. interrupted) run."""
        spec = self.case.training
        assert spec is not None
        key = (widths, offset)
        tag = f"w{'-'.join(map(str, widths))}_seed{offset}"
        path = self.directory / "checkpoints" / f"{tag}_epoch{epoch}.npz"
        if path.exists():  # trained by an earlier (possibly interrupted) run
            if isinstance(init, WeightSBN):
                return _stored_like(path, init)
            ckpt = load_checkpoint(path)
            return ckpt.model(coding=init.coding, noise=init.noise.name, head=init.head.name)
        if key not in self._trained:
            epochs = sorted(set(self.case.sweep.get("checkpoint", spec.measure_at)))
            train_spec = replace(spec, measure_at=tuple(epochs), seed=spec.seed + offset)
            self.progress(f"training {tag} for {max(epochs)} epochs ({spec.method})")
            with tqdm(
                total=max(epochs),
                desc=f"training {tag}",
                unit="epoch",
                file=sys.stderr,
                disable=self.show_progress,
                leave=False,
            ) as bar:
                self._trained[key] = train(init, X, Y, train_spec, on_epoch=lambda _: bar.update(1))
            save = save_weight_checkpoint if isinstance(init, WeightSBN) else save_checkpoint
            for e, net in self._trained[key].items():
                save(self.directory / "checkpoints" / f"{tag}_epoch{e}.npz", net, X, Y)
        return self._trained[key][epoch]


def _stored_like(path: Path, init: WeightSBN) -> WeightSBN:
    """A stored training snapshot of ``init``'s network; a file left by another version of the
    case (other kinds, shapes or settings) is an error, not silently measured."""
    net = load_weight_checkpoint(path).model()

    def layout(m: WeightSBN) -> tuple[Any, ...]:
        return (
            m.kinds,
            [p.shape for p in m.params],
            m.coding,
            m.activation,
            m.head.name,
            m.weight_noise.name,
        )

    if layout(net) != layout(init):
        raise CheckpointError(
            f"{path}: a stored training snapshot of another network ({net.describe()}); this case "
            f"trains {init.describe()}. Remove the file (or use another --out) to train again"
        )
    return net


def case_checkpoint(case: Case) -> tuple[Any, tuple[torch.Tensor, torch.Tensor] | None]:
    """The network of ``model.checkpoint`` (or ``--checkpoint``) and its data if stored.

    An SBN checkpoint stores no coding, noise or head: the case's are used. A weight checkpoint
    stores them, and they must be the case's (as must the first pair's kind, ``first_layer``): the
    stored network is measured as it was trained, never silently re-read with other settings.
    """
    m = case.model
    assert m.checkpoint is not None
    if m.kind == "sbn":
        ckpt = load_checkpoint(m.checkpoint)
        model = ckpt.model(coding=m.coding, noise=m.noise, head=m.head)
        return model, (ckpt.data() if ckpt.X is not None else None)
    wckpt = load_weight_checkpoint(m.checkpoint)
    where = str(case.path) if case.path else f"<case {case.name}>"
    first = "bernoulli" if m.first_layer == "bernoulli" else "real"
    for key, stored, stated, case_key in (
        ("coding", wckpt.coding, m.coding, "model.coding"),
        ("activation", wckpt.activation, m.activation_name, "model.activation / model.noise"),
        ("head", wckpt.head, m.head, "model.head"),
        ("weight_noise", wckpt.weight_noise, m.weight_noise, "model.weight_noise"),
        ("eta0/W0", wckpt.kinds[0], first, "model.first_layer"),
    ):
        if stored != stated:
            raise CheckpointError(
                f"{m.checkpoint}: key {key} gives {stored!r}, but {where}: {case_key} gives "
                f"{stated!r}; expected the same (a weight checkpoint is measured as stored)"
            )
    return wckpt.model(), (wckpt.data() if wckpt.X is not None else None)


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


def reference(problem: Any) -> tuple[dict[str, torch.Tensor], list[Slice], dict[str, Any]]:
    """The exact reference of a point: flat targets by parametrisation ("eta"; "mu" too for a
    weights problem), the layers measured, and the ``exact`` section of results.json."""
    from .weights import WeightProblem
    from .weights import exact_gradient as weight_exact_gradient

    if not isinstance(problem, WeightProblem):
        ex = exact_gradient(problem.model, problem.X, problem.Y)
        g_flat = ex.flat()
        slices = layer_slices(problem)
        targets = {"eta": g_flat}
    else:
        wx = weight_exact_gradient(problem.model, problem.X, problem.Y)
        targets = {"eta": wx.flat("eta"), "mu": wx.flat("mu")}
        slices = weight_layer_slices(problem, targets)
        ex = wx
    exact = {
        "loss": float(ex.loss),
        "grad_norm": {name: float(targets["eta"][sl].norm()) for name, sl in slices},
        "widths": list(problem.model.widths),
        "n_points": problem.n_points,
    }
    if isinstance(problem, WeightProblem):
        m = problem.model
        exact["kinds"] = list(m.kinds)
        exact["activation"] = m.activation
        if not m.logistic_weights:
            exact["weight_noise"] = m.weight_noise.name
        exact["layers"] = [name for name, _ in slices]
        mu = {name: float(targets["mu"][sl].norm()) for name, sl in slices}
        if mu != exact["grad_norm"]:
            exact["grad_norm_mu"] = mu
    return targets, slices, exact


def _error_rows(slices: list[Slice] | None, message: str) -> list[dict[str, Any]]:
    layers = [n for n, _ in slices] if slices is not None else ["all"]
    return [
        {
            "layer": layer,
            "metric": "rel_bias",
            "M": None,
            "value": math.nan,
            "se": None,
            "ci_low": None,
            "ci_high": None,
            "method": "",
            "error": message,
        }
        for layer in layers
    ]


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
) -> RunReport:
    """Run every point of ``case`` into ``out/<case.name>/`` (see module docstring).

    ``device`` (cpu | cuda) and ``dtype`` (of the draws: float64 | float32) override the case's
    ``measure.device`` and ``measure.dtype``.
    """

    dev, draw_dtype = run_settings(case, device=device, dtype=dtype)
    directory = out / case.name
    (directory / "points").mkdir(parents=True, exist_ok=True)
    report = RunReport(case.name, directory)
    say = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    variants = estimator_variants(case, extra_estimators)
    labels = [v.label for v in variants]
    if len(set(labels)) != len(labels):
        raise EstbenchError(f"{case.name}: an estimator is listed twice: {labels}")
    opts = MeasureOptions(
        draws=case.measure.quick_draws if quick else case.measure.draws,
        M=case.measure.M,
        metrics=case.measure.metrics,
        exact_moments=case.measure.exact_moments,
        max_paths=case.measure.max_paths,
        bootstrap=min(case.measure.bootstrap, 50) if quick else case.measure.bootstrap,
        dtype=draw_dtype,
    )
    signature = {
        "format": POINT_FORMAT,
        "case_sha256": case.sha256,
        "seed": seed,
        "quick": quick,
        "estimators": labels,
        "device": str(dev),
        "dtype": dtype_name(draw_dtype),
    }
    runner = CaseRunner(case, directory, progress=say, show_progress=progress)
    points = case.points() or [{}]
    # disable=None: tqdm turns itself off when stderr is not a terminal
    bar = tqdm(
        total=len(points) * len(variants),
        desc=case.name,
        unit="est",
        disable=None if progress is None else not progress,
        file=sys.stderr,
    )
    for point in points:
        pid = point_id(point)
        path = directory / "points" / f"{pid}.json"
        if path.exists() and not force:
            try:
                done = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                done = {}
            if done.get("signature") == signature:
                report.points_skipped += 1
                _collect_flags(report, done)
                bar.update(len(variants))
                continue
        t0 = time.perf_counter()
        rows: list[dict[str, Any]] = []
        meta: dict[str, Any] = {"point": point, "signature": signature, "estimators": {}}
        # The reference is float64 on the run's device (the network was built on the CPU).
        problem = runner.problem(point).to(dtype=torch.float64, device=dev)
        targets, slices, meta["exact"] = reference(problem)
        for variant in variants:
            gen = make_generator(dev, stream_seed(seed, case.name, pid, variant.label))
            wrt = getattr(variant.estimator, "wrt", None)
            info: dict[str, Any] = {"tau": variant.tau}
            if wrt is not None:
                info["wrt"] = wrt
            try:
                g_flat = targets[wrt or "eta"]
                m = measure(variant.estimator, problem, g_flat, opts, generator=gen, slices=slices)
                new_rows = m.rows
                info.update(
                    seconds_per_draw=m.seconds_per_draw,
                    exact=m.exact,
                    claimed_unbiased=m.claimed,
                    verdicts=m.verdicts,
                    evals_per_draw=variant.estimator.evals_per_draw(problem.model),
                    unbiased=variant.estimator.unbiased,
                )
            except Exception as e:  # an estimator's failure is recorded, not fatal
                message = f"{type(e).__name__}: {e}"
                new_rows = _error_rows(slices, message)
                info["error"] = message
                report.errors.append(f"{case.name} {pid} {variant.label}: {message}")
                say(f"estbench: error: {case.name} {pid} {variant.label}: {message}")
            for r in new_rows:
                r.update(
                    case=case.name,
                    estimator=variant.label,
                    tau=variant.tau,
                    error=r.get("error"),
                    **point,
                )
            rows += new_rows
            meta["estimators"][variant.label] = info
            bar.update(1)
        meta["seconds"] = time.perf_counter() - t0
        meta["rows"] = rows
        atomic_write(path, json.dumps(meta, sort_keys=True, default=_json_default) + "\n")
        report.points_done += 1
        _collect_flags(report, meta)
    bar.close()
    for flag in report.flags:
        say(f"estbench: WARNING: {flag}")
    _assemble(case, directory, points, signature, seed, quick)
    return report


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


def _assemble(
    case: Case,
    directory: Path,
    points: list[dict[str, Any]],
    signature: dict[str, Any],
    seed: int,
    quick: bool,
) -> None:
    rows: list[dict[str, Any]] = []
    per_point = []
    for point in points:
        path = directory / "points" / f"{point_id(point)}.json"
        meta = json.loads(path.read_text())
        rows += meta.pop("rows")
        per_point.append(meta)
    atomic_write(directory / "results.csv", rows_to_csv(rows))
    write_json(
        directory / "results.json",
        {
            "case": {
                "name": case.name,
                "path": str(case.path) if case.path else None,
                "sha256": case.sha256,
                "content": case.text,
                "description": case.description,
                "checkpoint": str(case.model.checkpoint) if case.model.checkpoint else None,
            },
            "run": {
                "seed": seed,
                "quick": quick,
                "device": signature["device"],
                "device_name": device_name(torch.device(signature["device"])),
                "dtype": signature["dtype"],
                "exact_dtype": "float64",
                "estimators": signature["estimators"],
            },
            "environment": environment(),
            "points": per_point,
        },
    )
