"""The one ``boxguard`` command (typer); the commands are in :mod:`boxguard.cli.commands`.

It imports the SDK and the guards; the server and the demo only inside ``serve`` and ``demo``.

Example:
    $ boxguard --help
"""
