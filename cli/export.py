"""`boxguard export`: recorded answers and corrections, or an eval report, as fine-tuning data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def export_command(
    source: Annotated[
        str,
        typer.Argument(
            help="A record store (its --record URL or SQLite file) or an `eval` report directory."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    fmt: Annotated[
        str, typer.Option("--format", help="llamafactory, swift, vlm-r1 or dpo.")
    ] = "llamafactory",
    family: Annotated[
        str,
        typer.Option(
            help="Answer frame: qwen2_5_vl (resized pixels), qwen2_vl or qwen3_vl (0–1000)."
        ),
    ] = "qwen2_5_vl",
    reviewed_only: Annotated[
        bool, typer.Option("--reviewed-only", help="Only examples a person reviewed.")
    ] = False,
    verified_only: Annotated[
        bool, typer.Option("--verified-only", help="Only answers the guards accepted.")
    ] = False,
    errors_only: Annotated[
        bool,
        typer.Option(
            "--errors-only", help="Only corrections: examples whose model answer was wrong."
        ),
    ] = False,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", min=0.0, max=1.0, help="Share of images held out.")
    ] = 0.0,
    max_pixels: Annotated[
        int, typer.Option(help="Qwen2.5-VL frame size when the record does not say (= trainer's).")
    ] = 1280 * 28 * 28,
) -> None:
    """Write fine-tuning data (docs/export.md); no-target expressions become `[]` examples.

    Example: boxguard export /var/lib/boxguard --format llamafactory --out data --val-fraction 0.1
    """
    from boxguard.records.examples import load_examples
    from boxguard.records.export import FAMILIES, FORMATS, export

    if fmt not in FORMATS or family not in FAMILIES:
        raise typer.BadParameter(f"--format is one of {FORMATS}; --family one of {FAMILIES}")
    try:
        examples = load_examples(source)
        summary = export(
            examples,
            out,
            fmt,  # type: ignore[arg-type]
            family=family,  # type: ignore[arg-type]
            reviewed_only=reviewed_only,
            verified_only=verified_only,
            errors_only=errors_only,
            val_fraction=val_fraction,
            max_pixels=max_pixels,
        )
    except (FileNotFoundError, RuntimeError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    rows = ", ".join(f"{n} {split}" for split, n in sorted(summary.rows.items())) or "no rows"
    typer.echo(f"wrote {rows} to {out}")
    for reason, n in sorted(summary.skipped.items()):
        typer.echo(f"  left out {n}: {reason}")
