"""`boxguard demo`: render a shapes scene, ground expressions through a real server, show it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import NamedTuple

from boxguard.clients import Client, GroundResult
from boxguard.clients.draw import ABSTAIN_COLOR, PALETTE, dashed_rectangle
from boxguard.guards.geometry import iou
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .dataset import demo_scene
from .explain import verdict_words
from .expressions import Sample
from .scenes import render_scene

# A request that tightens the policy: only near-certain answers pass, so the guards reject it.
GUARD_PROBE_POLICY = {"min_confidence": 0.99}
PROBE_SAMPLE = 1  # asked again with that policy: an expression the checkpoint answers with a box


# The true box: thin, labelled and in a colour no answer is drawn in (clients/draw.py PALETTE).
TRUTH_COLOR = (255, 0, 170)


def _with_truth(panel: Image.Image, truth: tuple[int, int, int, int] | None) -> Image.Image:
    """The drawn answer with the true box over it, so a wrong verdict shows at a glance."""
    out = panel.copy()
    draw = ImageDraw.Draw(out)
    size = max(11, min(out.size) // 40)
    font = ImageFont.load_default(size=size)
    if truth is None:
        label, at = "truth: no such object", (4, out.height - size - 8)
    else:
        draw.rectangle(truth, outline=TRUTH_COLOR, width=max(1, min(out.size) // 400))
        label = "truth"
        below = truth[3] + 4
        at = (truth[0], below if below + size + 4 < out.height else truth[1] - size - 6)
    left, top, right, bottom = draw.textbbox(at, label, font=font)
    draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=TRUTH_COLOR)
    draw.text(at, label, fill="white", font=font)
    return out


def _legend(width: int, height: int) -> Image.Image:
    """A panel saying what each colour and line means (fills a cell the grid would leave)."""
    out = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(out)
    size = max(12, width // 30)
    font = ImageFont.load_default(size=size)
    keys = [
        (PALETTE[0], False, "accepted answer (solid)"),
        (ABSTAIN_COLOR, True, "rejected candidate (dashed)"),
        (TRUTH_COLOR, False, "truth (thin, labelled)"),
    ]
    draw.text((12, 12), "legend", fill="black", font=font)
    for i, (color, dashed, text) in enumerate(keys):
        y = 12 + (i + 1.5) * size * 2.2
        box = (12.0, y, 12.0 + size * 2, y + size)
        if dashed:
            dashed_rectangle(draw, box, color, 3, dash=9.0)
        else:
            draw.rectangle(box, outline=color, width=1 if color == TRUTH_COLOR else 3)
        draw.text((24 + size * 2, y), text, fill="black", font=font)
    return out


def _grid(panels: list[Image.Image]) -> Image.Image:
    """Tile panels and a legend left to right, top to bottom, leaving no cell empty if it can."""
    width = max(p.width for p in panels)
    height = max(p.height for p in panels)
    panels = [*panels, _legend(width, height)]
    columns = min((3, 4, 2), key=lambda c: -len(panels) % c)
    height = max(p.height for p in panels)
    rows = -(-len(panels) // columns)
    sheet = Image.new("RGB", (width * columns, height * rows), "white")
    for i, panel in enumerate(panels):
        sheet.paste(panel, ((i % columns) * width, (i // columns) * height))
    return sheet


def run_demo(
    out: str | Path = "demo.png",
    port: int = 0,
    model: str | None = None,
    server: str | None = None,
) -> list[GroundResult]:
    """Serve the model (or use `server`), ground the demo scene, print and draw the results.

    Example:
        >>> results = run_demo("demo.png")  # doctest: +SKIP
    """
    console = Console()
    scene, samples = demo_scene()
    image = render_scene(scene)
    if server is not None:
        return _ground_all(server, image, samples, out, console)
    from boxguard.server.app import create_app
    from boxguard.server.serve import serve_in_thread
    from boxguard.server.settings import Settings

    console.print("[bold]starting boxguard[/] (transformers backend, loopback) ...")
    with serve_in_thread(create_app(Settings(model=model, port=port)), port=port) as url:
        return _ground_all(url, image, samples, out, console)


def _ground_all(
    url: str, image: Image.Image, samples: list[Sample], out: str | Path, console: Console
) -> list[GroundResult]:
    """Ground every demo expression plus one guard probe; print JSON, a table and the image."""
    rows = ground_rows(url, image, samples)
    console.print_json(json.dumps(rows[0].result.model_dump(mode="json")))
    console.print(verdict_table(url, rows))
    panels = [
        captioned(
            _with_truth(row.result.draw(image, expression=row.expression), row.truth),
            row.shown,
            verdict_words(row.result, row.expression),
            truth_iou(row.result, row.truth),
        )
        for row in rows
    ]
    _grid(panels).save(out)
    console.print(f"annotated image: {Path(out).resolve()}")
    return [row.result for row in rows]


def ground_rows(url: str, image: Image.Image, samples: list[Sample]) -> list[Row]:
    """The demo's requests through the server at `url`: every expression (every second one with
    a think trace), then one expression again under the tightening probe policy."""
    results: list[GroundResult] = []
    with Client(url, retries=2) as client:
        for i, sample in enumerate(samples):
            results.append(client.ground(image, sample.expression, think=i % 2 == 1))
        probe = client.ground(image, samples[PROBE_SAMPLE].expression, policy=GUARD_PROBE_POLICY)
    rows = [Row(s.expression, "", s.bbox, r) for s, r in zip(samples, results, strict=True)]
    note = "[policy " + " ".join(f"{k}={v}" for k, v in GUARD_PROBE_POLICY.items()) + "]"
    rows.append(Row(samples[PROBE_SAMPLE].expression, note, samples[PROBE_SAMPLE].bbox, probe))
    return rows


class Row(NamedTuple):
    """One demo request: its expression, policy note (if any), true box and result."""

    expression: str
    note: str
    truth: tuple[int, int, int, int] | None
    result: GroundResult

    @property
    def shown(self) -> str:
        """The expression with its policy note, as printed."""
        return f"{self.expression}  {self.note}" if self.note else self.expression


def truth_iou(result: GroundResult, truth: tuple[int, int, int, int] | None) -> str:
    """IoU of the answered (or rejected) box with the true box: 0 for no box although the target
    is there, '-' when there is no target."""
    top = result.top or result.top_candidate
    if truth is None:
        return "-"
    return "0.00" if top is None else f"{iou(top.bbox, truth):.2f}"


def verdict_table(url: str, rows: list[Row]) -> Table:
    """Expression, verdict with its reason in words, and the true IoU; fits 80 columns."""
    table = Table(title=f"boxguard demo via {escape(url)}", show_lines=True)
    table.add_column("expression", ratio=2)
    table.add_column("verdict and why", ratio=3)
    table.add_column("IoU", justify="right", no_wrap=True)
    for row in rows:
        words = verdict_words(row.result, row.expression)
        style = "green" if row.result.status == "accepted" else "yellow"
        # Expressions are plain text: "[policy ...]" must print, not be read as Rich markup.
        table.add_row(
            escape(row.shown), f"[{style}]{escape(words)}[/]", truth_iou(row.result, row.truth)
        )
    return table


def captioned(panel: Image.Image, expression: str, words: str, iou: str) -> Image.Image:
    """The drawn result with its expression and verdict in words written below it."""
    size = max(12, panel.width // 30)
    font = ImageFont.load_default(size=size)
    chars = max(20, int(panel.width / (size * 0.55)))
    lines = [f'"{expression}"', *textwrap.wrap(f"{words} (IoU with truth {iou})", chars)]
    band = (size + 4) * len(lines) + 8
    out = Image.new("RGB", (panel.width, panel.height + band), "white")
    out.paste(panel, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        color = (
            (0, 0, 0) if i == 0 else ((0, 120, 0) if words.startswith("accepted") else (180, 0, 0))
        )
        draw.text((6, panel.height + 4 + i * (size + 4)), line, fill=color, font=font)
    return out
