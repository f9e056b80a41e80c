"""The registry: spelling of variants, clear errors, plugins (loading, failures, duplicates)."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import pytest

from estbench.estimators import (
    DuplicateEstimatorError,
    Estimator,
    EstimatorError,
    Hyper,
    Registry,
    build_registry,
    parse_spec,
    split_specs,
)
from estbench.estimators import registry as registry_module
from estbench.kinds.sbn.estimators.score import Reinforce


def test_parse_specs():
    assert parse_spec("concrete(tau=0.1)") == ("concrete", {"tau": 0.1})
    assert parse_spec(" rloo( k = 4 ) ") == ("rloo", {"k": 4})
    assert parse_spec("reinforce(baseline=frozen, c='x')") == (
        "reinforce",
        {"baseline": "frozen", "c": "x"},
    )
    assert split_specs("st,psa,concrete(tau=0.1),reinforce(baseline=constant, c=1)") == [
        "st",
        "psa",
        "concrete(tau=0.1)",
        "reinforce(baseline=constant, c=1)",
    ]
    with pytest.raises(EstimatorError, match="parameters are key=value"):
        parse_spec("concrete(0.1)")


def test_variants_are_configured_instances():
    reg = build_registry(plugins=False)
    est = reg.create("reinforce(baseline=constant, c=2)")
    assert isinstance(est, Reinforce)
    assert est.params == {"baseline": "constant", "c": 2.0, "warmup": 100}
    assert est.spec == "reinforce(baseline=constant, c=2.0)"
    assert reg.create("reinforce").spec == "reinforce"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("reinforc", r"unknown estimator 'reinforc'; did you mean reinforce\b"),
        (
            "reinforce(baseline=frozn)",
            r"baseline must be one of none, constant, oracle, frozen; got 'frozn'",
        ),
        ("reinforce(basline=frozen)", r"unknown parameter 'basline'; did you mean baseline\?"),
        ("reinforce(warmup=0)", r"warmup must be >= 1, got 0"),
        ("reinforce(c=abc)", r"parameter c must be float, got 'abc'"),
    ],
)
def test_bad_specs_are_clear_errors(spec, message):
    with pytest.raises(EstimatorError, match=message):
        build_registry(plugins=False).create(spec)


@dataclass
class FakeDist:
    name: str
    version: str


class FakeEntryPoint:
    def __init__(self, name: str, value: str, dist: str, loader):  # noqa: ANN001
        self.name, self.value, self.dist, self._loader = name, value, FakeDist(dist, "1.2"), loader

    def load(self):  # noqa: ANN201
        return self._loader()


def _with_entry_points(monkeypatch, eps):  # noqa: ANN001
    monkeypatch.setattr(
        registry_module.importlib.metadata,
        "entry_points",
        lambda group: eps if group == registry_module.GROUP else [],
    )


class Renamed(Reinforce):
    name = "my-reinforce"


class Clash(Reinforce):
    name = "st"


def _broken():  # noqa: ANN202
    raise ImportError("No module named 'scipy_special_thing'")


def test_plugins_load_and_a_broken_one_is_reported(monkeypatch):
    _with_entry_points(
        monkeypatch,
        [
            FakeEntryPoint("my-reinforce", "pkg.mod:Renamed", "good-pkg", lambda: Renamed),
            FakeEntryPoint("broken", "bad.mod:X", "bad-pkg", _broken),
            FakeEntryPoint("not-a-class", "pkg.mod:f", "odd-pkg", lambda: len),
            FakeEntryPoint("other-name", "pkg.mod:Renamed", "misnamed-pkg", lambda: Renamed),
        ],
    )
    reg = build_registry(plugins=True)
    assert reg["my-reinforce"].source == "good-pkg" and reg["my-reinforce"].version == "1.2"
    assert "reinforce" in reg and "st" in reg  # built-ins keep working
    problems = "\n".join(reg.problems)
    assert (
        "plugin 'broken' from package bad-pkg 1.2 failed to import (bad.mod:X): ImportError"
        in problems
    )
    assert "odd-pkg" in problems and "not an estbench Estimator subclass" in problems
    assert (
        "misnamed-pkg" in problems
        and "differs from the estimator's name 'my-reinforce'" in problems
    )


def test_a_plugin_taking_a_builtin_name_is_skipped_and_reported(monkeypatch):
    _with_entry_points(
        monkeypatch, [FakeEntryPoint("st", "clash.mod:Clash", "clash-pkg", lambda: Clash)]
    )
    reg = build_registry(plugins=True)
    assert reg["st"].source == "estbench" and reg["st"].cls is not Clash
    (problem,) = reg.problems
    assert "plugin 'st' from package clash-pkg 1.2 (clash.mod:Clash) is skipped" in problem
    assert "belongs to estbench's built-in" in problem and "StraightThrough" in problem
    with pytest.raises(DuplicateEstimatorError) as info:  # registering by hand still raises
        reg.register(Clash, source="clash-pkg")
    msg = str(info.value)
    assert "'st' is registered twice: by estbench" in msg and "by clash-pkg" in msg
    assert "ESTBENCH_DISABLE_PLUGINS=1" in msg


class Renamed2(Reinforce):
    name = "my-reinforce"


def test_two_plugins_claiming_one_name_are_both_skipped(monkeypatch):
    _with_entry_points(
        monkeypatch,
        [
            FakeEntryPoint("my-reinforce", "a.mod:Renamed", "a-pkg", lambda: Renamed),
            FakeEntryPoint("my-reinforce", "b.mod:Renamed2", "b-pkg", lambda: Renamed2),
            FakeEntryPoint("my-reinforce", "c.mod:Renamed", "c-pkg", lambda: Renamed),
        ],
    )
    reg = build_registry(plugins=True)
    assert "my-reinforce" not in reg and "reinforce" in reg
    (problem,) = reg.problems
    assert "'my-reinforce' is claimed by several plugins" in problem
    assert all(f"{p}-pkg" in problem for p in "abc") and "none of them is loaded" in problem


def _bad_class(**attrs):  # noqa: ANN003, ANN202
    return type("Bad", (Reinforce,), {"name": "bad", **attrs})


class Abstract(Estimator):
    name = "abstract"
    family = "score-function"
    unbiased = "yes"
    reference = "test"


class NoReference(Reinforce):
    name = "no-reference"
    reference = None  # type: ignore[assignment]


class FailsToConstruct(Reinforce):
    name = "fails-to-construct"

    def __init__(self, **params):  # noqa: ANN003
        raise RuntimeError("needs a GPU")


class SkipsBaseInit(Reinforce):
    """Forgets ``super().__init__``: no ``params``, so its ``spec`` fails."""

    name = "skips-base-init"

    def __init__(self, **params):  # noqa: ANN003
        self.extra = params


@pytest.mark.parametrize(
    ("loader", "fault"),
    [
        (lambda: _bad_class(name="Bad Name"), "name 'Bad Name' must match [a-z][a-z0-9-]*"),
        (lambda: _bad_class(name=3), "name 3 must match"),
        (lambda: _bad_class(family="magic"), "family 'magic' must be one of score-function"),
        (
            lambda: _bad_class(problem="graphs"),
            "problem 'graphs' must be one of bernoulli-toy, sbn, sbvae, weights",
        ),
        (lambda: _bad_class(unbiased=True), "unbiased True must be a string"),
        (lambda: NoReference, "reference None must be a string"),
        (lambda: _bad_class(stochastic="yes"), "stochastic 'yes' must be True or False"),
        (lambda: _bad_class(hyperparameters=[1.0]), "hyperparameters [1.0] must be a dict"),
        (lambda: _bad_class(hyperparameters={"tau": 0.5}), "'tau' must be an estbench Hyper"),
        (lambda: _bad_class(hyperparameters={"t au": Hyper(1.0)}), "must be a Python identifier"),
        (
            lambda: _bad_class(hyperparameters={"tau": Hyper(-1.0, minimum=0.0)}),
            "hyperparameter 'tau': its default -1.0 is invalid (bad: parameter tau must be >= 0",
        ),
        (
            lambda: _bad_class(hyperparameters={"tau": Hyper(1.0, minimum="0")}),
            "hyperparameter 'tau': its default 1.0 is invalid",
        ),
        (
            lambda: _bad_class(hyperparameters={"k": Hyper(1, kind="int")}),
            "hyperparameter 'k': kind 'int' must be a type",
        ),
        (lambda: Abstract, "abstract methods not implemented: _draw"),
        (lambda: FailsToConstruct, "default parameters: RuntimeError: needs a GPU"),
        (lambda: SkipsBaseInit, "default parameters: AttributeError: "),
        (
            lambda: _bad_class(evals_per_draw=lambda self, model: model.no_such_thing),
            "evals_per_draw or claim fails on the kind's reference network: AttributeError",
        ),
        (
            lambda: _bad_class(evals_per_draw=lambda self, model: float("nan")),
            "evals_per_draw gives nan on the reference network, expected a number >= 0",
        ),
        (
            lambda: _bad_class(unbiased_layers=lambda self, model: {0, 4}),
            "overrides unbiased_layers; override claim(model) instead",
        ),
        (
            lambda: _bad_class(claim=lambda self, model: "mostly"),
            "claim gives 'mostly', expected one of 'yes', 'head only', 'last layer only', 'no'",
        ),
        (
            lambda: _bad_class(unbiased="yes, except at depth 2"),
            "unbiased 'yes, except at depth 2' must be one of 'yes', 'head only'",
        ),
        (lambda: Reinforce(), "<estimator reinforce> is not an estbench Estimator subclass"),
        (lambda: _bad_class(verified=3), "verified 3 must be a string"),
        (
            lambda: _bad_class(tests="tests/test_mine.py"),
            "tests 'tests/test_mine.py' must be a tuple of test-file paths",
        ),
        (lambda: _bad_class(tests=(1,)), "tests (1,) must be a tuple of test-file paths"),
    ],
)
def test_a_plugin_with_bad_metadata_is_skipped_and_reported(monkeypatch, loader, fault):
    _with_entry_points(
        monkeypatch,
        [
            FakeEntryPoint("bad", "bad.mod:Bad", "bad-pkg", loader),
            FakeEntryPoint("my-reinforce", "pkg.mod:Renamed", "good-pkg", lambda: Renamed),
        ],
    )
    reg = build_registry(plugins=True)
    assert "my-reinforce" in reg and "reinforce" in reg and "bad" not in reg
    (problem,) = reg.problems
    assert problem.startswith("plugin 'bad' from package bad-pkg 1.2 (bad.mod:Bad) is skipped: ")
    assert fault in problem, problem
    with pytest.raises(EstimatorError, match=re.escape(fault)):  # registering by hand raises
        Registry().register(loader())


def test_cli_warns_about_a_bad_plugin_and_keeps_working(monkeypatch, capsys):
    from estbench.cli import main

    _with_entry_points(
        monkeypatch,
        [
            FakeEntryPoint("bad", "bad.mod:Bad", "bad-pkg", lambda: _bad_class(family="magic")),
            FakeEntryPoint("st", "clash.mod:Clash", "clash-pkg", lambda: Clash),
        ],
    )
    monkeypatch.delenv("ESTBENCH_DISABLE_PLUGINS", raising=False)
    registry_module._default_registry.cache_clear()
    try:
        assert main(["list"]) == 0
        out, err = capsys.readouterr()
        assert "estbench: warning: plugin 'bad' from package bad-pkg 1.2" in err
        assert "family 'magic' must be one of" in err
        assert "estbench: warning: plugin 'st' from package clash-pkg 1.2" in err
        assert "reinforce" in out and "Traceback" not in err
        with pytest.raises(SystemExit) as info:  # --version reads the registry too
            main(["--version"])
        assert info.value.code == 0 and "estbench " in capsys.readouterr().out
    finally:
        registry_module._default_registry.cache_clear()


def test_a_spec_that_is_neither_a_name_nor_an_estimator_is_a_clear_error():
    with pytest.raises(EstimatorError, match=r"or an Estimator instance, got int 3"):
        build_registry(plugins=False).create(3)  # type: ignore[arg-type]


def test_a_constructor_failing_on_parameters_names_the_estimator():
    class Picky(Reinforce):
        name = "picky"

        def __init__(self, **params):  # noqa: ANN003
            if params:
                raise ValueError("no parameters today")
            super().__init__()

    reg = Registry()
    reg.register(Picky, source="picky-pkg")
    with pytest.raises(EstimatorError, match=r"picky \(from picky-pkg\): creating it with "):
        reg.create("picky(baseline=oracle)")


def test_disable_plugins_env(monkeypatch):
    _with_entry_points(
        monkeypatch, [FakeEntryPoint("my-reinforce", "m:R", "good-pkg", lambda: Renamed)]
    )
    monkeypatch.setenv("ESTBENCH_DISABLE_PLUGINS", "1")
    assert "my-reinforce" not in build_registry()
    monkeypatch.setenv("ESTBENCH_DISABLE_PLUGINS", "0")
    assert "my-reinforce" in build_registry()


def test_registry_is_a_sorted_mapping_with_validated_names():
    reg = Registry()
    reg.register(Reinforce)

    class Bad(Reinforce):
        name = "Bad Name"

    with pytest.raises(EstimatorError, match="must match"):
        reg.register(Bad)
    assert list(reg) == ["reinforce"] and len(reg) == 1
    reg.unregister("reinforce")
    assert "reinforce" not in reg


def test_what_verifies_an_estimator_is_stated_per_class_not_inherited():
    """``verified`` and ``tests`` are optional (a plugin may state none) and not inherited: a
    subclass is another implementation, and its parent's tests do not test it."""

    class Sub(Reinforce):
        name = "sub"

    class Own(Reinforce):
        name = "own"
        verified = "exact: its own test"
        tests = ["tests/test_own.py"]  # type: ignore[assignment]  # a list is accepted too

    assert Reinforce.verified and Reinforce.tests == (
        "tests/test_estimators_core.py",
        "tests/test_score_estimators.py",
    )
    assert Sub.verified == "" and Sub.tests == ()
    reg = Registry()
    reg.register(Sub)
    reg.register(Own)
    assert reg["own"].cls.verified == "exact: its own test"


