"""What every `boxguard` subcommand shares: help rendering, common options, the client."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer
from boxguard.clients.base import DEFAULT_TIMEOUT
from boxguard.clients.errors import BoxguardError, ConnectionFailed, InvalidRequest
from boxguard.clients.sync import Client
from typer.core import TyperCommand, TyperGroup

SERVER_HINT = 'the server is not installed: pip install "boxguard[server]"'


class Command(TyperCommand):
    """Help as other CLIs print it: `IMAGE EXPRESSION` in the usage line, no type on flags.

    (`ctx` is typer's vendored click Context, a private type, hence `Any`.)
    """

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [piece.strip("{}") for piece in super().collect_usage_pieces(ctx)]

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_metavars(super().get_params(ctx))


class Group(TyperGroup):
    """The top-level command: its --help, an on/off flag, shows no `<bool>` either."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_metavars(super().get_params(ctx))


def _without_flag_metavars(params: list[Any]) -> list[Any]:
    """An on/off flag takes no value: show none, not <bool>."""
    for param in params:
        if getattr(param, "is_flag", False) and getattr(param, "metavar", "") is None:
            param.metavar = ""
    return params


# Tests set this to an httpx.MockTransport so the commands talk to a fake server.
transport: httpx.BaseTransport | None = None

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        "-s",
        metavar="URL",
        help="Server URL; env BOXGUARD_URL, else http://127.0.0.1:8000.",
        show_default=False,
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key", metavar="KEY", help="API key (env BOXGUARD_API_KEY).", show_default=False
    ),
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", metavar="SECONDS", help="Seconds per request.")
]
OutputOpt = Annotated[
    str,
    typer.Option("--output", metavar="KIND", help="box, or point (x, y): where to click or grasp."),
]
PolicyOpt = Annotated[
    str | None,
    typer.Option(
        "--policy",
        metavar="JSON",
        help="Guard policy overrides as JSON: '{\"min_confidence\": 0.5}'",
    ),
]


def make_client(
    server: str | None, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT
) -> Client:
    """The client the commands use (module-level `transport` injected for tests)."""
    return Client(server, api_key=api_key, timeout=timeout, transport=transport)


def parse_policy(text: str | None) -> dict[str, Any] | None:
    """Parse --policy JSON."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--policy") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--policy")
    return value


def fail(error: BoxguardError, server_url: str) -> typer.Exit:
    """Print an SDK error on stderr and return the exit to raise."""
    text = str(error)
    if isinstance(error, ConnectionFailed):
        text = (
            f"no boxguard server at {server_url}; start one with `boxguard serve` or pass "
            f"--server ({error.detail})"
        )
    typer.secho(f"error: {text}", fg=typer.colors.RED, err=True)
    refused = isinstance(error, InvalidRequest) or 400 <= (error.status_code or 0) < 500
    return typer.Exit(2 if refused else 1)


def check_output(output: str) -> None:
    """--output is box or point."""
    if output not in ("box", "point"):
        raise typer.BadParameter("box or point", param_hint="--output")
