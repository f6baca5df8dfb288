"""`boxguard calibrate`: record every signal of a labelled set once, certify thresholds, write a
policy file.

Example:
    $ boxguard calibrate shapes/val.jsonl --server http://127.0.0.1:8000 --risk 0.1,0.2 \\
        --delta 0.1 --out policy.json --signals-out val-signals.jsonl
    $ boxguard calibrate --signals val-signals.jsonl --risk 0.05 --out policy.json
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from boxguard.clients.base import DEFAULT_TIMEOUT

if TYPE_CHECKING:  # numpy and the calibration load when the command runs, not at CLI start
    from boxguard.clients.calibration import Choice, Signals

__all__ = ["calibrate_command", "parse_risks"]


def parse_risks(text: str) -> list[float]:
    """'0.05,0.1' -> [0.05, 0.1]; each in (0, 1).

    Example:
        >>> parse_risks("0.05, 0.1")
        [0.05, 0.1]
    """
    try:
        risks = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(
            "a number or a comma-separated list", param_hint="--risk"
        ) from None
    if not risks or not all(0.0 < r < 1.0 for r in risks):
        raise typer.BadParameter("each risk must be in (0, 1)", param_hint="--risk")
    return risks


def _record(
    dataset: Path,
    server: str | None,
    api_key: str | None,
    timeout: float,
    concurrency: int,
    limit: int | None,
    progress: bool,
) -> tuple[list[Signals], list[dict[str, Any]], str | None]:
    """Ground every sample once under MEASURE_POLICY: (signals, their rows, the model name)."""
    from boxguard.clients.calibration import MEASURE_POLICY, load_signal_rows
    from boxguard.clients.datasets import load_dataset
    from boxguard.clients.evaluation import evaluate

    from .common import make_client

    samples = load_dataset(dataset)[:limit]
    with make_client(server, api_key, timeout) as client:
        records = evaluate(
            samples, client, concurrency=concurrency, progress=progress, policy=MEASURE_POLICY
        )
    rows = [sig for r in records if (sig := r.signals()) is not None]
    failed = len(records) - len(rows)
    if failed:
        typer.secho(f"warning: {failed} requests failed and are left out", err=True)
    models = {r.result.model for r in records if r.result is not None}
    return load_signal_rows(rows), rows, next(iter(models)) if len(models) == 1 else None


def _report_model(path: Path) -> str | None:
    """The model an eval report (its folder or samples.jsonl) was made with, if it says."""
    report = (path if path.is_dir() else path.parent) / "report.json"
    try:
        model = json.loads(report.read_text()).get("model")
    except (OSError, ValueError):
        return None
    return model if isinstance(model, str) else None


def _line(choice: Choice, smallest: float | None) -> str:
    """One human line per risk level."""
    if not choice.certified:
        floor = f"{smallest:g}" if smallest is not None else "none below 1"
        return (
            f"risk {choice.alpha:g}: NOT certified on these {choice.n} samples at delta "
            f"{choice.delta:g}: coverage 0; the smallest certifiable risk here is {floor}"
        )
    fields = ", ".join(f"{k}={v}" for k, v in choice.fields.items())
    return (
        f"risk {choice.alpha:g}: {fields}; coverage {choice.coverage:.3f} "
        f"({choice.accepted} of {choice.n}), {choice.errors} wrong among accepted"
    )


def calibrate_command(
    dataset: Annotated[
        Path | None,
        typer.Argument(help="boxguard JSONL or VLM-R1 REC file (labelled).", metavar="DATASET"),
    ] = None,
    server: Annotated[
        str | None, typer.Option("--server", metavar="URL", help="The server to calibrate.")
    ] = None,
    risk: Annotated[
        str, typer.Option("--risk", metavar="R[,R...]", help="Risk(s) of accepted answers.")
    ] = "0.1",
    delta: Annotated[
        float, typer.Option("--delta", min=1e-6, max=0.5, help="1 - confidence of the bound.")
    ] = 0.1,
    out: Annotated[
        Path | None, typer.Option("--out", metavar="FILE", help="Write the policy file here.")
    ] = None,
    signals: Annotated[
        Path | None,
        typer.Option(
            "--signals",
            metavar="FILE",
            help="Reuse recorded signals: a --signals-out file or an eval report (its folder "
            "or samples.jsonl), instead of asking a server.",
        ),
    ] = None,
    signals_out: Annotated[
        Path | None,
        typer.Option("--signals-out", metavar="FILE", help="Save the recorded signals here."),
    ] = None,
    model_name_given: Annotated[
        str | None,
        typer.Option(
            "--model-name",
            metavar="NAME",
            help="Served model name to record "
            "(default: the server's answers, or the eval report's).",
        ),
    ] = None,
    model_family: Annotated[
        str | None,
        typer.Option("--model-family", metavar="TYPE", help="config.json model_type to record."),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, metavar="N")] = 8,
    limit: Annotated[
        int | None, typer.Option(metavar="N", help="Only the first N samples.")
    ] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="BOXGUARD_API_KEY")] = None,
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS")] = DEFAULT_TIMEOUT,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Certify thresholds whose risk of accepted answers is at most --risk with probability
    1 - delta (Learn then Test), and write them as a policy file for `serve --policy-file`."""
    from boxguard.clients.calibration import (
        calibrate,
        load_signals,
        policy_document,
        smallest_certifiable_risk,
    )

    risks = parse_risks(risk)
    if (dataset is None) == (signals is None):
        raise typer.BadParameter("give a DATASET (with --server) or --signals FILE, not both")
    if signals is not None:
        if not signals.exists():
            raise typer.BadParameter(f"no such file: {signals}", param_hint="--signals")
        recorded, model_name, data = load_signals(signals)[:limit], _report_model(signals), signals
    else:
        assert dataset is not None
        if not dataset.is_file():
            raise typer.BadParameter(f"no such file: {dataset}", param_hint="DATASET")
        recorded, rows, model_name = _record(
            dataset, server, api_key, timeout, concurrency, limit, progress
        )
        data = dataset
        if signals_out is not None:
            signals_out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    choices = [calibrate(recorded, alpha, delta) for alpha in risks]
    smallest = smallest_certifiable_risk(recorded, delta)
    for choice in choices:
        typer.echo(_line(choice, smallest))
    if not any(c.certified for c in choices):
        typer.secho("no policy written: no requested risk is certified", err=True, fg="red")
        raise typer.Exit(1)
    if out is not None:
        doc = policy_document(
            choices,
            model={"name": model_name_given or model_name, "family": model_family},
            data=str(data),
            date=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            smallest=smallest,
        )
        out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        typer.echo(f"policy written: {out} (serve it with --policy-file {out})")
