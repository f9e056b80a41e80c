"""The shipped case files. This folder is installed as the package ``estbench.case_files``
(``package-dir`` in pyproject.toml), so a wheel carries the cases without a second copy in the
source tree; ``estbench.shipped.cases_dir`` finds them with ``importlib.resources``."""
