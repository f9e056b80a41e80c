"""Case files: every shipped case validates, and each kind of mistake is a clear error."""

from __future__ import annotations

import pytest

from estbench.cases import CASES_DIR, CaseError, load_case, parse_case

MINIMAL = """
schema_version = 1
[model]
widths = [3, 3]
[measure]
estimators = ["st"]
"""


def test_shipped_cases_validate():
    names = sorted(p.stem for p in CASES_DIR.glob("*.toml"))
    assert {
        "default",
        "psa-5-5-5",
        "depth-sweep",
        "width-sweep",
        "temperature",
        "bernoulli-toy",
    } <= set(names)
    for name in names:
        load_case(name)


def test_shipped_sweeps_have_the_required_ranges():
    depth = load_case("depth-sweep")
    assert depth.sweep["depth"][0] == 1 and max(depth.sweep["depth"]) >= 12
    assert len({w for p in depth.points() for w in depth.widths_at(p)}) == 1
    width = load_case("width-sweep")
    assert min(width.sweep["width"]) == 2 and max(width.sweep["width"]) >= 11
    seed = load_case("psa-5-5-5")
    assert seed.sweep["checkpoint"] == (1, 100, 2000) and seed.measure.draws == 20000
    assert len(seed.measure.M) == 36


def test_minimal_case_defaults():
    case = parse_case(MINIMAL, name="mini")
    assert case.points() == [{}] and case.widths_at({}) == (3, 3)
    assert case.data.kind == "two-class" and case.model.coding == "01"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "schema_version = 3\n" + MINIMAL.split("\n", 2)[2],
            "schema_version: this estbench reads versions 1 and 2, the file has 3",
        ),
        (
            MINIMAL.replace("widths = [3, 3]", "widths = [3, 0]"),
            "model.widths: expected a non-empty list of positive integers, got [3, 0]",
        ),
        (
            MINIMAL.replace("widths = [3, 3]", "widths = [3, 3]\ncolor = 'red'"),
            "model.color: unknown key",
        ),
        (
            MINIMAL.replace("widths = [3, 3]", "widths = [3, 3]\nnoise = 'cauchy'"),
            "model.noise: expected one of 'logistic', 'gaussian', 'uniform', got 'cauchy'",
        ),
        (
            MINIMAL.replace('estimators = ["st"]', 'estimators = ["st", "concrete(tua=1)"]'),
            "measure.estimators[1]: concrete: unknown parameter 'tua'; did you mean tau?",
        ),
        (
            MINIMAL.replace('estimators = ["st"]', 'estimators = ["sst"]'),
            "measure.estimators[0]: unknown estimator 'sst'; did you mean st",
        ),
        (
            MINIMAL.replace('estimators = ["st"]', 'estimators = ["st"]\ndraws = "many"'),
            "measure.draws: expected an integer >= 10, got 'many'",
        ),
        (
            MINIMAL.replace("[measure]", "[training]\nepochs = 10\nmeasure_at = [20]\n[measure]"),
            "training.measure_at: expected a list of epochs in 0..10, got [20]",
        ),
        (
            MINIMAL.replace("[measure]", "[sweep]\ndepth = [1, 2]\n[measure]"),
            "model.widths: a sweep over depth or width needs model.width and model.depth",
        ),
        (
            MINIMAL.replace("[measure]", "[sweep]\ncheckpoint = [1]\n[measure]"),
            "sweep.checkpoint: needs a [training] table",
        ),
        (
            MINIMAL.replace("[measure]", "[data]\nkind = 'npz'\n[measure]"),
            "data.path: required key is missing",
        ),
        (
            "schema_version = 1\n[measure]\nestimators = ['st']\n",
            "model.widths: required key is missing",
        ),
        (MINIMAL + "\n[extra]\nx = 1\n", "extra: unknown key"),
        ("schema_version = 1\n[model\n", "not valid TOML"),
        (
            MINIMAL.replace("[measure]", "[measure]\nmetrics = ['rel_bias', 'accuracy']"),
            "measure.metrics: expected metric names among",
        ),
    ],
)
def test_mistakes_name_the_file_and_key(text, message, tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(CaseError) as info:
        load_case(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_name_key_must_match_the_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "other"\n' + MINIMAL)
    with pytest.raises(CaseError, match="name: expected 'mine' \\(the file name\\), got 'other'"):
        load_case(path)


def test_unknown_case_lists_the_shipped_ones():
    with pytest.raises(CaseError, match="unknown case 'nope'; shipped cases: .*default"):
        load_case("nope")


def test_overrides_apply_before_validation():
    over = {"measure.draws": 123, "measure.M": [1, 10, 100], "model.widths": [2, 2]}
    case = load_case("default", overrides=over)
    assert case.measure.draws == 123 and case.widths_at(case.points()[0]) == (2, 2)
    with pytest.raises(CaseError, match=r"measure.M: expected values <= measure.draws \(123\)"):
        load_case("default", overrides={"measure.draws": 123})
    assert "# overrides:" in case.text
    with pytest.raises(CaseError, match="measure.draws: expected an integer >= 10, got 1"):
        load_case("default", overrides={"measure.draws": 1})
