"""Problem kinds (estbench.problem): the registry, the contract, case files, and the design's own
test -- a kind arrives as one package with one entry-point line (the example kind in
examples/estbench-example-kind, installed by CI), and the harness names no kind."""

from __future__ import annotations

import ast
import importlib.metadata
import json
from pathlib import Path

import pytest
import torch

from estbench.cases import CaseError, parse_case
from estbench.problem import (
    GROUP,
    Block,
    ProblemKind,
    ProblemKindError,
    contract_fault,
    get_kind,
    kind_of,
    kinds,
    pair_blocks,
)
from estbench.runner import run_case
from estbench.testing import check_estimator

ROOT = Path(__file__).resolve().parents[1]
HARNESS = [
    "cases.py",
    "schema.py",
    "runner.py",
    "cluster.py",
    "catalogue.py",
    "measure.py",
    "metrics.py",
    "results.py",
    "testing.py",
    "training.py",
    "cli.py",
    "api.py",
    "estimators/base.py",
    "estimators/registry.py",
    *(f"report/{p.name}" for p in sorted((ROOT / "estbench" / "report").glob("*.py"))),
]


def test_builtin_kinds_register_through_entry_points():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=GROUP)}
    assert eps["sbn"] == "estbench.kinds.sbn.kind:SbnKind"
    assert eps["weights"] == "estbench.kinds.weights.kind:WeightsKind"
    assert eps["sbvae"] == "estbench.kinds.sbvae.kind:SbvaeKind"
    found = kinds()
    assert found.sources["sbn"] == found.sources["weights"] == "estbench"
    assert {"sbn", "weights"} <= set(found.kinds)
    assert get_kind("weights").parametrisations == ("eta", "mu")
    assert found.by_marker(None) is found.kinds["sbn"]
    assert found.by_marker("weight-sbn") is found.kinds["weights"]


def test_the_example_kind_is_a_plugin_like_any_other():
    """CI installs examples/estbench-example-kind: its kind and its estimators are found."""
    found = kinds()
    assert found.sources["bernoulli-toy"] == "estbench-example-kind"
    from estbench.estimators.registry import default_registry

    registry = default_registry()
    assert registry["toy-st"].source == "estbench-example-kind"
    assert registry.create("toy-reinforce").problem == "bernoulli-toy"
    assert "bernoulli-toy" not in kinds(plugins=False).kinds  # ESTBENCH_DISABLE_PLUGINS


def test_unknown_kind_is_an_error_naming_the_known_ones():
    with pytest.raises(ProblemKindError, match=r"case.toml: unknown problem kind 'vae'; expected"):
        get_kind("vae", "case.toml")


class _Incomplete(ProblemKind):  # type: ignore[type-arg]
    name = "incomplete"
    description = "a kind with nothing implemented"
    default_training = "reinforce"


@pytest.mark.parametrize(
    ("cls", "fault"),
    [
        (int, "is not a ProblemKind subclass"),
        (_Incomplete, "abstract methods left: check_problems"),
        (type("Bad", (_Incomplete,), {"name": "Bad Name"}), "name must be lowercase"),
        (type("NoDesc", (_Incomplete,), {"description": 3}), "description must be a string"),
        (type("NoParams", (_Incomplete,), {"parametrisations": ()}), "parametrisations must be"),
    ],
)
def test_contract_faults_are_named(cls, fault):
    assert fault in (contract_fault(cls) or "")


def test_a_broken_plugin_kind_is_reported_and_skipped(monkeypatch):
    """A kind that fails to import, breaks the contract or takes a taken name is skipped with
    a message; the built-ins and every other kind keep working."""
    real = importlib.metadata.entry_points(group=GROUP)
    broken = [  # entry points of no known distribution: plugins
        importlib.metadata.EntryPoint("missing", "no_such_module:Kind", GROUP),
        importlib.metadata.EntryPoint("sbn", "estbench.kinds.weights.kind:WeightsKind", GROUP),
        importlib.metadata.EntryPoint("int", "builtins:int", GROUP),
    ]
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda group=None, **kw: [*real, *broken] if group == GROUP else [],
    )
    from estbench import problem

    problem._kinds.cache_clear()
    try:
        found = problem.kinds(plugins=True)
        text = "\n".join(found.problems)
        assert "'missing'" in text and "ModuleNotFoundError" in text
        assert "'int'" in text and "not a ProblemKind subclass" in text
        assert "names a kind called 'weights'" in text  # entry point 'sbn' -> WeightsKind
        assert found.kinds["sbn"].name == "sbn" and "weights" in found.kinds
    finally:
        problem._kinds.cache_clear()


