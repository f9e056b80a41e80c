"""The ``weights`` kind: SBNs whose weights are Bernoulli on {-1, +1}, P(W = +1) = F_w(eta), with
stochastic or sign activations (``estbench.kinds.weights``).

Its exact reference is a lattice DP over each unit's weighted input followed by the layer-wise
forward algorithm (``estbench.kinds.weights.exact``), in two parametrisations: the latent weights
``eta`` (the default) and the weight means ``mu`` = E W. A Bernoulli pair k < L is reported whole
(``layerk``) and as its weights (``layerk.W``) and biases (``layerk.b``); a block whose exact
gradient is 0 in every coordinate (with sign activations: the real parameters feeding a sign) is
left out, where relative metrics are undefined.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...cases import Case, CaseError, ModelSpec, Table
from ...problem import Block, Reference
from ...schema import Key
from ..layered import (
    LayeredKind,
    LayeredModelSpec,
    head_outputs,
    head_targets,
    layered_keys,
    layered_model_keys,
)

if TYPE_CHECKING:
    from torch import Tensor

    from . import WeightProblem, WeightSBN


@dataclass(frozen=True)
class WeightsModelSpec(LayeredModelSpec):
    """``[model]`` of a Bernoulli-weight SBN: ``LayeredModelSpec``'s keys (``init`` only
    "random": eta ~ N(0, eta_scale^2), real W ~ N(0, scale^2 / fan-in)), and

    * ``first_layer``: "real" or "bernoulli" (the hidden pairs are Bernoulli, the head real);
    * ``activation``: "stochastic" (units with ``noise``) or "sign" (deterministic);
    * ``eta_scale``: the spread of the initial latent weights;
    * ``weight_noise`` F_w: "logistic" (sigmoid), "gaussian" (probit) or "uniform" (hard
      sigmoid)."""

    init: str = "random"
    first_layer: str = "real"
    activation: str = "stochastic"
    eta_scale: float = 1.5
    weight_noise: str = "logistic"

    @property
    def activation_name(self) -> str:
        """The network's activation: a noise name, or ``"sign"``."""
        return "sign" if self.activation == "sign" else self.noise

    def pair_kinds(self, depth: int) -> tuple[str, ...]:
        """Per pair 0..L: Bernoulli hidden pairs, the first as ``first_layer``, a real head."""
        first = "bernoulli" if self.first_layer == "bernoulli" else "real"
        return (first, *["bernoulli"] * (depth - 1), "real")


def weight_blocks(problem: WeightProblem, gradients: dict[str, Tensor]) -> list[Block]:
    """Pair k whole, and for a Bernoulli pair k < L also ``layerk.W`` (eta_k, flattened first)
    and ``layerk.b``; then ``all``. Blocks whose exact gradient is 0 everywhere are left out."""
    m = problem.model
    act = "sign" if m.activation == "sign" else "stochastic"
    out: list[Block] = []
    start = 0
    for k, (W, size) in enumerate(zip(m.params, m.layer_sizes, strict=True)):
        name = f"layer{k}"
        if k == m.depth:
            label = f"{name} (head)"
        else:
            label = f"{name} ({'Bernoulli η' if m.kinds[k] == 'bernoulli' else 'real W'} + b)"
        out.append(Block(name, slice(start, start + size), label, (k,)))
        if m.kinds[k] == "bernoulli":
            w = slice(start, start + W.numel())
            out.append(Block(f"{name}.W", w, f"{name}.W (Bernoulli η)", (k,)))
            b = slice(start + W.numel(), start + size)
            out.append(Block(f"{name}.b", b, f"{name}.b (b, {act} units)", (k,)))
        start += size
    below = slice(0, start - m.layer_sizes[-1])
    out.append(Block("all", below, "all binary layers", tuple(range(m.depth))))
    return [b for b in out if all(bool(g[b.slice].abs().max() > 0) for g in gradients.values())]


