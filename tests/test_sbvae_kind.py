"""The ``sbvae`` problem kind through the harness: case parsing, checkpoints (issue 16's format,
recognised by its keys), ``estbench exact --json``, training with the exact gradient, and a small
end-to-end run with a report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from estbench.cases import CaseError, parse_case
from estbench.checkpoint import checkpoint_kind
from estbench.cli import main
from estbench.errors import CheckpointError
from estbench.kinds.sbvae import exact_elbo, exact_log_likelihood
from estbench.kinds.sbvae.checkpoint import load_sbvae_checkpoint, save_sbvae_checkpoint
from estbench.problem import get_kind

KIND = get_kind("sbvae")

CASE = """schema_version = 2
[model]
kind = "sbvae"
widths = [3]
data = "synthetic"
dim = 5
n_points = 20
{extra}
[measure]
estimators = ["vae-reinforce", "vae-disarm"]
draws = 200
M = [1, 10]
bootstrap = 0
"""


def case(extra: str = "", tmp_path=None, name: str = "v"):
    text = CASE.format(extra=extra)
    path = tmp_path / f"{name}.toml" if tmp_path is not None else None
    if path is not None:
        path.write_text(text)
    return parse_case(text, name=name, path=path)


def test_model_table_reads_into_the_spec():
    spec = case('architecture = "nonlinear"\nhidden = [4, 3]\nscale = 0.5').model
    assert (spec.kind, spec.widths, spec.architecture, spec.hidden) == (
        "sbvae",
        (3,),
        "nonlinear",
        (4, 3),
    )
    assert (spec.data, spec.n_points, spec.dim, spec.scale) == ("synthetic", 20, 5, 0.5)
    assert case('architecture = "nonlinear"').model.hidden == (32,)  # the literature's 64-32-12


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('architecture = "deep"', r"model.architecture: expected one of 'linear', 'nonlinear', "),
        ("hidden = [4]", r"model.hidden: expected no hidden layers with architecture = \"linear\""),
        ('binarisation = "fixed"', r"model.binarisation: expected no binarisation with data"),
        (
            "hidden = [0]",
            r"model.hidden: expected a non-empty list of positive integers, got \[0\]",
        ),
        ('coding = "pm1"', r"model.coding: a key of problem kind '(sbn|weights)'"),
        ("scale = 0", r"model.scale: expected a number > 0, got 0"),
    ],
)
def test_mistakes_name_the_file_key_and_value(extra, message, tmp_path):
    with pytest.raises(CaseError, match=rf"^{tmp_path / 'v.toml'}: {message}"):
        case(extra, tmp_path)


def test_digits_limits_and_a_data_table_are_refused(tmp_path):
    text = CASE.replace('data = "synthetic"\ndim = 5\nn_points = 20\n', 'data = "digits"\n')
    (tmp_path / "d.toml").write_text(text.format(extra="n_points = 1798"))
    with pytest.raises(CaseError, match=r"d.toml: model.n_points: expected an integer in 1..1797"):
        parse_case(text.format(extra="n_points = 1798"), name="d", path=tmp_path / "d.toml")
    with pytest.raises(CaseError, match=r"model.dim: expected no dim with data = \"digits\""):
        parse_case(text.format(extra="dim = 3"), name="d")
    with pytest.raises(CaseError, match=r"<case v>: data: a VAE case names its data in \[model\]"):
        parse_case(CASE.format(extra="") + "[data]\nn = 10\n", name="v")


def test_case_data_and_initialisation_follow_the_seed():
    spec = case().model
    X0, Y0 = KIND.case_data(spec, 0)
    X1, _ = KIND.case_data(spec, 1)
    assert X0.shape == (20, 5) and Y0.shape == (20, 0) and not torch.equal(X0, X1)
    assert torch.equal(X0, KIND.case_data(spec, 0)[0])
    net, Y = KIND.initial(spec, (3,), X0, Y0, stored=False, offset=0)
    again, _ = KIND.initial(spec, (3,), X0, Y0, stored=False, offset=0)
    assert Y.shape == (20, 0) and torch.equal(net.flat(), again.flat())
    # the decoder's output bias starts at the logit of the pixel means
    m = X0.mean(0).clamp(1e-3, 1 - 1e-3)
    torch.testing.assert_close(net.params["p_b1"], torch.log(m / (1 - m)))
    digits = case().model.__class__(kind="sbvae", widths=(2,), binarisation="dynamic", n_points=7)
    Xd, _ = KIND.case_data(digits, 0)
    assert Xd.shape == (7, 64) and not torch.equal(Xd, KIND.case_data(digits, 1)[0])


def test_checkpoint_round_trip_and_recognition_by_keys(tmp_path):
    pr = KIND.check_problems()[1]  # two latent layers
    path = tmp_path / "v.npz"
    save_sbvae_checkpoint(path, pr.model, pr.X)
    net, X = load_sbvae_checkpoint(path)
    assert torch.equal(net.flat(), pr.model.flat()) and torch.equal(X, pr.X)
    assert checkpoint_kind(path) == "sbvae"  # by the marker
    # issue 16's format as someone else writes it: the keys alone, no marker, X as floats
    plain = {k: v.numpy() for k, v in pr.model.params.items()} | {"X": pr.X.numpy()}
    np.savez(tmp_path / "plain.npz", **plain)
    assert checkpoint_kind(tmp_path / "plain.npz") == "sbvae"
    net2, _ = load_sbvae_checkpoint(tmp_path / "plain.npz")
    assert torch.equal(net2.flat(), pr.model.flat()) and net2.latent == (2, 2)
    # the nonlinear model's hidden layers round-trip too
    nl = KIND.check_problems()[2]
    save_sbvae_checkpoint(tmp_path / "nl.npz", nl.model, nl.X)
    assert load_sbvae_checkpoint(tmp_path / "nl.npz")[0].hidden == (3,)
    # negative control: an SBN checkpoint is not recognised as a VAE's
    assert checkpoint_kind("seed:chk-1") == "sbn"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda a: a.update(X=a["X"] * 0.5),
            r"key X must hold 0 or 1, found 0.5 at index \[0, 0\]",
        ),
        (lambda a: a.update(q_W1=a["q_W1"].T), r"parameter q_W1 has shape \[3, 2\], expected"),
        (lambda a: a.update(q_W3=a["q_W1"]), r"missing key q_b2 \(its layer has other keys\)"),
        (lambda a: a.update(p_Wx=a["q_W1"]), r"unexpected key 'p_Wx'"),
        (
            lambda a: a["p_b1"].__setitem__(0, np.nan),
            r"key p_b1: expected finite numbers, found nan",
        ),
    ],
)
def test_bad_checkpoints_name_the_file_and_key(change, message, tmp_path):
    pr = KIND.check_problems()[0]
    arrays = {k: v.numpy().copy() for k, v in pr.model.params.items()} | {"X": pr.X.numpy()}
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CheckpointError, match=rf"^{tmp_path / 'bad.npz'}: {message}"):
        load_sbvae_checkpoint(tmp_path / "bad.npz")


def test_exact_cli_prints_loss_log_likelihood_and_a_vector_per_key(tmp_path, capsys):
    pr = KIND.check_problems()[1]
    plain = {k: v.numpy() for k, v in pr.model.params.items()} | {"X": pr.X.numpy()}
    np.savez(tmp_path / "v.npz", **plain)
    assert main(["exact", "--checkpoint", str(tmp_path / "v.npz"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ex = exact_elbo(pr.model, pr.X)
    assert out["loss"] == pytest.approx(float(ex.loss), rel=1e-14)
    ll = float(exact_log_likelihood(pr.model, pr.X).mean())
    assert out["log_likelihood"] == pytest.approx(ll, rel=1e-14)
    assert out["log_likelihood"] > -out["loss"]  # log p(x) >= ELBO
    assert list(out["grad"]) == pr.model.keys
    for key, v in out["grad"].items():
        np.testing.assert_allclose(v, ex.grads[key].reshape(-1).numpy(), rtol=1e-13, atol=1e-15)
    # an option a VAE does not have is refused, naming it
    assert main(["exact", "--checkpoint", str(tmp_path / "v.npz"), "--coding", "pm1"]) == 1
    assert "--coding pm1: a VAE checkpoint has no coding setting" in capsys.readouterr().err


def test_training_with_the_exact_gradient_raises_the_elbo():
    from estbench.cases import TrainingSpec
    from estbench.training import train

    spec = case().model
    X, labels = KIND.case_data(spec, 0)
    net, Y = KIND.initial(spec, (3,), X, labels, stored=False, offset=0)
    t = TrainingSpec(method="exact", optimizer="adam", lr=0.05, batch_size=5, epochs=20)
    snaps = train(net, X, Y, TrainingSpec(**{**t.__dict__, "measure_at": (0, 20)}), kind=KIND)
    before, after = (float(exact_elbo(snaps[e], X, with_grad=False).loss) for e in (0, 20))
    assert after < before - 0.5  # the negative ELBO falls
    # the parameters pair up and round-trip through the training loop's view
    thetas, biases = KIND.parameters(net)
    assert torch.equal(KIND.with_parameters(net, thetas, biases).flat(), net.flat())
    assert sum(t.numel() + b.numel() for t, b in zip(thetas, biases, strict=True)) == len(
        net.flat()
    )


def test_a_small_case_runs_end_to_end_with_a_report(tmp_path):
    """Smoke test of the whole path (run, results, report) plus its numbers: the exact section
    holds the loss and log p(x) of the point, and the blocks are encoder and decoder."""
    from estbench.runner import run_case

    c = case(
        '[training]\nmethod = "exact"\noptimizer = "adam"\nlr = 0.05\nepochs = 3\n'
        "measure_at = [0, 3]\n",
        tmp_path,
    )
    report = run_case(c, tmp_path / "out", progress=False, log=lambda _: None)
    assert report.points_done == 2 and not report.errors
    results = json.loads((tmp_path / "out" / "v" / "results.json").read_text())
    exact = results["points"][0]["exact"]
    assert exact["kind"] == "sbvae" and exact["log_likelihood"] >= exact["elbo"]
    assert exact["loss"] == pytest.approx(-exact["elbo"])
    names = [b[0] for b in exact["blocks"]]
    assert names == ["enc1", "dec1", "prior", "encoder", "decoder"]
    from estbench.report import render_report

    render_report(tmp_path / "out" / "v")
    text = (tmp_path / "out" / "v" / "report.md").read_text()
    assert "enc1: q(z1 | x)" in text and "vae-disarm" in text
    # The exact-reference table shows the kind's scalars (Reference.columns) beside the loss:
    # the mean ELBO, log p(x) and their gap at each point, as results.json holds them.
    assert exact["columns"] == [
        ["elbo", "mean ELBO"],
        ["log_likelihood", "mean log p(x)"],
        ["kl_gap", "mean KL(q ‖ p(z|x))"],
    ]
    table = text.split("## Exact reference")[1].split("\n## ")[0]
    header = next(line for line in table.splitlines() if line.startswith("| point"))
    # (markdown escapes the bar inside the label)
    assert "| exact loss | mean ELBO | mean log p(x) | mean KL(q ‖ p(z\\|x)) | ‖g‖" in header
    for point in results["points"]:
        ex = point["exact"]
        row = next(line for line in table.splitlines() if f"| {ex['loss']:.6g} |" in line)
        cells = [ex["elbo"], ex["log_likelihood"], ex["kl_gap"]]
        assert f"| {ex['loss']:.6g} | " + " | ".join(f"{v:.6g}" for v in cells) + " |" in row


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('[measure]\nestimators = ["vae-reinforce", "psa"]', "measure.estimators[1]"),
        (
            '[training]\nmethod = "sa"\nepochs = 1\n[measure]\nestimators = ["vae-st"]',
            "training.method",
        ),
    ],
)
def test_an_estimator_the_kind_refuses_is_a_one_line_error_with_the_reason(table, key, tmp_path):
    """PSA and SA are derived for a loss of the last binary layer alone (ProblemKind.refusals):
    asking for one in a VAE case names the file, the key, the estimator and the reason."""
    text = CASE.split("[measure]")[0].format(extra="") + table + "\ndraws = 10\n"
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(CaseError) as info:
        parse_case(text, name="r", path=path)
    message = str(info.value)
    name = "psa" if "psa" in table else "sa"
    assert message.startswith(
        f"{path}: {key}: estimator '{name}' is refused for problem kind 'sbvae'"
    )
    assert "last binary layer alone" in message and "\n" not in message


def test_the_cli_refuses_them_too_and_list_states_the_reasons(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ESTBENCH_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "v.toml"
    path.write_text(CASE.format(extra=""))
    assert main(["run", str(path), "--estimators", "psa", "--out", str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err
    assert "estimator 'psa' is refused for problem kind 'sbvae'" in err
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    tail = out.split("Refused (the derivation")[1]
    assert "  psa for sbvae: PSA (Shekhovtsov, Yanush & Flach" in tail
    assert "  sa for sbvae: SA" in tail
    assert KIND.refusals().keys() == {"psa", "sa"}
    assert get_kind("sbn").refusals() == {} and get_kind("weights").refusals() == {}


def test_the_report_tests_the_published_ordering_with_its_interval(tmp_path):
    """DisARM's published ordering (below LOORF = vae-rloo with K = 2, and ARM, at equal
    evaluations; Dong, Mnih & Tucker 2020) is recorded by the estimator (``variance_claims``)
    and stated per block by the report: the ratio of variances per evaluation with its 95 %
    interval and the verdict, from results.csv's variance rows."""
    import math

    import pandas as pd

    from estbench.report import render_report
    from estbench.runner import run_case

    text = CASE.format(extra="").replace(
        '["vae-reinforce", "vae-disarm"]', '["vae-disarm", "vae-rloo", "vae-arm"]'
    )
    path = tmp_path / "o.toml"
    path.write_text(text)
    c = parse_case(text, name="o", path=path)
    run_case(c, tmp_path / "out", progress=False, log=lambda _: None)
    results = json.loads((tmp_path / "out" / "o" / "results.json").read_text())
    info = results["points"][0]["estimators"]["vae-disarm"]
    assert [c[0] for c in info["variance_claims"]] == ["vae-rloo", "vae-arm"]
    render_report(tmp_path / "out" / "o")
    report = (tmp_path / "out" / "o" / "report.md").read_text()
    line = next(ln for ln in report.splitlines() if "`vae-disarm` below `vae-rloo`" in ln)
    df = pd.read_csv(tmp_path / "out" / "o" / "results.csv")
    var = df[(df.metric == "variance") & (df.layer == "encoder")].set_index("estimator")
    ratio = var.loc["vae-disarm", "value"] / var.loc["vae-rloo", "value"]  # 2 evaluations each
    half = 1.96 * math.hypot(
        *(var.loc[e, "se"] / var.loc[e, "value"] for e in ("vae-disarm", "vae-rloo"))
    )
    verdict = (
        "holds"
        if ratio * math.exp(half) < 1
        else "reversed"
        if ratio / math.exp(half) > 1
        else "not resolved"
    )
    low, high = ratio * math.exp(-half), ratio * math.exp(half)
    assert f"encoder {ratio:.3g} [{low:.3g}, {high:.3g}] {verdict}" in line
    assert "(2 and 2 evaluations per draw)" in line
    assert any("`vae-disarm` below `vae-arm`" in ln for ln in report.splitlines())
    # The claim is about the encoder (``VarianceClaim.blocks``): counted there, the decoder's
    # blocks shown apart.
    assert [c[2] for c in info["variance_claims"]] == [["enc*"], ["enc*"]]
    assert "(the claim's blocks: enc*)" in line
    counted, apart = line.split("outside the claim (not counted): ")
    assert "encoder " in counted and "enc1 " in counted and "dec1 " not in counted
    assert "dec1 " in apart and "decoder " in apart and "prior " in apart
    n_enc = sum(1 for b in ("enc1 ", "enc2 ", "encoder ") if b in counted)
    assert f"of {n_enc} blocks" in line or "in every block" in line
