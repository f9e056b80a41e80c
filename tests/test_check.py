"""The public conformance check, its negative controls, and the list/check commands."""

from __future__ import annotations

import json

import pytest
import torch

from estbench.cli import main
from estbench.estimators import Estimator
from estbench.estimators.ops import assemble, head_grad, layer_terms, sample_path
from estbench.estimators.score import Reinforce
from estbench.estimators.straight_through import StraightThrough
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


def test_cli_check(capsys):
    assert main(["check", "st,reinforce(baseline=oracle)"]) == 0
    out = capsys.readouterr().out
    assert "st: PASS" in out and "reinforce(baseline=oracle): PASS" in out
    assert main(["check", "nonsense"]) == 1
    assert "unknown estimator 'nonsense'" in capsys.readouterr().err
