"""`python -m guim ...` (and `torchrun --nproc-per-node N -m guim train ...`): the CLI."""

from guim.cli import app

app()
