"""Command line: ``estbench [--version] COMMAND ...`` (also ``python -m estbench``).

Results go to stdout, errors to stderr as one line ``estbench: error: ...`` with exit code 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np

from ._version import __version__
from .checkpoint import load_data, model_from_checkpoint
from .errors import EstbenchError, ModelError
from .exact import exact_gradient, parse_bytes
from .model import CODINGS, HEADS, NOISES


def _bytes_arg(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--coding", choices=CODINGS, default="01",
                   help="state coding of the binary units (default: 01, as the seed networks)")
    p.add_argument("--noise", choices=list(NOISES), default="logistic",
                   help="noise whose CDF gives P(on) (default: logistic)")
    p.add_argument("--head", choices=list(HEADS), default="logistic",
                   help="loss on the linear read-out (default: logistic NLL, labels +-1)")


def _cmd_exact(args: argparse.Namespace) -> int:
    model, ckpt = model_from_checkpoint(
        args.checkpoint, coding=args.coding, noise=args.noise, head=args.head
    )
    X, Y = load_data(args.data) if args.data else ckpt.data()
    try:
        result = exact_gradient(model, X, Y, memory_budget=args.memory_budget)
    except ModelError as e:  # data or head that does not fit the network
        raise EstbenchError(f"{args.data or args.checkpoint}: {e}") from None
    vectors = result.layer_vectors()
    if args.json:
        out = {
            "loss": float(result.loss),
            "grad": {name: v.tolist() for name, v in zip(model.layer_names, vectors, strict=True)},
        }
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print(f"{model.describe()}; {X.shape[0]} data points")
    print(f"exact objective  {float(result.loss):.17g}")
    with np.printoptions(precision=10, linewidth=100, floatmode="maxprec_equal"):
        for name, (gW, gb), v in zip(model.layer_names, result.grads, vectors, strict=True):
            print(f"\n{name}  dW {list(gW.shape)}  db {list(gb.shape)}  |g| = {float(v.norm()):.6e}")
            print(f"  dW = {np.array2string(gW.numpy(), prefix='  dW = ')}")
            print(f"  db = {np.array2string(gb.numpy(), prefix='  db = ')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="estbench",
        description="Accuracy of gradient estimators for stochastic binary networks, "
                    "measured against exact gradients.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"estbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "exact", help="exact objective and per-layer gradients of a checkpoint",
        description="Print the exact expected loss and its gradient for every layer "
                    "(concat(vec W_k, b_k); layer L is the head), by layer-wise enumeration.",
    )
    p.add_argument("--checkpoint", required=True, metavar="FILE.npz",
                   help="network as keys W0, b0, ..., WL, bL (+ X, Y)")
    p.add_argument("--data", metavar="FILE.npz",
                   help="take X, Y from this file instead of the checkpoint")
    _add_model_options(p)
    p.add_argument("--memory-budget", type=_bytes_arg, default=None, metavar="SIZE",
                   help="refuse above this much memory, e.g. 2GiB (default: "
                        "$ESTBENCH_MEMORY_BUDGET or 1GiB)")
    p.add_argument("--json", action="store_true",
                   help='print {"loss": float, "grad": {"layer0": [...], ...}}')
    p.set_defaults(func=_cmd_exact)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except EstbenchError as e:
        print(f"estbench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("estbench: interrupted", file=sys.stderr)
        return 130


__all__ = ["main", "build_parser"]
