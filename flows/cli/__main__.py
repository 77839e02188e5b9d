"""``python -m flows.cli``: the same as the ``eqs`` command."""

from flows.cli import main

main()
