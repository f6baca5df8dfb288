"""The ``boxguard`` command: ``ground``, ``eval``, ``calibrate``, ``serve`` and ``demo``.

``serve`` and ``demo`` import the server lazily, inside the command, so ``boxguard --help`` and
the client commands work on the light install.

Example:
    $ boxguard ground street.jpg "the red car on the left" --draw out.png
    $ boxguard eval shapes/val.jsonl --server http://127.0.0.1:8000 --report eval-out
"""

from __future__ import annotations

import os
import sys

import typer

from .calibrate import calibrate_command
from .common import Command, Group
from .evaluate import eval_
from .export import export_command
from .ground import ground, point
from .serve import ServeCommand, demo, serve

__all__ = ["app", "main"]

app = typer.Typer(
    cls=Group,
    name="boxguard",
    help="boxguard: grounding for Qwen-VL models that abstains rather than hallucinates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# In the order `boxguard --help` lists them.
app.command(cls=Command)(ground)
app.command(cls=Command)(point)
app.command("eval", cls=Command)(eval_)
app.command("serve", cls=ServeCommand)(serve)
app.command("calibrate", cls=Command)(calibrate_command)
app.command("export", cls=Command)(export_command)
app.command(cls=Command)(demo)


def main() -> None:
    """Entry point of the ``boxguard`` console script and of ``python -m boxguard.cli``."""
    # Piped help (no TTY) is 80 columns in rich: too narrow, serve's flag names get cut.
    if not sys.stdout.isatty():
        os.environ.setdefault("COLUMNS", "120")
    app(prog_name="boxguard")
