"""``python -m boxguard.cli``: the ``boxguard`` command without its console script."""

from boxguard.cli.commands import main

main()
