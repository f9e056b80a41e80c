"""Stochastic-weight cases end to end: validation, the runner's reference by ``wrt``, the layer
blocks, results.json, the report."""

from __future__ import annotations

import pytest

from estbench.api import load_results
from estbench.cases import CaseError, load_case, parse_case, with_overrides
from estbench.estimators.registry import get_estimator
from estbench.report import render_report
from estbench.report.figures import layer_title
from estbench.report.load import load_report_data
from estbench.results import COLUMNS, load_json
from estbench.runner import run_case

WEIGHTS = """
schema_version = 1
[data]
kind = "xor"
n = 4
seed = 3
[model]
weights = "bernoulli"
activation = "stochastic"
noise = "logistic"
widths = [2, 2]
coding = "pm1"
head = "logistic"
seed = 2
[measure]
estimators = ["weight-reinforce", "weight-st", "weight-st(wrt=mu)", "weight-arm"]
draws = 400
M = [1, 10]
bootstrap = 10
"""


def write(tmp_path, text):  # noqa: ANN001, ANN201
    path = tmp_path / "w.toml"
    path.write_text(text)
    return path


def test_shipped_weight_cases_validate():
    for name, depths, widths in (
        ("weights-sign", {1, 2, 3, 4}, {2, 4, 6}),
        ("weights-stochastic", {2, 3, 4}, {2, 3, 5}),
    ):
        case = load_case(name)  # across depth and width: the whole grid
        points = case.points()
        assert case.model.kind == "weights" and len(points) == len(depths) * len(widths)
        assert {(p["depth"], p["width"]) for p in points} == {
            (d, w) for d in depths for w in widths
        }
        assert all(get_estimator(e).problem == "weights" for e in case.measure.estimators)
    assert load_case("weights-sign").model.activation_name == "sign"
    assert load_case("default").model.kind == "sbn"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('"weight-arm"', '"st"'), "estimator 'st' handles an SBN with real weights (problem = "),
        (('weights = "bernoulli"', 'weights = "gaussian"'), "model.weights: expected one of"),
        (('activation = "stochastic"', 'activation = "tanh"'), "model.activation: expected"),
        (("seed = 2", 'seed = 2\ninit = "ap2"'), "model.init: expected 'random'"),
        (
            ("[measure]", '[training]\nepochs = 3\nmethod = "st"\n[measure]'),
            "training.method: estimator 'st' handles an SBN with real weights (problem = 'sbn')",
        ),
        (("widths = [2, 2]", "widths = [2]"), "model.depth: with a real first layer"),
        (
            ("[measure]", "[training]\nepochs = 3\nmeasure_at = [5]\n[measure]"),
            "training.measure_at: expected a list of epochs in 0..3, got [5]",
        ),
        (("seed = 2", "seed = 2\neta_scale = 0"), "model.eta_scale: expected a number > 0"),
    ],
)
def test_weight_case_mistakes_name_file_key_and_expected(tmp_path, change, message):
    path = write(tmp_path, WEIGHTS.replace(*change))
    with pytest.raises(CaseError) as info:
        load_case(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_weight_keys_need_a_weights_model_and_vice_versa(tmp_path):
    text = WEIGHTS.replace('weights = "bernoulli"\n', "").replace(
        "estimators = [", "estimators = ['st', "
    )
    with pytest.raises(CaseError, match=r"model.activation: a key of problem kind 'weights'"):
        load_case(write(tmp_path, text))
    sbn = "schema_version = 1\n[model]\nwidths = [2]\n[measure]\nestimators = ['weight-st']\n"
    with pytest.raises(CaseError, match=r"'weight-st' handles an SBN with Bernoulli weights"):
        parse_case(sbn, name="x")
    # A Bernoulli first layer makes depth 1 a weights model.
    ok = WEIGHTS.replace("widths = [2, 2]", 'widths = [2]\nfirst_layer = "bernoulli"')
    assert parse_case(ok, name="ok").model.pair_kinds(1) == ("bernoulli", "real")


def test_estimators_override_is_checked_against_the_model_kind(tmp_path):
    case = with_overrides(parse_case(WEIGHTS, name="w"), estimators=("reinforce",))
    with pytest.raises(CaseError, match="estimator 'reinforce' handles an SBN"):
        run_case(case, tmp_path, progress=False)


def test_weight_case_runs_end_to_end_against_the_right_target(tmp_path):
    report = run_case(parse_case(WEIGHTS, name="w"), tmp_path, progress=False)
    assert not report.errors and not report.flags
    text = (tmp_path / "w" / "results.csv").read_text()
    assert text.splitlines()[0] == ",".join(COLUMNS)
    df = load_results(tmp_path / "w")
    layers = {"layer0", "layer1", "layer1.W", "layer1.b", "layer2", "all"}
    assert set(df["layer"]) == layers
    rb = df[df["metric"] == "rel_bias"].set_index(["estimator", "layer"])
    for layer in layers:  # 2^(4 weights + 4 states) configurations: exact moments
        assert rb.loc[("weight-reinforce", layer), "method"] == "exact"
        assert rb.loc[("weight-reinforce", layer), "value"] < 1e-9
    for est in ("weight-st", "weight-st(wrt=mu)"):  # ST: biased below the head, exact there
        assert rb.loc[(est, "layer1.W"), "value"] > 1e-3
        assert rb.loc[(est, "layer0"), "value"] > 1e-3
        assert rb.loc[(est, "layer2"), "value"] < 1e-9
    assert rb.loc[("weight-arm", "all"), "method"] == "mc"
    meta = load_json(tmp_path / "w" / "results.json")
    point = meta["points"][0]
    assert point["estimators"]["weight-st(wrt=mu)"]["wrt"] == "mu"
    assert point["estimators"]["weight-st"]["wrt"] == "eta"
    assert point["estimators"]["weight-st"]["claimed_unbiased"] == ["layer2"]
    assert "layer1.b" in point["estimators"]["weight-reinforce"]["claimed_unbiased"]
    ex = point["exact"]
    assert ex["kinds"] == ["real", "bernoulli", "real"] and ex["activation"] == "logistic"
    # wrt = mu differs from eta only in the Bernoulli weight block.
    assert ex["grad_norm_mu"]["layer1.W"] != ex["grad_norm"]["layer1.W"]
    assert ex["grad_norm_mu"]["layer1.b"] == ex["grad_norm"]["layer1.b"]
    # The report: weight and activation blocks side by side, titled by what they are.
    files = render_report(tmp_path / "w")
    data = load_report_data(tmp_path / "w")
    p = data.points[0]
    assert p.layers == ("layer0", "layer1", "layer1.W", "layer1.b", "layer2", "all")
    titles = [layer_title(data, p, ly) for ly in p.layers]
    assert titles == [
        "layer0 (real W + b)",
        "layer1 (Bernoulli η + b)",
        "layer1.W (Bernoulli η)",
        "layer1.b (b, stochastic units)",
        "layer2 (head)",
        "all binary layers",
    ]
    assert "layer1.W" in files.markdown.read_text()


def test_sign_activations_leave_out_zero_gradient_blocks(tmp_path):
    text = WEIGHTS.replace('activation = "stochastic"', 'activation = "sign"').replace(
        "widths = [2, 2]", 'widths = [2, 2]\nfirst_layer = "bernoulli"'
    )
    run_case(parse_case(text, name="s"), tmp_path, progress=False)
    df = load_results(tmp_path / "s")
    # The biases feed signs: exact gradient 0, so layerk.b is not reported.
    assert set(df["layer"]) == {"layer0", "layer0.W", "layer1", "layer1.W", "layer2", "all"}
    assert df["error"].isna().all()
