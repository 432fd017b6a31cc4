"""``python -m tokenhub.cli``: the same as ``tokenhubctl``."""

from tokenhub.cli.main import main

main()