def test_example_plugin_is_installed_and_listed():
    """CI installs examples/estbench-example-plugin; it is discovered through its entry point."""
    reg = build_registry(plugins=True)
    entry = reg["reinforce-batch-baseline"]
    assert entry.source == "estbench-example-plugin" and not reg.problems
    assert sys.modules[entry.cls.__module__].__name__ == "estbench_example.estimators"


def test_weight_estimators_are_builtins_with_their_problem_kind():
    reg = build_registry(plugins=False)
    names = (
        "weight-reinforce",
        "weight-st",
        "binaryconnect",
        "weight-arm",
        "weight-disarm",
        "weight-concrete",
        "weight-st-gs",
        "weight-gumbel-rao",
        "weight-arms",
        "weight-carms",
        "weight-reinmax",
        "weight-gst",
        "weight-dcv",
        "weight-rodeo",
    )
    for name in names:
        assert reg[name].source == "estbench" and reg[name].cls.problem == "weights"
    assert reg["reinforce"].cls.problem == "sbn"
    assert reg.create("weight-st(wrt=mu)").wrt == "mu" and reg.create("weight-arm").wrt == "eta"

    class Odd(Reinforce):
        name = "odd"
        problem = "graphs"

    with pytest.raises(
        EstimatorError, match="problem 'graphs' must be one of bernoulli-toy, sbn, sbvae, weights"
    ):
        Registry().register(Odd)
