"""Points on the real ScreenSpot logs: parser coverage and point-in-box accuracy (issue 28).

Reads the four ``gui__*`` VLM-R1 logs of bench/data/real-outputs/ (Qwen2.5-VL-7B and its GRPO
checkpoints, box prompts), reads every answer as a point (``point_2d``, a two-number
``bbox_2d``, else a box's centre) and scores it as ScreenSpot does: the point lies in the true
box. Box-mode IoU > 0.5 is beside it for comparison. Writes the markdown table.

    python bench/points.py --markdown bench/results/points.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from boxguard.clients.metrics import summarize
from boxguard.clients.offline import evaluate_outputs, load_outputs
from boxguard.guards import Policy
from boxguard.guards.points import parse_points

DATA = Path(__file__).parent / "data" / "real-outputs"
POLICY = Policy(label_embeddings=False)


def row(path: Path) -> str:
    """One markdown row for one log."""
    outputs = load_outputs(path)
    parsed = [parse_points(o.output) for o in outputs]
    n = len(parsed)
    ok = sum(p.ok for p in parsed)
    with_point = sum(bool(p.boxes) for p in parsed)
    centres = sum("the centre is the point" in p.detail for p in parsed)
    points = evaluate_outputs(outputs, POLICY, output="point")
    boxes = evaluate_outputs(outputs, POLICY)
    sp, sb = summarize([r.outcome() for r in points]), summarize([r.outcome() for r in boxes])
    name = path.name.removesuffix("__screenspot_web.json.gz").removeprefix("gui__")
    sel = sp["selective_accuracy"]
    return (
        f"| {name} | {n} | {ok / n:.1%} | {with_point / n:.1%} | {with_point - centres} | "
        f"{sp['raw_accuracy']:.1%} | {sb['raw_accuracy']:.1%} | {sp['coverage']:.1%} | "
        f"{'—' if sel is None else f'{sel:.1%}'} | {sp['phi']['10']:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, help="Write the table here (else print it).")
    args = parser.parse_args()
    head = (
        "| log | answers | parsed (point mode) | with a point | written as a point | "
        "point in truth box | box IoU > 0.5 | coverage (point mode) | selective acc. | Φ10 |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [row(p) for p in sorted(DATA.glob("gui__*__screenspot_web.json.gz"))]
    table = "\n".join([head, *rows]) + "\n"
    if args.markdown is None:
        print(table)
        return
    text = args.markdown.read_text() if args.markdown.is_file() else ""
    marker = "<!-- table -->"
    if marker in text:
        before, _, rest = text.partition(marker)
        after = rest.partition(marker)[2]
        text = f"{before}{marker}\n{table}{marker}{after}"
    else:
        text = f"{marker}\n{table}{marker}\n"
    args.markdown.write_text(text)


if __name__ == "__main__":
    main()