def test_blocks_name_their_pairs():
    blocks = pair_blocks((6, 4, 3))
    assert [(b.name, b.slice, b.pairs) for b in blocks] == [
        ("layer0", slice(0, 6), (0,)),
        ("layer1", slice(6, 10), (1,)),
        ("layer2", slice(10, 13), (2,)),
        ("all", slice(0, 10), (0, 1)),
    ]
    assert blocks[2].label == "layer2 (head)" and blocks[3].label == "all binary layers"
    assert pair_blocks((5,)) == [Block("layer0", slice(0, 5), "layer0 (head)", (0,))]


def test_kind_of_finds_a_network_kind():
    sbn, weights = get_kind("sbn"), get_kind("weights")
    assert kind_of(sbn.reference_network()) is sbn
    assert kind_of(weights.reference_network()) is weights
    with pytest.raises(ProblemKindError, match="no problem kind has networks of type str"):
        kind_of("a string")


# ---- case files ---------------------------------------------------------------------------------

V1_WEIGHTS = """
schema_version = 1
[model]
weights = "bernoulli"
widths = [2, 2]
[measure]
estimators = ["weight-st"]
"""


def test_version_1_cases_still_read():
    """Version 1 marked a Bernoulli-weight model with model.weights = "bernoulli"; version 2
    says model.kind = "weights". Both read the same."""
    old = parse_case(V1_WEIGHTS, name="c")
    new = parse_case(
        V1_WEIGHTS.replace("schema_version = 1", "schema_version = 2").replace(
            'weights = "bernoulli"', 'kind = "weights"'
        ),
        name="c",
    )
    assert old.model == new.model and old.model.kind == "weights"
    assert type(old.model).__name__ == "WeightsModelSpec"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ('kind = "vae"', "c.toml: model.kind: expected one of 'sbn', 'sbvae', 'weights'"),
        (
            'kind = "sbn"\nfirst_layer = "real"',
            "c.toml: model.first_layer: a key of problem kind 'weights'",
        ),
        ('kind = "weights"\ninit = "ap2"', "c.toml: model.init: expected 'random' for a Bernoulli"),
        ('kind = "weights"\nweights = "bernoulli"', "c.toml: model.weights: unknown key"),
    ],
)
def test_model_tables_are_read_by_their_kind(model, message, tmp_path):
    text = (
        f"schema_version = 2\n[model]\nwidths = [2, 2]\n{model}\n[measure]\nestimators = ['st']\n"
    )
    with pytest.raises((CaseError, ProblemKindError)) as info:
        parse_case(text, name="c", path=tmp_path / "c.toml")
    assert message in str(info.value).replace(str(tmp_path) + "/", "")


def test_an_estimator_of_another_kind_is_refused_by_name():
    text = V1_WEIGHTS.replace('"weight-st"', '"st"')
    with pytest.raises(CaseError, match=r"estimator 'st' handles an SBN with real weights"):
        parse_case(text, name="c")


# ---- the example kind, end to end --------------------------------------------------------------


def test_the_example_kind_checks_like_a_builtin():
    """Its estimators pass the conformance check; toy-st's bias is detected exactly (it is a
    path estimator of its kind), and a sign-flipped REINFORCE -- the negative control -- fails
    its unbiasedness claim."""
    for name in ("toy-reinforce", "toy-st"):
        report = check_estimator(name, n_draws=2000)
        assert report.passed, report.format()
    st = {r.name: r for r in check_estimator("toy-st", n_draws=2000).results}
    assert "exact relative bias" in st["claimed bias is detected"].detail

    from estbench_example_kind.kind import ToyReinforce

    class Flipped(ToyReinforce):
        name = "toy-flipped"

        def estimate(self, problem, b):  # noqa: ANN001, ANN201
            return -super().estimate(problem, b)

    report = check_estimator(Flipped(), n_draws=2000, raise_on_failure=False)
    failed = [r.name for r in report.results if not r.passed]
    assert failed == ["unbiased (exact) net0 layer0", "unbiased (exact) net1 layer0"]


