"""`boxguard serve` and `boxguard demo`: they import the server lazily, inside the command."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import SERVER_HINT, Command


def _server_missing(exc: ImportError) -> typer.Exit:
    """Print the install hint for a missing server extra."""
    typer.secho(f"{SERVER_HINT}\n({exc})", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


def serve(ctx: typer.Context, **flags: Any) -> None:
    """Run the grounding server (needs the server extra).

    Every flag is also an env var, BOXGUARD_<NAME> (--max-new-tokens: BOXGUARD_MAX_NEW_TOKENS);
    flags given on the command line override env.
    """
    given = {
        name: value
        for name, value in flags.items()
        if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"
    }
    try:
        from boxguard.server.serve import ServeError, run
    except ImportError as exc:
        raise _server_missing(exc) from None
    try:
        run(given)
    except ServeError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


_CTX = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)


class ServeCommand(Command):
    """`serve`, its flags (one per server setting) built on first use.

    The server is imported only when `serve` parses its arguments or prints its help, so
    `boxguard --help` and the client commands never import it.
    """

    flags_built = False

    def build_flags(self) -> None:
        """Take the params and callback of `serve` with every server setting as a flag."""
        if self.flags_built:
            return
        self.flags_built = True
        try:
            from boxguard.server.serve import serve_flags
        except ImportError:
            # The light install has no flags to parse: take any, so serve prints the hint.
            self.context_settings.update(ignore_unknown_options=True, allow_extra_args=True)
            return
        serve.__signature__ = inspect.Signature([_CTX, *serve_flags()])  # type: ignore[attr-defined]
        full = typer.Typer(add_completion=False)
        full.command(cls=Command)(serve)
        command = typer.main.get_command(full)
        self.params, self.callback = command.params, command.callback

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        self.build_flags()  # before the context reads context_settings
        return super().make_context(info_name, args, parent, **extra)

    def get_params(self, ctx: Any) -> list[Any]:
        self.build_flags()
        return super().get_params(ctx)


serve.__signature__ = inspect.Signature([_CTX])  # type: ignore[attr-defined]


def demo(
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Where to save the annotated image (relative: current directory)."
        ),
    ] = Path("demo.png"),
    port: Annotated[int, typer.Option(help="Server port (0 = a free port).")] = 0,
    model: Annotated[
        str | None, typer.Option(help="Model directory (default: bundled demo).")
    ] = None,
) -> None:
    """Start a local server on the demo checkpoint, ground a demo scene, save the drawing."""
    try:
        from boxguard.demo.cli import run_demo
    except ImportError as exc:
        raise _server_missing(exc) from None
    run_demo(out=out, port=port, model=model)
