"""Package data: the seed authors' trained 5-5-5 networks (see README.md here for provenance and
the keys). A package, not a plain folder, so ``importlib.resources`` finds the files wherever
estbench is installed; ``estbench.shipped`` names them ``seed:chk-1`` and ``seed:chk-100``."""