def test_the_example_kind_runs_and_reports(tmp_path):
    """Run, results and report of a kind estbench knows nothing about: its blocks and labels
    reach results.json, its exact moments give exact rows, its case trains."""
    import estbench_example_kind

    case_text = Path(estbench_example_kind.CASE).read_text()
    case_text = case_text.replace("draws = 20000", "draws = 400").replace(
        "M = [1, 10, 100, 1000]", "M = [1, 10]"
    )
    case_text += "\n[training]\nepochs = 3\nmeasure_at = [0, 3]\nbatch_size = 50\n[data]\nn = 100\n"
    case = parse_case(case_text, name="toy", path=tmp_path / "toy.toml")
    report = run_case(case, tmp_path / "out", progress=False, log=lambda _: None)
    assert report.points_done == 2 and not report.errors
    meta = json.loads((tmp_path / "out" / "toy" / "results.json").read_text())
    exact = meta["points"][0]["exact"]
    assert exact["kind"] == "bernoulli-toy" and exact["blocks"] == [["units", "θ (all units)"]]
    import pandas as pd

    rows = pd.read_csv(tmp_path / "out" / "toy" / "results.csv")
    bias = rows[(rows.metric == "rel_bias") & (rows.checkpoint == 0)].set_index("estimator")
    assert set(rows["layer"]) == {"units"} and set(bias["method"]) == {"exact"}
    assert bias.loc["toy-reinforce", "value"] < 1e-12 < 0.1 < bias.loc["toy-st", "value"]
    # trained by toy-reinforce; the snapshots are this kind's files, read back by the kind
    toy = get_kind("bernoulli-toy")
    like = toy.initial(case.model, (4,), torch.zeros(1, 0), torch.zeros(1), stored=False, offset=0)
    paths = sorted((tmp_path / "out" / "toy" / "checkpoints").glob("*.npz"))
    first, last = (toy.load_snapshot(p, like[0]).theta for p in (paths[0], paths[-1]))
    assert len(paths) == 2 and torch.equal(first, like[0].theta) and not torch.equal(first, last)
    from estbench.report import render_report

    render_report(tmp_path / "out" / "toy")
    assert "units" in (tmp_path / "out" / "toy" / "report.md").read_text()


# ---- the design's test -------------------------------------------------------------------------


@pytest.mark.parametrize("module", HARNESS)
def test_the_harness_names_no_kind(module):
    """Adding a kind touches its own folder and one entry-point line: no harness module imports
    a kind's modules or names a built-in kind's network or problem types."""
    path = ROOT / "estbench" / module
    tree = ast.parse(path.read_text())
    kind_modules = ("weights", "kinds", "model", "initialization", "exact_moments", "problems")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            top = parts[1] if parts[0] == "estbench" and len(parts) > 1 else parts[0]
            assert top not in kind_modules, f"{module} imports {node.module}"
        if isinstance(node, ast.Name):
            assert node.id not in ("SBN", "WeightSBN", "WeightProblem"), f"{module}: {node.id}"


def test_problem_dataclasses_share_one_pattern():
    sbn = get_kind("sbn").check_problems()[0]
    weights = get_kind("weights").check_problems()[0]
    from estbench.problem import DataProblem

    for pr in (sbn, weights):
        assert isinstance(pr, DataProblem)
        f32 = pr.to(dtype=torch.float32)
        assert type(f32) is type(pr) and f32.X.dtype == torch.float32 and pr.to() is pr
        assert sum(v.numel() for v in pr.split(torch.zeros(pr.n_params))) == pr.n_params


def test_a_kind_may_recognise_its_checkpoints_by_their_keys(monkeypatch):
    """``ProblemKind.recognises_checkpoint``: a file without the marker goes to the kind that
    recognises its keys; two such kinds are an error naming both; none: the SBN layout."""
    from estbench.checkpoint import checkpoint_kind

    sbn, weights = get_kind("sbn"), get_kind("weights")
    assert checkpoint_kind("seed:chk-1") == "sbn"  # nobody else recognises W0, b0, ...
    monkeypatch.setattr(type(weights), "recognises_checkpoint", lambda self, keys: "W0" in keys)
    assert checkpoint_kind("seed:chk-1") == "weights"
    monkeypatch.setattr(type(sbn), "recognises_checkpoint", lambda self, keys: "W0" in keys)
    with pytest.raises(Exception, match=r"the keys fit problem kinds 'sbn', 'weights'"):
        checkpoint_kind("seed:chk-1")
