"""`python -m pipetune` = the `pipetune` command."""

from pipetune.cli.main import run

run()
