"""`boxguard ground` and `boxguard point`: one image (or a folder of them) and an expression."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from boxguard.clients.base import DEFAULT_TIMEOUT
from boxguard.clients.errors import BoxguardError
from boxguard.clients.images import is_url
from boxguard.clients.results import GroundResult

from .common import (
    ApiKeyOpt,
    OutputOpt,
    PolicyOpt,
    ServerOpt,
    TimeoutOpt,
    check_output,
    fail,
    make_client,
    parse_policy,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


# The options `ground` and `point` share.
ImageArg = Annotated[
    str, typer.Argument(help="Image file, folder of images or http(s) URL.", metavar="IMAGE")
]
ThinkOpt = Annotated[bool, typer.Option("--think", help="Ask for a think trace.")]
MultipleOpt = Annotated[bool, typer.Option("--multiple", help="Every matching object.")]
DrawOpt = Annotated[
    Path | None,
    typer.Option("--draw", metavar="FILE", help="Save the image with the answer drawn here."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the raw JSON response.")]


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


def ground(
    image: ImageArg,
    expression: Annotated[
        str, typer.Argument(help="Referring expression (not blank).", metavar="EXPRESSION")
    ],
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
    think: ThinkOpt = False,
    multiple: MultipleOpt = False,
    draw: DrawOpt = None,
    as_json: JsonOpt = False,
    policy: PolicyOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    output: OutputOpt = "box",
) -> None:
    """Ground EXPRESSION in IMAGE (a file, a folder's images, a URL): boxes or the abstention."""
    check_output(output)
    images = _images(image)
    overrides = parse_policy(policy)
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
                raise fail(exc, client.base_url) from None
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


def point(
    image: ImageArg,
    expression: Annotated[
        str, typer.Argument(help="What to point at (not blank).", metavar="EXPRESSION")
    ],
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
    think: ThinkOpt = False,
    multiple: MultipleOpt = False,
    draw: DrawOpt = None,
    as_json: JsonOpt = False,
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
