"""The public conformance check, its negative controls, and the list/check commands."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from estbench.cli import main
from estbench.estimators import Estimator
from estbench.estimators import registry as registry_module
from estbench.kinds.sbn.estimators.ops import assemble, head_grad, layer_terms, sample_path
from estbench.kinds.sbn.estimators.score import Reinforce
from estbench.kinds.sbn.estimators.straight_through import StraightThrough
from estbench.kinds.weights.estimators import WeightReinforce
from estbench.testing import check_estimator


class STClaimingUnbiased(StraightThrough):
    name = "st-claims-unbiased"
    unbiased = "yes"

    def unbiased_layers(self, model):  # noqa: ANN001, ANN201
        return frozenset(range(model.depth + 1))


class ReinforceClaimingBiased(Reinforce):
    name = "reinforce-claims-biased"
    unbiased = "no"

    def unbiased_layers(self, model):  # noqa: ANN001, ANN201
        return frozenset()


class ShiftedReinforce(Estimator):
    """Not a path estimator: REINFORCE plus 0.3 in layer0's bias gradient (biased)."""

    name = "shifted-reinforce"
    family = "score-function"
    unbiased = "yes"
    reference = "test"

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        path = sample_path(problem, n_draws, generator)
        f = problem.model.head.loss(path.z, problem.Y)[..., None]
        out = assemble(
            problem,
            layer_terms(path, [f * s for s in path.scores(problem)], head_grad(problem, path.z)),
            per_point=False,
        )
        n_w = problem.model.weights[0].numel()
        out[:, n_w] += 0.3
        return out


class NotReproducible(Reinforce):
    """Ignores the generator it is given and draws from a freshly (randomly) seeded one."""

    name = "not-reproducible"

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        own = torch.Generator()
        own.seed()
        return super()._draw(problem, n_draws, own, context)


def test_principled_estimators_pass():
    assert check_estimator("reinforce").passed
    assert check_estimator("st").passed


@pytest.mark.parametrize(
    ("estimator", "failed_check"),
    [
        (STClaimingUnbiased(), "unbiased (exact) net0 layer0"),
        (ReinforceClaimingBiased(), "claimed bias is detected"),
        (ShiftedReinforce(), "unbiased (statistical) net0 layer0"),
        (NotReproducible(), "same seed, same draws"),
    ],
)
def test_wrong_claims_and_broken_estimators_fail(estimator, failed_check):
    report = check_estimator(estimator, raise_on_failure=False)
    failed = [r.name for r in report.results if not r.passed]
    assert failed_check in failed, report.format()
    with pytest.raises(AssertionError, match=f"{estimator.spec}: FAIL"):
        check_estimator(estimator)


def test_shifted_estimator_passes_the_layers_it_does_not_touch():
    report = check_estimator(ShiftedReinforce(), raise_on_failure=False)
    by_name = {r.name: r.passed for r in report.results}
    assert (
        by_name["unbiased (statistical) net0 layer2"]
        and by_name["unbiased (statistical) net1 layer3"]
    )


