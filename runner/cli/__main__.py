"""`python -m runner.cli ...`: the `recipe` command where its console script is not
installed (the package on PYTHONPATH only, as on a machine without a package index)."""

from runner.cli import main

main(prog_name="recipe")
