"""An example estbench problem kind: the REBAR/RELAX toy objective (``kind.ToyKind``)."""

from pathlib import Path

CASE = str(Path(__file__).with_name("toy.toml"))  # the example case file