def test_cli_list_json(capsys):
    assert main(["list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["reinforce"]["family"] == "score-function"
    assert rows["reinforce"]["hyperparameters"]["baseline"]["choices"] == [
        "none",
        "constant",
        "oracle",
        "frozen",
    ]
    assert rows["st"]["unbiased"] == "head only" and rows["st"]["package"] == "estbench"
    assert rows["reinforce-batch-baseline"]["package"] == "estbench-example-plugin"
    # what verifies each estimator (the docs' generated tables); stated by the example plugin too
    assert rows["carms"]["tests"] == ["tests/test_multi_sample.py"]
    assert rows["carms"]["verified"].startswith("the pair pmf of the copula")
    assert rows["reinforce-batch-baseline"]["tests"] == ["tests/test_estimator_contract.py"]


def test_cli_check(capsys):
    assert main(["check", "st,reinforce(baseline=oracle)"]) == 0
    out = capsys.readouterr().out
    assert "st: PASS" in out and "reinforce(baseline=oracle): PASS" in out
    assert main(["check", "nonsense"]) == 1
    assert "unknown estimator 'nonsense'" in capsys.readouterr().err


# ---- misbehaving plugins: every fault is a FAIL in the report, never a crash ------------------


class DrawRaises(Reinforce):
    name = "draw-raises"

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        raise RuntimeError("CUDA out of memory")


class Transposed(Reinforce):
    """Returns [P, S] instead of [S, P]."""

    name = "transposed"

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        return super()._draw(problem, n_draws, generator, context).T


class Float32(Reinforce):
    name = "float32"

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        return super()._draw(problem, n_draws, generator, context).float()


class ReturnsNaN(Reinforce):
    name = "returns-nan"

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        out = super()._draw(problem, n_draws, generator, context)
        out[:, 0] = float("nan")
        return out


class ReturnsList(Reinforce):
    name = "returns-list"

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        return super()._draw(problem, n_draws, generator, context).tolist()


class ClaimRaises(Reinforce):
    """Draws well, but its ``unbiased_layers`` raises."""

    name = "claim-raises"

    def unbiased_layers(self, model):  # noqa: ANN001, ANN201
        raise KeyError("depth")


class WeightDrawRaises(WeightReinforce):
    name = "weight-draw-raises"

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        raise ValueError("weights not supported")


class WeightTransposed(WeightReinforce):
    name = "weight-transposed"

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        return super()._draw(problem, n_draws, generator, context).T


class WeightPathRaises(WeightReinforce):
    """Draws well; its exact path moments (path_terms on enumerated paths) raise."""

    name = "weight-path-raises"

    def path_estimate(self, problem, path, context=None):  # noqa: ANN001, ANN201
        raise RuntimeError("no enumeration")


@pytest.mark.parametrize(
    ("estimator", "failed", "detail"),
    [
        (DrawRaises(), "draws", "raised RuntimeError: CUDA out of memory"),
        # a wrong block from _draw is named by the base class's chunk check
        (Transposed(), "draws", "_draw returned [45, 16] for 16 draws; expected shape [16, 45]"),
        (Float32(), "dtype", "got torch.float32, expected torch.float64"),
        (ReturnsNaN(), "finite", "16 of 720 values are NaN or infinite"),
        (ReturnsList(), "draws", "_draw returned list for 16 draws; expected shape [16, 45]"),
        (ClaimRaises(), "unbiased_layers", "raised KeyError: 'depth'"),
        (WeightDrawRaises(), "draws", "raised ValueError: weights not supported"),
        (
            WeightTransposed(),
            "draws",
            "_draw returned [27, 16] for 16 draws; expected shape [16, 27]",
        ),
        (WeightPathRaises(), "unbiased net0", "raised RuntimeError: no enumeration"),
    ],
)
def test_a_misbehaving_estimator_fails_its_check_without_raising(estimator, failed, detail):
    report = check_estimator(estimator, n_draws=500, raise_on_failure=False)
    assert not report.passed
    results = {r.name: r for r in report.results}
    assert failed in results and not results[failed].passed, report.format()
    assert detail in results[failed].detail, report.format()
    assert f"[FAIL] {failed}: " in report.format()


def test_the_weights_check_compares_seeds_only_for_stochastic_estimators():
    class Deterministic(WeightReinforce):
        """Draws that ignore the generator: fine for ``stochastic = False``, caught otherwise."""

        name = "weight-deterministic"
        stochastic = False

        def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
            return super()._draw(problem, n_draws, torch.Generator().manual_seed(5), context)

    names = [r.name for r in check_estimator(Deterministic(), raise_on_failure=False).results]
    assert "same seed, same draws" in names and "another seed, other draws" not in names
    Deterministic.stochastic = True
    report = check_estimator(Deterministic(), raise_on_failure=False)
    assert [r.name for r in report.results if not r.passed] == ["another seed, other draws"]


def test_cli_check_of_a_broken_plugin_prints_fail_and_exits_1(monkeypatch, capsys):
    classes = {"transposed": Transposed, "draw-raises": DrawRaises, "returns-nan": ReturnsNaN}
    monkeypatch.setattr(
        registry_module.importlib.metadata,
        "entry_points",
        lambda group: (
            [
                SimpleNamespace(
                    name=name,
                    value=f"broken.mod:{cls.__name__}",
                    dist=SimpleNamespace(name="broken-pkg", version="0.1"),
                    load=lambda cls=cls: cls,
                )
                for name, cls in classes.items()
            ]
            if group == registry_module.GROUP
            else []
        ),
    )
    monkeypatch.delenv("ESTBENCH_DISABLE_PLUGINS", raising=False)
    registry_module._default_registry.cache_clear()
    try:
        assert main(["check", "transposed,draw-raises,returns-nan", "--draws", "500"]) == 1
    finally:
        registry_module._default_registry.cache_clear()
    out, err = capsys.readouterr()
    assert "transposed: FAIL" in out and "[FAIL] draws: raised EstimatorError" in out
    assert "_draw returned [45, 16] for 16 draws; expected shape [16, 45]" in out
    assert "draw-raises: FAIL" in out and "[FAIL] draws: raised RuntimeError" in out
    assert "returns-nan: FAIL" in out and "[FAIL] finite: " in out
    assert "Traceback" not in out + err
