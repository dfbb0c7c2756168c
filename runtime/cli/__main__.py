"""`python -m runtime.cli` — the same as the `corral` console script."""

from runtime.cli.main import main

main()
