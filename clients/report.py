"""Write an evaluation's files: samples.jsonl, report.json, report.md, a risk–coverage PNG and
index.html with a grid of drawn thumbnails (right, wrong, abstained, error)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from .draw import ABSTAIN_COLOR, dashed_rectangle, draw_result
from .evaluation import SampleRecord
from .images import load_image
from .metrics import risk_coverage_curve

__all__ = ["PLOT_MISSING", "can_plot", "write_report"]

PLOT_MISSING = 'no risk–coverage PNG: matplotlib is not installed (pip install "boxguard[eval]")'
# One line per metric whose name alone does not say what it is (report.md's legend).
METRIC_LEGEND = (
    "- **coverage**: share of samples answered (not abstained).",
    "- **selective accuracy**: accuracy over the answered samples only.",
    "- **AURC**: area under the risk–coverage curve of the raw answers ranked by confidence "
    "(mean error rate of the k most confident, over every k); lower is better.",
    "- **Φc** (Φ1, Φ10, Φ100): mean score with +1 per right answer, −c per wrong answer and 0 "
    "per abstention; higher is better, and a larger c punishes wrong answers more.",
    "- **N-acc**: share of no-target samples answered with no box (gRefCOCO).",
    "- **T-acc**: share of target samples not wrongly answered as 'no target' (gRefCOCO).",
)

GT_COLOR = (255, 235, 59)
THUMB_SIDE = 320
CATEGORY_COLORS = {"right": "#2e7d32", "wrong": "#c62828", "abstained": "#ef6c00", "error": "#555"}


def _fmt(value: Any, digits: int = 3) -> str:
    """A metric for humans: fixed decimals, '—' for None."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _curve(records: Sequence[SampleRecord]) -> list[tuple[float, float]]:
    """Risk–coverage points of the raw answers, errors left out."""
    scored = [r for r in records if r.status != "error"]
    return risk_coverage_curve((r.confidence, r.raw_correct) for r in scored)


