"""`python -m vcap ...`, the same as the `vcap` command (and what torchrun launches: `torchrun -m vcap`)."""
from vcap.cli import main

main(prog_name="vcap")
