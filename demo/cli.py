"""`boxguard demo`: render a shapes scene, ground expressions through a real server, show it."""

from __future__ import annotations

import json
from pathlib import Path

from boxguard.clients import Client, GroundResult
from boxguard.guards.geometry import iou
from PIL import Image
from rich.console import Console
from rich.table import Table

from .dataset import demo_scene
from .expressions import Sample
from .scenes import render_scene

# A request that tightens the policy: only near-certain answers pass, so the guards reject it.
GUARD_PROBE_POLICY = {"min_confidence": 0.99}


def _grid(panels: list[Image.Image], columns: int = 3) -> Image.Image:
    """Tile equally sized panels left to right, top to bottom."""
    width, height = panels[0].size
    rows = -(-len(panels) // columns)
    sheet = Image.new("RGB", (width * columns, height * rows), "white")
    for i, panel in enumerate(panels):
        sheet.paste(panel.resize((width, height)), ((i % columns) * width, (i // columns) * height))
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
    results: list[GroundResult] = []
    with Client(url, retries=2) as client:
        for i, sample in enumerate(samples):
            results.append(client.ground(image, sample.expression, think=i % 2 == 1))
        probe = client.ground(image, samples[0].expression, policy=GUARD_PROBE_POLICY)
    console.print_json(json.dumps(results[0].model_dump(mode="json")))
    table = Table(title=f"boxguard demo via {url}")
    for column in ("expression", "status", "box (px)", "label", "conf", "truth IoU", "reasons"):
        table.add_column(column)
    rows = [(s.expression, s.bbox, r) for s, r in zip(samples, results, strict=True)]
    rows.append((samples[0].expression + "  [policy min_confidence=0.99]", samples[0].bbox, probe))
    for expression, truth, result in rows:
        top = result.top or result.top_candidate
        box = "-" if top is None else "[" + ", ".join(f"{v:.0f}" for v in top.bbox) + "]"
        overlap = "-" if top is None or truth is None else f"{iou(top.bbox, truth):.2f}"
        conf = "-" if top is None or top.confidence is None else f"{top.confidence:.2f}"
        style = "green" if result.status == "accepted" else "yellow"
        table.add_row(
            expression,
            f"[{style}]{result.status}[/]",
            box,
            (top.label if top else None) or "-",
            conf,
            overlap,
            ", ".join(result.reasons) or "-",
        )
    console.print(table)
    panels = [r.draw(image, expression=e) for e, _, r in rows]
    _grid(panels).save(out)
    console.print(f"annotated image: {Path(out).resolve()}")
    return [*results, probe]
