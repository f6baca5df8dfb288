"""The ``boxguard`` command: ``ground``, ``eval``, ``calibrate``, ``serve`` and ``demo``.

``serve`` and ``demo`` import the server lazily, inside the command, so ``boxguard --help`` and
the client commands work on the light install.

Example:
    $ boxguard ground street.jpg "the red car on the left" --draw out.png
    $ boxguard eval shapes/val.jsonl --server http://127.0.0.1:8000 --report eval-out
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from boxguard.clients.base import DEFAULT_TIMEOUT
from boxguard.clients.errors import BoxguardError, ConnectionFailed, InvalidRequest
from boxguard.clients.images import is_url
from boxguard.clients.results import GroundResult
from boxguard.clients.sync import Client
from typer.core import TyperCommand, TyperGroup

from .calibrate import calibrate_command
from .export import export_command

__all__ = ["app", "main", "make_client"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
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


app = typer.Typer(
    cls=Group,
    name="boxguard",
    help="boxguard: grounding for Qwen-VL models that abstains rather than hallucinates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

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


def _policy(text: str | None) -> dict[str, Any] | None:
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


def _fail(error: BoxguardError, server_url: str) -> typer.Exit:
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


def _print_result(result: GroundResult, expression: str) -> None:
    """A readable rich rendering of one result."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    color = "green" if result.accepted else "red"
    console.print(
        f"[bold {color}]{result.status.upper()}[/]  “{expression}”  "
        f"model={result.model}  image={result.image.width}×{result.image.height}  id={result.id}"
    )
    if result.abstained:
        console.print(f"[red]reasons:[/] {', '.join(result.reasons) or 'unspecified'}")
    shown = result.detections if result.accepted else result.candidates
    if result.accepted and not shown:
        console.print("no matching object in the image")
    if shown:
        title = "detections" if result.accepted else "rejected candidates"
        table = Table(title=title, title_justify="left")
        points = shown[0].point is not None
        coords = ("x", "y") if points else ("x1", "y1", "x2", "y2")
        for column in ("#", "label", "confidence", *coords):
            table.add_column(column, justify="left" if column == "label" else "right")
        for i, det in enumerate(shown, start=1):
            conf = "—" if det.confidence is None else f"{det.confidence:.3f}"
            values = det.point if det.point is not None else det.bbox or ()
            table.add_row(str(i), det.label or "", conf, *(f"{v:.1f}" for v in values))
        console.print(table)
    failed = [c for c in result.checks if not c.passed]
    for check in failed:
        console.print(f"[yellow]check {check.name} failed[/]: {check.detail}")
    if result.think:
        console.print(f"[dim]think:[/] {result.think}")
    if result.timings_ms:
        timings = ", ".join(f"{k} {v:.0f} ms" for k, v in result.timings_ms.items())
        console.print(f"[dim]{timings}[/]")