class WeightsKind(LayeredKind["WeightProblem", "WeightSBN"]):
    """SBNs with Bernoulli weights (module docstring)."""

    name = "weights"
    description = "an SBN with Bernoulli weights"
    default_training = "weight-reinforce"
    parametrisations = ("eta", "mu")
    checkpoint_marker = "weight-sbn"  # estbench.kinds.weights.checkpoint.WEIGHT_SBN

    # ---- case files --------------------------------------------------------------------------

    def model_keys(self) -> tuple[Key, ...]:
        from .model import WEIGHT_NOISES

        return (
            Key(
                "first_layer",
                "str",
                "real",
                choices=("real", "bernoulli"),
                help="the first layer's weights: real, or Bernoulli (input dimension <= 16)",
            ),
            Key(
                "activation",
                "str",
                "stochastic",
                choices=("stochastic", "sign"),
                help="the units: stochastic (the activation noise) or deterministic sign",
            ),
            Key(
                "eta_scale",
                "float",
                1.5,
                check=lambda v: v > 0,
                accepts="a number > 0",
                help="scale of the weight logits' initialisation, eta ~ N(0, eta_scale^2)",
            ),
            Key(
                "weight_noise",
                "str",
                "logistic",
                choices=WEIGHT_NOISES,
                help="the noise of the Bernoulli weights' reparametrisation",
            ),
            *layered_model_keys(inits=("random",), init="random"),
        )

    def parse_model(self, table: Table, common: dict[str, Any]) -> ModelSpec:
        own = {
            "first_layer": table.get("first_layer"),
            "activation": table.get("activation"),
            "eta_scale": table.get("eta_scale"),
            "weight_noise": table.get("weight_noise"),
        }
        if "init" in table.raw and table.raw["init"] != "random":
            table.used.add("init")
            table.fail(
                table.key("init"),
                "'random' for a Bernoulli-weight model (eta ~ N(0, eta_scale^2), real W ~ "
                "N(0, scale^2 / fan-in))",
                table.raw["init"],
            )
        keys = layered_keys(table)
        return WeightsModelSpec(**common, **keys, **own)

    def check_case(self, case: Case) -> None:
        spec = case.model
        assert isinstance(spec, WeightsModelSpec)
        file = str(case.path) if case.path else f"<case {case.name}>"
        if spec.first_layer == "bernoulli" and case.data.dim > 16:
            raise CaseError(
                f"{file}: model.first_layer: a Bernoulli first layer enumerates 2^d weight "
                f"patterns; expected data.dim <= 16, got {case.data.dim}"
            )
        if spec.first_layer == "real" and spec.checkpoint is None:
            depths = case.sweep.get("depth") or (
                (len(spec.widths),) if spec.widths else (spec.depth,)
            )
            if min(int(d) for d in depths if d is not None) < 2:
                raise CaseError(
                    f"{file}: model.depth: with a real first layer a weights model needs depth "
                    ">= 2 (a Bernoulli hidden pair), got depth 1; or set model.first_layer = "
                    '"bernoulli"'
                )

    # ---- problems ----------------------------------------------------------------------------

    def initial(
        self,
        spec: ModelSpec,
        widths: tuple[int, ...],
        X: Tensor,
        labels: Tensor,
        *,
        stored: bool,
        offset: int,
    ) -> tuple[WeightSBN, Tensor]:
        """eta ~ N(0, eta_scale^2), real W ~ N(0, scale^2 / fan-in), b ~ N(0, 0.25)."""
        import torch

        from . import random_weight_sbn

        assert isinstance(spec, WeightsModelSpec)
        out_dim = head_outputs(spec, labels, stored=stored)
        net = random_weight_sbn(
            X.shape[1],
            widths,
            out_dim,
            generator=torch.Generator().manual_seed(spec.seed + offset),
            kinds=spec.pair_kinds(len(widths)),
            eta_scale=spec.eta_scale,
            scale=spec.scale,
            coding=spec.coding,
            activation=spec.activation_name,
            head=spec.head,
            weight_noise=spec.weight_noise,
        )
        return net, head_targets(spec, labels, out_dim, stored=stored)

    def load(
        self, spec: ModelSpec, path: Path, where: str
    ) -> tuple[WeightSBN, tuple[Tensor, Tensor] | None]:
        """A weight checkpoint stores its coding, activation, head, weight noise and pair kinds,
        and they must be the case's: it is measured as it was trained, never silently re-read
        with other settings."""
        from ...errors import CheckpointError
        from . import load_weight_checkpoint

        assert isinstance(spec, WeightsModelSpec)
        ckpt = load_weight_checkpoint(path)
        first = "bernoulli" if spec.first_layer == "bernoulli" else "real"
        for key, stored, stated, case_key in (
            ("coding", ckpt.coding, spec.coding, "model.coding"),
            ("activation", ckpt.activation, spec.activation_name, "model.activation / model.noise"),
            ("head", ckpt.head, spec.head, "model.head"),
            ("weight_noise", ckpt.weight_noise, spec.weight_noise, "model.weight_noise"),
            ("eta0/W0", ckpt.kinds[0], first, "model.first_layer"),
        ):
            if stored != stated:
                raise CheckpointError(
                    f"{path}: key {key} gives {stored!r}, but {where}: {case_key} gives "
                    f"{stated!r}; expected the same (a weight checkpoint is measured as stored)"
                )
        return ckpt.model(), (ckpt.data() if ckpt.X is not None else None)

    def read(
        self, path: Path, options: Mapping[str, str | None]
    ) -> tuple[WeightSBN, tuple[Tensor, Tensor] | None]:
        """The file stores coding, activation and head: an option that contradicts them is an
        error (leave it out)."""
        from ...errors import CheckpointError
        from . import load_weight_checkpoint

        ckpt = load_weight_checkpoint(path)
        stored = {"coding": ckpt.coding, "noise": ckpt.activation, "head": ckpt.head}
        for option, value in options.items():
            if value is not None and value != stored.get(option, value):
                raise CheckpointError(
                    f"{path}: --{option} {value} contradicts the weight checkpoint, which "
                    f"stores {stored[option]!r} (leave the option out)"
                )
        return ckpt.model(), (ckpt.data() if ckpt.X is not None else None)

    def save(self, path: Path, net: WeightSBN, X: Tensor, Y: Tensor) -> None:
        from . import save_weight_checkpoint

        save_weight_checkpoint(path, net, X, Y)

    def load_snapshot(self, path: Path, like: WeightSBN) -> WeightSBN:
        from ...checkpoint import other_snapshot
        from . import load_weight_checkpoint

        net = load_weight_checkpoint(path).model()

        def layout(m: WeightSBN) -> tuple[Any, ...]:
            shapes = [p.shape for p in m.params]
            return (m.kinds, shapes, m.coding, m.activation, m.head.name, m.weight_noise.name)

        if layout(net) != layout(like):
            raise other_snapshot(path, net, like)
        return net

    def problem(self, net: WeightSBN, X: Tensor, Y: Tensor) -> WeightProblem:
        from . import WeightProblem

        return WeightProblem.create(net, X, Y)

    def network_type(self) -> type:
        from . import WeightSBN

        return WeightSBN

    # ---- training ----------------------------------------------------------------------------

    def parameters(self, net: WeightSBN) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """theta_k = eta_k of a Bernoulli pair, W_k of a real one; and b_k. An estimate wrt mu
        is applied to eta as it is: BinaryConnect's latent-weight rule (estbench.training)."""
        return net.params, net.biases

    def with_parameters(
        self, net: WeightSBN, thetas: tuple[Tensor, ...], biases: tuple[Tensor, ...]
    ) -> WeightSBN:
        return net.replace(params=thetas, biases=biases)

    # ---- exact reference ---------------------------------------------------------------------

    def reference(self, problem: WeightProblem, memory_budget: int | None = None) -> Reference:
        from . import exact_gradient

        m = problem.model
        wx = exact_gradient(m, problem.X, problem.Y, memory_budget=memory_budget)
        gradients = {"eta": wx.flat("eta"), "mu": wx.flat("mu")}
        exact: dict[str, Any] = {"kinds": list(m.kinds), "activation": m.activation}
        if not m.logistic_weights:
            exact["weight_noise"] = m.weight_noise.name
        return Reference(float(wx.loss), gradients, weight_blocks(problem, gradients), exact)

    def blocks(self, problem: WeightProblem, gradient: Tensor) -> list[Block]:
        """``weight_blocks`` of an estimated gradient (the default parametrisation, eta)."""
        return weight_blocks(problem, {self.parametrisations[0]: gradient})

    def gradient_arrays(
        self, problem: WeightProblem, reference: Reference
    ) -> list[list[tuple[str, Tensor]]]:
        """dW, db of a real pair; d eta, d mu, db of a Bernoulli pair."""
        m = problem.model
        out = []
        pairs = zip(
            problem.split(reference.gradient("eta")),
            problem.split(reference.gradient("mu")),
            m.params,
            m.kinds,
            strict=True,
        )
        for v_eta, v_mu, theta, kind in pairs:
            n = theta.numel()
            g_eta, g_mu, gb = v_eta[:n].view(theta.shape), v_mu[:n].view(theta.shape), v_eta[n:]
            bern = kind == "bernoulli"
            out.append(
                [("d eta", g_eta), ("d mu", g_mu), ("db", gb)]
                if bern
                else [("dW", g_eta), ("db", gb)]
            )
        return out

    def exact_gradient(self, problem: WeightProblem) -> Tensor:
        from . import exact_gradient

        return exact_gradient(problem.model, problem.X, problem.Y).flat("eta")

    def exact_bytes(self, net: WeightSBN, n_points: int, memory_budget: int) -> int:
        from .exact import check_budget

        return check_budget(net, n_points, memory_budget)

    def path_moments(
        self, estimator: Any, problem: WeightProblem, context: Any, max_paths: int
    ) -> Any:
        """Enumerates 2^(#Bernoulli weights + sum n_k) joint configurations (states only when
        the estimator fixes the weights: a deterministic weight forward)."""
        from . import WeightPathEstimator, path_moments

        if not isinstance(estimator, WeightPathEstimator):
            return None
        m = problem.model
        fixed = estimator.fixed_weights(problem) is not None
        n_weights = 0 if fixed else sum(m.params[k].numel() for k in m.bernoulli_layers)
        if 2 ** (n_weights + sum(m.widths)) > max_paths:
            return None
        return path_moments(estimator, problem, context=context, max_configs=max_paths)

    def path_count(self, estimator: Any, net: WeightSBN) -> int | None:
        from . import WeightPathEstimator

        if not isinstance(estimator, WeightPathEstimator):
            return None
        n_weights = sum(net.params[k].numel() for k in net.bernoulli_layers)
        return 2 ** min(n_weights + sum(net.widths), 64)

    # ---- conformance -------------------------------------------------------------------------

    def check_problems(self) -> list[WeightProblem]:
        """Three tiny weight networks, 3 data points each: 2-2-3-3 with a Bernoulli hidden pair,
        logistic activations, ±1 states and a softmax head (ST-type bias shows everywhere below the
        head); 2-2-2-2 with Bernoulli first and hidden pairs, sign activations, {0, 1} states and
        the mse head (every real parameter feeding a sign has gradient 0); 2-2-2-1 with a Bernoulli
        hidden pair of the hard-sigmoid weight noise (``weight_noise="uniform"``; eta_scale 1, so
        some weights are deterministic), uniform activations, {0, 1} states, the logistic head. At
        most 2^12 joint configurations, so path estimators are decided exactly."""
        import torch

        from . import random_weight_sbn

        out = []
        for seed, widths, kinds, coding, activation, head, K, weight_noise, eta_scale in (
            (
                11,
                (2, 3),
                ("real", "bernoulli", "real"),
                "pm1",
                "logistic",
                "softmax",
                3,
                "logistic",
                1.5,
            ),
            (
                12,
                (2, 2),
                ("bernoulli", "bernoulli", "real"),
                "01",
                "sign",
                "mse",
                2,
                "logistic",
                1.5,
            ),
            (
                13,
                (2, 2),
                ("real", "bernoulli", "real"),
                "01",
                "uniform",
                "logistic",
                1,
                "uniform",
                1.0,
            ),
        ):
            g = torch.Generator().manual_seed(seed)
            model = random_weight_sbn(
                2,
                widths,
                K,
                generator=g,
                kinds=kinds,
                eta_scale=eta_scale,
                coding=coding,
                activation=activation,
                head=head,
                weight_noise=weight_noise,
            )
            X = torch.randn(3, 2, generator=g, dtype=torch.float64)
            if head == "softmax":
                Y = torch.tensor([0.0, 2.0, 1.0])
            elif head == "logistic":
                Y = torch.tensor([1.0, -1.0, 1.0])
            else:
                Y = torch.randn(3, K, generator=g, dtype=torch.float64)
            out.append(self.problem(model, X, Y))
        return out

    def zero_loss_problem(self) -> WeightProblem:
        """Squared error with zero read-out weights and the bias at the target: l = 0 everywhere."""
        import torch

        from ..sbn.model import get_head
        from .model import WeightSBN, get_activation, random_weight_sbn

        g = torch.Generator().manual_seed(7)
        base = random_weight_sbn(2, (3, 2), 2, generator=g, coding="pm1", head="mse")
        target = torch.tensor([0.5, -1.0], dtype=torch.float64)
        model = WeightSBN(
            (*base.params[:-1], torch.zeros(2, 2, dtype=torch.float64)),
            (*base.biases[:-1], target),
            base.kinds,
            "pm1",
            get_activation("logistic"),
            get_head("mse"),
        )
        X = torch.randn(3, 2, generator=g, dtype=torch.float64)
        return self.problem(model, X, target.expand(3, 2))

    def estimators(self) -> list[type]:
        from .estimators import ESTIMATORS

        return list(ESTIMATORS)

    def reference_network(self) -> WeightSBN:
        """The seed study's 2-5-5-5-1 shape with Bernoulli hidden pairs."""
        import torch

        from . import random_weight_sbn

        return random_weight_sbn(2, (5, 5, 5), 1, generator=torch.Generator().manual_seed(0))
