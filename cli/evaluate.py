"""`boxguard eval`: a labelled dataset through a server, or stored model outputs offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from boxguard.clients.base import DEFAULT_TIMEOUT

from .common import (
    ApiKeyOpt,
    OutputOpt,
    PolicyOpt,
    ServerOpt,
    TimeoutOpt,
    check_output,
    make_client,
    parse_policy,
)

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
    check_output(output)
    if outputs is not None:
        summary = _eval_outputs(
            outputs, report, image_root, limit, multiple, parse_policy(policy), output
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
            parse_policy(policy),
            api_key,
            timeout,
            progress,
            output,
        )
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    _print_summary(summary, report)


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