@app.command(cls=Command)
def ground(
    image: Annotated[
        str, typer.Argument(help="Image file, folder of images or http(s) URL.", metavar="IMAGE")
    ],
    expression: Annotated[
        str, typer.Argument(help="Referring expression (not blank).", metavar="EXPRESSION")
    ],
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
    think: Annotated[bool, typer.Option("--think", help="Ask for a think trace.")] = False,
    multiple: Annotated[bool, typer.Option("--multiple", help="Every matching object.")] = False,
    draw: Annotated[
        Path | None,
        typer.Option("--draw", metavar="FILE", help="Save the image with the boxes drawn here."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON response.")] = False,
    policy: PolicyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    output: OutputOpt = "box",
) -> None:
    """Ground EXPRESSION in IMAGE (a file, a folder's images, a URL): boxes or the abstention."""
    _check_output(output)
    images = _images(image)
    overrides = _policy(policy)
    if draw is not None and (is_url(image) or len(images) != 1 or images[0] != image):
        raise typer.BadParameter("--draw needs one local image file", param_hint="--draw")
    with make_client(server, api_key, timeout) as client:
        for path in images:
            try:
                # Files go as multipart: no base64, so what the body limit allows is sent as is.
                result = client.ground(
                    path,
                    expression,
                    multiple=multiple,
                    think=think,
                    policy=overrides,
                    upload=not is_url(path),
                    output=output,  # type: ignore[arg-type]
                )
            except BoxguardError as exc:
                raise _fail(exc, client.base_url) from None
            if as_json:
                typer.echo(result.model_dump_json(indent=2))
                continue
            if len(images) > 1:
                typer.echo(f"{path}:")
            _print_result(result, expression)
    if draw is not None:
        try:
            result.draw(image, expression=expression).save(draw)
        except (OSError, ValueError) as exc:  # no such folder, unknown extension, read-only
            typer.secho(f"error: cannot write {draw}: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        if not as_json:
            typer.echo(f"drawn: {draw}")


@app.command(cls=Command)
def point(
    image: Annotated[
        str, typer.Argument(help="Image file, folder of images or http(s) URL.", metavar="IMAGE")
    ],
    expression: Annotated[
        str, typer.Argument(help="What to point at (not blank).", metavar="EXPRESSION")
    ],
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
    think: Annotated[bool, typer.Option("--think", help="Ask for a think trace.")] = False,
    multiple: Annotated[bool, typer.Option("--multiple", help="Every matching object.")] = False,
    draw: Annotated[
        Path | None,
        typer.Option("--draw", metavar="FILE", help="Save the image with the points drawn here."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON response.")] = False,
    policy: PolicyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
) -> None:
    """Point at EXPRESSION in IMAGE: a verified (x, y) to click or grasp, or the abstention."""
    ground(
        image,
        expression,
        server,
        api_key,
        think,
        multiple,
        draw,
        as_json,
        policy,
        timeout,
        output="point",
    )


def _images(image: str) -> list[str]:
    """The IMAGE argument as the images to ground: a URL, a file, or a folder's images."""
    if is_url(image):
        return [image]
    path = Path(image)
    if path.is_dir():
        found = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            suffixes = ", ".join(IMAGE_SUFFIXES)
            raise typer.BadParameter(
                f"{image} is a folder with no images ({suffixes})", param_hint="IMAGE"
            )
        return found
    if not path.is_file():
        raise typer.BadParameter(f"no such file: {image}", param_hint="IMAGE")
    return [image]


# The options of `eval` that only it takes.
DatasetArg = Annotated[
    Path | None,
    typer.Argument(help="boxguard JSONL or VLM-R1 REC JSON file.", metavar="DATASET"),
]
OutputsOpt = Annotated[
    Path | None,
    typer.Option(
        "--outputs",
        help="Evaluate stored model outputs offline, no server: a VLM-R1 log or outputs "
        "JSONL (id, expression, output, bbox, image_size?, frame?), gzipped or not.",
    ),
]
ReportOpt = Annotated[
    Path | None,
    typer.Option(
        "--report",
        metavar="DIR",
        help="Write samples.jsonl, report.json/.md, PNG, index.html here.",
    ),
]
ConcurrencyOpt = Annotated[
    int,
    typer.Option("--concurrency", "-c", min=1, metavar="N", help="Requests in flight at once."),
]
ImageRootOpt = Annotated[
    Path | None,
    typer.Option(
        "--image-root",
        metavar="DIR",
        help="Root of the image paths (default: the dataset's folder).",
    ),
]
FormatOpt = Annotated[
    str, typer.Option("--format", metavar="FORMAT", help="auto, jsonl or vlm-r1.")
]
LimitOpt = Annotated[int | None, typer.Option(metavar="N", help="Only the first N samples.")]


@app.command("eval", cls=Command)
def eval_(
    dataset: DatasetArg = None,
    outputs: OutputsOpt = None,
    server: ServerOpt = None,
    report: ReportOpt = None,
    concurrency: ConcurrencyOpt = 8,
    image_root: ImageRootOpt = None,
    fmt: FormatOpt = "auto",
    limit: LimitOpt = None,
    think: Annotated[bool, typer.Option("--think", help="Ask for think traces.")] = False,
    multiple: Annotated[
        bool, typer.Option("--multiple", help="Every matching object per sample.")
    ] = False,
    policy: PolicyOpt = None,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    output: OutputOpt = "box",
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json to stdout.")] = False,
) -> None:
    """Evaluate a dataset against a server, or stored outputs offline (--outputs): accuracy,
    coverage, Φc, AURC, N-acc/T-acc (and, offline, parse rate and abstentions per check)."""
    if (dataset is None) == (outputs is None):
        raise typer.BadParameter("give a DATASET (server) or --outputs FILE (offline), not both")
    _check_output(output)
    if outputs is not None:
        summary = _eval_outputs(
            outputs, report, image_root, limit, multiple, _policy(policy), output
        )
    elif dataset is not None:
        summary = _eval_server(
            dataset,
            server,
            report,
            concurrency,
            image_root,
            fmt,
            limit,
            think,
            multiple,
            _policy(policy),
            api_key,
            timeout,
            progress,
            output,
        )
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    _print_summary(summary, report)


def _check_output(output: str) -> None:
    """--output is box or point."""
    if output not in ("box", "point"):
        raise typer.BadParameter("box or point", param_hint="--output")


def _eval_outputs(
    outputs: Path,
    report: Path | None,
    image_root: Path | None,
    limit: int | None,
    multiple: bool,
    policy: dict[str, Any] | None,
    output: str = "box",
) -> dict[str, Any]:
    """`eval --outputs`: verify stored outputs with the guards, no server (points: --output)."""
    from boxguard.clients.offline import run_offline_eval
    from pydantic import ValidationError

    if not outputs.is_file():
        raise typer.BadParameter(f"no such file: {outputs}", param_hint="--outputs")
    try:
        return run_offline_eval(
            outputs,
            report_dir=report,
            image_root=image_root,
            policy=policy,
            multiple=multiple,
            limit=limit,
            output=output,  # type: ignore[arg-type]
        )
    except ValidationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--policy") from None
    except (ValueError, OSError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def _eval_server(
    dataset: Path,
    server: str | None,
    report: Path | None,
    concurrency: int,
    image_root: Path | None,
    fmt: str,
    limit: int | None,
    think: bool,
    multiple: bool,
    policy: dict[str, Any] | None,
    api_key: str | None,
    timeout: float,
    progress: bool,
    output: str = "box",
) -> dict[str, Any]:
    """`eval DATASET`: ground every sample through a server (points: point-in-box accuracy)."""
    from boxguard.clients.evaluation import run_eval

    if fmt not in ("auto", "jsonl", "vlm-r1"):
        raise typer.BadParameter("auto, jsonl or vlm-r1", param_hint="--format")
    if not dataset.is_file():
        raise typer.BadParameter(f"no such file: {dataset}", param_hint="DATASET")
    try:
        with make_client(server, api_key, timeout) as client:
            summary = run_eval(
                dataset,
                client,
                report_dir=report,
                image_root=image_root,
                fmt=fmt,  # type: ignore[arg-type]
                concurrency=concurrency,
                progress=progress,
                think=think,
                multiple=multiple,
                policy=policy,
                limit=limit,
                output=output,  # type: ignore[arg-type]
            )
    except (ValueError, FileNotFoundError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    return summary


def _print_summary(summary: dict[str, Any], report: Path | None) -> None:
    """The headline metrics as a rich table."""
    from boxguard.clients.report import _fmt, check_table
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"evaluation of {summary['dataset']}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    phi = summary["phi"]
    for name, value in (
        ("samples", summary["n"]),
        ("accuracy", summary["accuracy"]),
        ("raw accuracy", summary["raw_accuracy"]),
        ("coverage", summary["coverage"]),
        ("selective accuracy", summary["selective_accuracy"]),
        ("AURC", summary["aurc"]),
        ("Φ1 / Φ10 / Φ100", " / ".join(_fmt(phi[k]) for k in ("1", "10", "100"))),
        ("N-acc / T-acc", f"{_fmt(summary['n_acc'])} / {_fmt(summary['t_acc'])}"),
        ("best Φ10 min_confidence", summary["best_threshold_phi10"]),
        ("errors", summary["errors"]),
    ):
        table.add_row(name, _fmt(value))
    console = Console()
    console.print(table)
    if summary["abstentions_by_reason"]:
        reasons = ", ".join(f"{k} {v}" for k, v in summary["abstentions_by_reason"].items())
        console.print(f"abstentions: {reasons}")
    if "checks" in summary:
        console.print(f"parse rate {_fmt(summary['parse_rate'])}")
        console.print(check_table(summary["checks"]))
    for note in summary.get("notes", []):
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    if report is not None:
        console.print(f"report: {report / 'report.md'}, {report / 'index.html'}")


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
app.command("serve", cls=ServeCommand)(serve)


app.command("calibrate", cls=Command)(calibrate_command)
app.command("export", cls=Command)(export_command)


@app.command(cls=Command)
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


def main() -> None:
    """Entry point of the ``boxguard`` console script and of ``python -m boxguard.cli``."""
    # Piped help (no TTY) is 80 columns in rich: too narrow, serve's flag names get cut.
    if not sys.stdout.isatty():
        os.environ.setdefault("COLUMNS", "120")
    app(prog_name="boxguard")