def can_plot() -> bool:
    """Whether matplotlib (the `eval` extra) is installed, so the risk–coverage PNG is written."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _plot(curve: list[tuple[float, float]], summary: dict[str, Any], path: Path) -> bool:
    """Save the risk–coverage curve as PNG; False when matplotlib is not installed."""
    if not can_plot():
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    if curve:
        ax.plot(
            [c for c, _ in curve],
            [r for _, r in curve],
            marker="o",
            markersize=3,
            label=f"raw answers by confidence (AURC {_fmt(summary.get('aurc'))})",
        )
    if summary.get("coverage") is not None and summary.get("selective_accuracy") is not None:
        risk = 1.0 - summary["selective_accuracy"]
        ax.scatter(
            [summary["coverage"]],
            [risk],
            color="red",
            zorder=3,
            label="policy in use (its verdicts)",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("coverage")
    ax.set_ylabel("risk (error rate of answered)")
    ax.set_title("Risk–coverage")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def check_rows(checks: dict[str, dict[str, Any]]) -> list[tuple[str, ...]]:
    """Rows of the per-check table of an offline evaluation (see offline.check_breakdown)."""
    return [
        (
            name,
            str(c["abstained"]),
            str(c["right_abstained"]),
            _fmt(c["false_abstention_rate"]),
            _fmt(c["catch_rate"]),
        )
        for name, c in checks.items()
    ]


CHECK_COLUMNS = (
    "check",
    "abstained",
    "of them right answers",
    "false-abstention rate",
    "catch rate",
)


def check_table(checks: dict[str, dict[str, Any]]) -> Any:
    """The per-check table as a rich Table (for the CLI)."""
    from rich.table import Table

    table = Table(
        title="abstentions per check (rates: of all right / all wrong raw answers)",
        title_justify="left",
    )
    for column in CHECK_COLUMNS:
        table.add_column(column, justify="left" if column == "check" else "right")
    for row in check_rows(checks):
        table.add_row(*row)
    return table


def _markdown(summary: dict[str, Any], has_plot: bool) -> str:
    """report.md: the headline metrics and the abstention reasons."""
    phi = summary.get("phi", {})
    rows = [
        ("samples", summary["n"]),
        ("accuracy (abstentions count as wrong)", summary["accuracy"]),
        ("raw accuracy (model's top box)", summary["raw_accuracy"]),
        ("coverage", summary["coverage"]),
        ("selective accuracy", summary["selective_accuracy"]),
        (
            "selective risk (95% Clopper–Pearson)",
            f"{_fmt(summary.get('selective_risk'))} "
            f"[{', '.join(_fmt(v) for v in summary.get('selective_risk_ci95') or [])}]",
        ),
        (
            "coverage at risk 1% / 5% / 10% (raw answers by confidence)",
            " / ".join(_fmt(v) for v in (summary.get("coverage_at_risk") or {}).values()),
        ),
        ("AURC (raw answers by confidence)", summary["aurc"]),
        ("Φ1 / Φ10 / Φ100", " / ".join(_fmt(phi.get(k)) for k in ("1", "10", "100"))),
        ("N-acc / T-acc", f"{_fmt(summary['n_acc'])} / {_fmt(summary['t_acc'])}"),
        (
            "best Φ10 min_confidence (Φ10, coverage there)",
            f"{_fmt(summary['best_threshold_phi10'])} ({_fmt(summary['phi10_at_best_threshold'])}, "
            f"{_fmt(summary['coverage_at_best_threshold'])})",
        ),
        ("errors", summary.get("errors", 0)),
    ]
    lines = [
        "# boxguard evaluation",
        "",
        f"dataset `{summary.get('dataset')}`, server `{summary.get('server')}`, "
        f"model `{summary.get('model')}`",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {name} | {_fmt(value)} |" for name, value in rows),
        "",
        "## Abstentions by reason",
        "",
    ]
    reasons = summary.get("abstentions_by_reason") or {}
    lines += [f"- `{k}`: {v}" for k, v in reasons.items()] or ["none"]
    if summary.get("checks"):
        lines += [
            "",
            "## Abstentions per check",
            "",
            f"Parse rate {_fmt(summary.get('parse_rate'))}. Rates are of all right / all wrong "
            "raw answers; `all` is the verdict.",
            "",
            "| " + " | ".join(CHECK_COLUMNS) + " |",
            "|---|---|---|---|---|",
            *("| " + " | ".join(row) + " |" for row in check_rows(summary["checks"])),
        ]
    lines += ["", "## What the metrics mean", "", *METRIC_LEGEND]
    if has_plot:
        lines += ["", "![risk-coverage](risk_coverage.png)"]
    else:
        lines += ["", f"({PLOT_MISSING})"]
    lines += ["", "Per-sample rows: `samples.jsonl`; image grid: `index.html`.", ""]
    return "\n".join(lines)


def _thumbnail(record: SampleRecord) -> Image.Image:
    """The sample's image at thumbnail size with the answer drawn and the ground truth dashed
    yellow (drawn after resizing, so labels stay legible)."""
    image = load_image(record.sample.image)
    width, height = image.size
    scale = THUMB_SIDE / max(width, height)
    image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))))
    if record.result is not None:
        canvas = draw_result(record.result, image, expression=record.sample.expression, width=2)
    else:
        canvas = image.copy()
        draw = ImageDraw.Draw(canvas)
        draw.rectangle([0, 0, canvas.width, 14], fill=ABSTAIN_COLOR)
        draw.text((3, 1), f"ERROR {record.reasons[0] if record.reasons else ''}", fill="white")
    if record.sample.bbox is not None:
        sx, sy = canvas.width / width, canvas.height / height
        x1, y1, x2, y2 = record.sample.bbox
        dashed_rectangle(
            ImageDraw.Draw(canvas), (x1 * sx, y1 * sy, x2 * sx, y2 * sy), GT_COLOR, 1, 4.0
        )
    return canvas


def _html(summary: dict[str, Any], cells: list[str]) -> str:
    """index.html: headline metrics and the thumbnail grid."""
    colors = "".join(f".{k}{{border-color:{v}}}" for k, v in CATEGORY_COLORS.items())
    head = (
        f"n={summary['n']} · accuracy {_fmt(summary['accuracy'])} · coverage "
        f"{_fmt(summary['coverage'])} · selective accuracy {_fmt(summary['selective_accuracy'])}"
        f" · Φ10 {_fmt(summary['phi'].get('10'))}"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>boxguard evaluation</title>
<style>body{{font-family:sans-serif;margin:1em}}.grid{{display:flex;flex-wrap:wrap;gap:8px}}
figure{{margin:0;border:4px solid;width:{THUMB_SIDE}px}}figure img{{max-width:100%;display:block}}
figcaption{{font-size:12px;padding:2px 4px;word-break:break-word}}{colors}</style></head>
<body><h1>boxguard evaluation</h1><p>{html.escape(head)}</p>
<p>Legend: <b style="color:{CATEGORY_COLORS["right"]}">right</b>,
<b style="color:{CATEGORY_COLORS["wrong"]}">wrong</b>,
<b style="color:{CATEGORY_COLORS["abstained"]}">abstained</b> (dashed red: rejected candidates),
ground truth dashed yellow. <a href="report.md">report.md</a> ·
<a href="report.json">report.json</a> · <a href="samples.jsonl">samples.jsonl</a></p>
<div class="grid">
{chr(10).join(cells)}
</div></body></html>
"""


def _cell(record: SampleRecord, thumb: str | None) -> str:
    """One figure of the grid."""
    caption = (
        f"<b>{html.escape(record.category)}</b> · {html.escape(record.sample.id)}: "
        f"{html.escape(record.sample.expression)}"
    )
    if record.iou is not None:
        caption += f" · IoU {record.iou:.2f}"
    if record.reasons:
        caption += f" · {html.escape(', '.join(record.reasons))}"
    image = f'<img src="{html.escape(thumb)}" loading="lazy" alt="">' if thumb else ""
    return f'<figure class="{record.category}">{image}<figcaption>{caption}</figcaption></figure>'


def write_report(
    records: Sequence[SampleRecord],
    summary: dict[str, Any],
    out_dir: Path,
    *,
    max_thumbnails: int = 500,
) -> None:
    """Write samples.jsonl, report.json, report.md, risk_coverage.png, index.html and thumbs/."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "samples.jsonl").open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record.row(), ensure_ascii=False) + "\n")
    curve = _curve(records)
    has_plot = _plot(curve, summary, out_dir / "risk_coverage.png")
    report = {**summary, "risk_coverage": [[c, r] for c, r in curve]}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(_markdown(summary, has_plot), encoding="utf-8")
    thumbs = out_dir / "thumbs"
    thumbs.mkdir(exist_ok=True)
    cells = []
    for index, record in enumerate(records):
        name: str | None = None
        if index < max_thumbnails:
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", record.sample.id)[:80]
            name = f"thumbs/{index:05d}-{safe}.png"
            try:
                _thumbnail(record).save(out_dir / name)
            except OSError:
                name = None
        cells.append(_cell(record, name))
    (out_dir / "index.html").write_text(_html(summary, cells), encoding="utf-8")
