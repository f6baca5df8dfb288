"""Build corpus.jsonl: labelled model answers for the guards (run: python build_corpus.py).

Each case has the raw output, the request (expression, image size, frame, model size,
multiple, optional token logprobs and policy overrides), the expected verdict (status, boxes in
original pixels, reasons) and the ground truth `should_abstain`: whether returning the answer
would be wrong (a wrong or unusable box, or a wrong "no object"). Expected boxes are computed
here with plain arithmetic, independently of the guards' code. A few cases are known misses or
false alarms of the guards, kept on purpose so that the reported precision/recall are honest.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
CASES: list[dict[str, Any]] = []
DEMO = "the red circle left of the blue square"


def case(
    cid: str,
    category: str,
    output: str,
    expression: str,
    image_size: tuple[int, int],
    status: str,
    boxes: list[list[float]] | None = None,
    *,
    should_abstain: bool | None = None,
    reasons: list[str] | None = None,
    **request: Any,
) -> None:
    """Add one case; should_abstain defaults to (status == 'abstained')."""
    CASES.append(
        {
            "id": cid,
            "category": category,
            "output": output,
            "expression": expression,
            "image_size": list(image_size),
            **request,
            "expected_status": status,
            "expected_boxes": boxes or [],
            "expected_reasons": reasons or [],
            "should_abstain": status == "abstained" if should_abstain is None else should_abstain,
        }
    )


def px(b: list[float], img: tuple[int, int], model: tuple[int, int]) -> list[float]:
    """Model-frame pixels -> original pixels."""
    sx, sy = img[0] / model[0], img[1] / model[1]
    return [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]


def rel(b: list[float], img: tuple[int, int]) -> list[float]:
    """0..1000 relative -> original pixels."""
    return [b[0] * img[0] / 1000, b[1] * img[1] / 1000, b[2] * img[0] / 1000, b[3] * img[1] / 1000]


def tokens(
    text: str,
    digit_lp: float = -0.02,
    other_lp: float = -0.01,
    label_lp: float | None = None,
    branch_lp: float | None = None,
) -> list[list[Any]]:
    """Qwen-like tokens (one per digit) with chosen logprobs for digits / label / branch."""
    toks = re.findall(r"\d|<\|[a-z_]+\|>| ?[A-Za-z]+|\s+|[^\sA-Za-z\d]", text)
    out: list[list[Any]] = []
    pos = 0
    label_chars = set()
    for m in re.finditer(r'"label":\s*"([^"]*)"', text):
        label_chars.update(range(m.start(1), m.end(1)))
    answer_at = text.find("<answer>")
    branched = False
    for t in toks:
        lp = other_lp
        if t.isdigit():
            lp = digit_lp
        elif label_lp is not None and pos in label_chars:
            lp = label_lp
        elif (
            branch_lp is not None
            and not branched
            and pos > answer_at
            and t in ("{", "]", "<|box_start|>")
        ):
            lp, branched = branch_lp, True
        out.append([t, lp])
        pos += len(t)
    return out


def r1(think: str, answer: str) -> str:
    """An R1-style output."""
    return f"<think>{think}</think><answer>{answer}</answer>"


def obj(b: list[float], label: str | None = None) -> str:
    """One JSON object."""
    s = f'{{"bbox_2d": [{", ".join(str(v) for v in b)}]'
    return s + (f', "label": "{label}"}}' if label is not None else "}")


# --- A. formats that parse and are right -------------------------------------------------
IMG, MOD = (1280, 960), (644, 476)
case(
    "fmt-fenced-qwen25",
    "format",
    "```json\n[" + obj([120, 80, 300, 260], "red car") + "]\n```",
    "the red car",
    IMG,
    "accepted",
    [px([120, 80, 300, 260], IMG, MOD)],
    frame="pixels",
    model_size=list(MOD),
)
case(
    "fmt-bare-list",
    "format",
    "[" + obj([10, 20, 110, 220], "dog") + "]",
    "the dog",
    (640, 480),
    "accepted",
    [[10, 20, 110, 220]],
)
case(
    "fmt-single-object",
    "format",
    obj([15, 25, 215, 300], "cat"),
    "a cat on the sofa",
    (640, 480),
    "accepted",
    [[15, 25, 215, 300]],
)
case(
    "fmt-python-literal",
    "format",
    "[{'bbox_2d': [30, 40, 130, 240], 'label': 'woman'}]",
    "the woman in a hat",
    (640, 480),
    "accepted",
    [[30, 40, 130, 240]],
)
case(
    "fmt-answer-no-think",
    "format",
    "<answer>[" + obj([5, 6, 105, 206], "bicycle") + "]</answer>",
    "the bike",
    (640, 480),
    "accepted",
    [[5, 6, 105, 206]],
)
case(
    "fmt-r1-demo",
    "format",
    r1(
        "I see a red circle, a blue square and a green star. The "
        "target is the red circle left of the blue square. It is the red circle.",
        '[{"bbox_2d": [10, 20, 50, 60], "label": "red circle"}]',
    ),
    DEMO,
    (224, 224),
    "accepted",
    [[10, 20, 50, 60]],
)
case(
    "fmt-visual-rft",
    "format",
    "<answer>[{'Position': [100, 200, 300, 400], 'Confidence': 0.87}]</answer>",
    "the dog",
    (800, 600),
    "accepted",
    [rel([100, 200, 300, 400], (800, 600))],
)
case(
    "fmt-visual-rft-truncated",
    "format",
    "<answer>[{'Position': [100, 200, 300, 400], 'Confidence': 0.87}, {'Position': [520, 4",
    "the dog",
    (800, 600),
    "accepted",
    [rel([100, 200, 300, 400], (800, 600))],
)
case(
    "fmt-visual-rft-no-objects",
    "no_target",
    "<answer>No Objects</answer>",
    "the giraffe",
    (800, 600),
    "accepted",
    [],
)
case(
    "fmt-qwen2-box-tokens",
    "format",
    "<|object_ref_start|>a woman<|object_ref_end|>"
    "<|box_start|>(462,371),(709,785)<|box_end|><|im_end|>",
    "the woman holding an umbrella",
    (1000, 500),
    "accepted",
    [rel([462, 371, 709, 785], (1000, 500))],
)
case(
    "fmt-qwen2-box-tokens-nolabel",
    "format",
    "<|box_start|>(100,100),(400,500)<|box_end|>",
    "the tall man",
    (640, 480),
    "accepted",
    [rel([100, 100, 400, 500], (640, 480))],
)
case(
    "fmt-truncated-json",
    "format",
    "```json\n[" + obj([50, 60, 150, 260], "pole") + ', {"bbox_2d": [300, 40, 3',
    "metal pole",
    (640, 480),
    "accepted",
    [[50, 60, 150, 260]],
)
case("fmt-empty-list", "no_target", "[]", "the purple hexagon", (224, 224), "accepted", [])
case(
    "fmt-fenced-empty",
    "no_target",
    "```json\n[]\n```",
    "the cat under the table",
    (640, 480),
    "accepted",
    [],
)
case(
    "fmt-normalized-auto",
    "format",
    '[{"bbox_2d": [0.1, 0.2, 0.5, 0.6], "label": "cat"}]',
    "the cat",
    (640, 480),
    "accepted",
    [[64, 96, 320, 288]],
)
case(
    "fmt-baseline-bare-box",
    "format",
    "The pole is at [100, 50, 140, 400].",
    "metal pole",
    (640, 480),
    "accepted",
    [[100, 50, 140, 400]],
)
case(
    "fmt-reversed-corners",
    "geometry",
    obj([300, 260, 120, 80], "car"),
    "the car",
    (640, 480),
    "accepted",
    [[120, 80, 300, 260]],
)
case(
    "fmt-qwen3-relative",
    "format",
    "```json\n[" + obj([250, 250, 500, 750], "bottle") + "]\n```",
    "the green bottle",
    (1920, 1080),
    "accepted",
    [rel([250, 250, 500, 750], (1920, 1080))],
    frame="relative1000",
)
case(
    "fmt-think-close-only",
    "format",
    "The target is the brown dog.</think>\n<answer>["
    + obj([40, 50, 200, 300], "dog")
    + "]</answer>",
    "the brown dog",
    (640, 480),
    "accepted",
    [[40, 50, 200, 300]],
)
case(
    "fmt-bbox-key",
    "format",
    '[{"bbox": [11, 12, 111, 212], "label": "chair"}]',
    "the chair by the window",
    (640, 480),
    "accepted",
    [[11, 12, 111, 212]],
)
case(
    "fmt-multiple",
    "cardinality",
    "["
    + ", ".join(obj(b, "star") for b in ([10, 10, 40, 40], [100, 10, 140, 40], [10, 100, 40, 140]))
    + "]",
    "every star",
    (224, 224),
    "accepted",
    [[10, 10, 40, 40], [100, 10, 140, 40], [10, 100, 40, 140]],
    multiple=True,
)
case(
    "fmt-answer-no-objects-think",
    "no_target",
    r1("I see a cat and a sofa. There is no dog in the picture.", "No Objects"),
    "the dog",
    (640, 480),
    "accepted",
    [],
)
case(
    "fmt-label-key-name",
    "format",
    '[{"bbox_2d": [20, 30, 220, 330], "name": "person"}]',
    "the man on the left",
    (640, 480),
    "accepted",
    [[20, 30, 220, 330]],
)

# --- B. unparseable ------------------------------------------------------------------------
case(
    "bad-prose",
    "format",
    "The object is on the left side of the image.",
    "metal pole",
    (640, 480),
    "abstained",
    reasons=["format"],
)
case("bad-empty", "format", "", "metal pole", (640, 480), "abstained", reasons=["format"])
case(
    "bad-three-numbers",
    "format",
    '[{"bbox_2d": [10, 20, 30], "label": "pole"}]',
    "metal pole",
    (640, 480),
    "abstained",
    reasons=["format"],
)
case(
    "bad-only-truncated",
    "format",
    '[{"bbox_2d": [10, 20, 3',
    "metal pole",
    (640, 480),
    "abstained",
    reasons=["format"],
)
case(
    "bad-point-only",
    "format",
    '[{"point_2d": [100, 200], "label": "pole"}]',
    "metal pole",
    (640, 480),
    "abstained",
    reasons=["format"],
)
case(
    "bad-think-unclosed",
    "format",
    "<think>I am looking at the image and the pole is",
    "metal pole",
    (640, 480),
    "abstained",
    reasons=["format"],
)

# --- C. geometry ---------------------------------------------------------------------------
case(
    "geo-normalized-in-pixels",
    "geometry",
    '[{"bbox_2d": [0.1, 0.2, 0.5, 0.6], "label": "cat"}]',
    "the cat",
    (640, 480),
    "abstained",
    reasons=["geometry"],
    frame="pixels",
)
case(
    "geo-mostly-outside",
    "geometry",
    obj([600, 400, 900, 700], "dog"),
    "the dog",
    (640, 480),
    "abstained",
    reasons=["geometry"],
)
case(
    "geo-small-overshoot",
    "geometry",
    obj([500, 300, 650, 490], "dog"),
    "the dog",
    (640, 480),
    "accepted",
    [[500, 300, 640, 480]],
)
case(
    "geo-negative-overshoot",
    "geometry",
    obj([-5, -3, 200, 150], "dog"),
    "the dog",
    (640, 480),
    "accepted",
    [[0, 0, 200, 150]],
)
case(
    "geo-zero-width",
    "geometry",
    obj([100, 100, 100, 200], "pole"),
    "metal pole",
    (640, 480),
    "abstained",
    reasons=["geometry"],
)
case(
    "geo-one-pixel",
    "geometry",
    obj([100, 100, 101, 101], "star"),
    "the green star",
    (224, 224),
    "abstained",
    reasons=["geometry"],
)
case(
    "geo-whole-image",
    "geometry",
    obj([0, 0, 640, 480], "dog"),
    "the dog",
    (640, 480),
    "abstained",
    reasons=["geometry"],
)
case(
    "geo-whole-image-asked",
    "geometry",
    obj([0, 0, 640, 480], "image"),
    "the whole image",
    (640, 480),
    "accepted",
    [[0, 0, 640, 480]],
)
case(
    "geo-qwen25-outside-model-frame",
    "geometry",
    "```json\n[" + obj([600, 400, 1300, 990], "bus") + "]\n```",
    "the bus",
    IMG,
    "abstained",
    reasons=["geometry"],
    frame="pixels",
    model_size=list(MOD),
)

# --- D. cardinality ------------------------------------------------------------------------
case(
    "card-two-distinct",
    "cardinality",
    "[" + obj([10, 10, 60, 60], "circle") + ", " + obj([150, 150, 200, 200], "circle") + "]",
    "the red circle",
    (224, 224),
    "abstained",
    reasons=["cardinality"],
)
case(
    "card-near-duplicates",
    "cardinality",
    "[" + obj([10, 10, 60, 60], "circle") + ", " + obj([11, 10, 61, 61], "circle") + "]",
    "the red circle",
    (224, 224),
    "accepted",
    [[10, 10, 60, 60]],
)
case(
    "card-multiple-merge",
    "cardinality",
    "["
    + obj([10, 10, 60, 60], "dog")
    + ", "
    + obj([12, 11, 60, 61], "dog")
    + ", "
    + obj([300, 200, 400, 300], "dog")
    + "]",
    "two dogs",
    (640, 480),
    "accepted",
    [[10, 10, 60, 60], [300, 200, 400, 300]],
    multiple=True,
)

# --- E. labels -----------------------------------------------------------------------------
POLE_THINK = (
    "There is a metal pole on the left of the image and a man in blue shirt standing "
    "next to it. The man in blue shirt is the target."
)
case(
    "lab-known-case",
    "label",
    r1(POLE_THINK, '[{"bbox_2d": [300, 100, 420, 460], "label": "man in blue shirt"}]'),
    "metal pole",
    (640, 480),
    "abstained",
    reasons=["label_match", "think_consistency"],
)
case(
    "lab-known-case-no-think",
    "label",
    '[{"bbox_2d": [300, 100, 420, 460], "label": "man in blue shirt"}]',
    "metal pole",
    (640, 480),
    "abstained",
    reasons=["label_match"],
)
case(
    "lab-other-noun-bus",
    "label",
    obj([200, 50, 600, 400], "bus"),
    "the pole left of the bus",
    (640, 480),
    "abstained",
    reasons=["label_match"],
)
case(
    "lab-other-noun-umbrella",
    "label",
    obj([100, 20, 300, 120], "umbrella"),
    "the woman holding an umbrella",
    (640, 480),
    "abstained",
    reasons=["label_match"],
)
case(
    "lab-demo-other-shape",
    "label",
    obj([120, 20, 160, 60], "blue square"),
    DEMO,
    (224, 224),
    "abstained",
    reasons=["label_match"],
)
case(
    "lab-demo-colour-conflict",
    "label",
    obj([10, 20, 50, 60], "blue circle"),
    "the red circle",
    (224, 224),
    "abstained",
    reasons=["label_match"],
)
case(
    "lab-demo-size-conflict",
    "label",
    obj([10, 20, 50, 60], "large star"),
    "the small star",
    (224, 224),
    "abstained",
    reasons=["label_match"],
)
case(
    "lab-demo-ordinal",
    "label",
    obj([5, 100, 35, 130], "green star"),
    "the leftmost green star",
    (224, 224),
    "accepted",
    [[5, 100, 35, 130]],
)
case(
    "lab-demo-head-only",
    "label",
    obj([150, 150, 190, 190], "hexagon"),
    "the bottom-most small hexagon",
    (224, 224),
    "accepted",
    [[150, 150, 190, 190]],
)
case(
    "lab-synonym-guy",
    "label",
    obj([50, 50, 200, 400], "man"),
    "the guy in red",
    (640, 480),
    "accepted",
    [[50, 50, 200, 400]],
)
case(
    "lab-synonym-couch",
    "label",
    obj([50, 200, 500, 450], "couch"),
    "the sofa",
    (640, 480),
    "accepted",
    [[50, 200, 500, 450]],
)
case(
    "lab-hypernym-person",
    "label",
    obj([50, 50, 200, 400], "person"),
    "the man on the left",
    (640, 480),
    "accepted",
    [[50, 50, 200, 400]],
)
case(
    "lab-plural",
    "label",
    obj([50, 50, 300, 200], "Buses"),
    "the bus",
    (640, 480),
    "accepted",
    [[50, 50, 300, 200]],
)
case(
    "lab-case-article",
    "label",
    obj([10, 10, 100, 100], "A Cat"),
    "The Cat",
    (640, 480),
    "accepted",
    [[10, 10, 100, 100]],
)
case(
    "lab-compound",
    "label",
    obj([100, 10, 130, 400], "flagpole"),
    "the pole",
    (640, 480),
    "accepted",
    [[100, 10, 130, 400]],
)
case(
    "lab-generic-expression",
    "label",
    obj([10, 10, 100, 100], "dog"),
    "the one on the left",
    (640, 480),
    "accepted",
    [[10, 10, 100, 100]],
)
case(
    "lab-unrelated",
    "label",
    obj([10, 10, 100, 100], "banana"),
    "the dog",
    (640, 480),
    "abstained",
    reasons=["label_match"],
)
# Known false alarm: 'lantern' is a kind of lamp but the lexicon does not know it.
case(
    "lab-unknown-synonym",
    "label",
    obj([200, 40, 260, 140], "lantern"),
    "the lamp",
    (640, 480),
    "abstained",
    reasons=["label_match"],
    should_abstain=False,
)
case(
    "lab-python-literal-distractor",
    "label",
    "[{'bbox_2d': [100, 20, 300, 120], 'label': 'umbrella'}]",
    "the woman holding an umbrella",
    (640, 480),
    "abstained",
    reasons=["label_match"],
)

# --- F. think traces -----------------------------------------------------------------------
case(
    "think-no-target",
    "no_target",
    r1("I see a red circle, a blue square and a green star. There is no yellow hexagon.", "[]"),
    "the yellow hexagon",
    (224, 224),
    "accepted",
    [],
)
case(
    "think-absent-but-box",
    "think",
    r1(
        "I see a red circle and a blue square. There is no yellow hexagon.",
        obj([10, 20, 50, 60], "yellow hexagon"),
    ),
    "the yellow hexagon",
    (224, 224),
    "abstained",
    reasons=["think_consistency"],
)
case(
    "think-selects-other",
    "think",
    r1(
        "I see a red circle and a blue square. The target is the blue square.",
        "[" + obj([10, 20, 50, 60], "circle") + "]",
    ),
    DEMO,
    (224, 224),
    "abstained",
    reasons=["think_consistency"],
)
case(
    "think-selects-but-empty",
    "think",
    r1("The target is the red circle on the left.", "[]"),
    "the red circle",
    (224, 224),
    "abstained",
    reasons=["think_consistency"],
)
case(
    "think-quoted-box-agrees",
    "think",
    r1(
        "The red circle is at [10, 20, 50, 60]. It is the red circle.",
        "[" + obj([11, 20, 50, 61], "red circle") + "]",
    ),
    DEMO,
    (224, 224),
    "accepted",
    [[11, 20, 50, 61]],
)
case(
    "think-quoted-box-disagrees",
    "think",
    r1(
        "The red circle is at [150, 150, 200, 200]. It is the red circle.",
        "[" + obj([10, 20, 50, 60], "red circle") + "]",
    ),
    DEMO,
    (224, 224),
    "abstained",
    reasons=["think_consistency"],
)
case(
    "think-other-absent",
    "think",
    r1(
        "There is no bus in the image, so the target is the pole near the sidewalk.",
        obj([100, 10, 130, 400], "pole"),
    ),
    "the pole left of the bus",
    (640, 480),
    "accepted",
    [[100, 10, 130, 400]],
)
case(
    "think-other-colour-absent",
    "think",
    r1(
        "There is no red hexagon. I see a yellow hexagon at the bottom. It is the yellow hexagon.",
        obj([150, 150, 190, 190], "yellow hexagon"),
    ),
    "the yellow hexagon",
    (224, 224),
    "accepted",
    [[150, 150, 190, 190]],
)
case(
    "think-colour-selection-conflict",
    "think",
    r1(
        "I see a red circle and a blue circle. It is the blue circle.",
        obj([150, 150, 190, 190], "circle"),
    ),
    "the red circle",
    (224, 224),
    "abstained",
    reasons=["think_consistency"],
)
case(
    "think-cannot-find",
    "think",
    r1("I looked everywhere but I cannot find a giraffe.", obj([10, 10, 200, 300], "giraffe")),
    "the giraffe",
    (640, 480),
    "abstained",
    reasons=["think_consistency"],
)
case(
    "think-changes-mind",
    "think",
    r1(
        "At first I thought there is no pole. Looking again, "
        "the target is the metal pole on the left.",
        obj([100, 10, 130, 400], "metal pole"),
    ),
    "metal pole",
    (640, 480),
    "accepted",
    [[100, 10, 130, 400]],
)

# --- G. confidence from logprobs -----------------------------------------------------------
OUT = '[{"bbox_2d": [10, 20, 50, 60], "label": "red circle"}]'
case(
    "conf-high",
    "confidence",
    OUT,
    DEMO,
    (224, 224),
    "accepted",
    [[10, 20, 50, 60]],
    token_logprobs=tokens(OUT),
)
case(
    "conf-low-digits",
    "confidence",
    OUT,
    DEMO,
    (224, 224),
    "abstained",
    reasons=["confidence"],
    token_logprobs=tokens(OUT, digit_lp=-2.5),
)
case(
    "conf-medium",
    "confidence",
    OUT,
    DEMO,
    (224, 224),
    "accepted",
    [[10, 20, 50, 60]],
    token_logprobs=tokens(OUT, digit_lp=-0.9),
)
case(
    "conf-medium-strict-policy",
    "confidence",
    OUT,
    DEMO,
    (224, 224),
    "abstained",
    reasons=["confidence"],
    token_logprobs=tokens(OUT, digit_lp=-0.9),
    policy={"min_confidence": 0.6},
)
case(
    "conf-low-label",
    "confidence",
    OUT,
    DEMO,
    (224, 224),
    "abstained",
    reasons=["confidence"],
    token_logprobs=tokens(OUT, label_lp=-6.0, digit_lp=-0.6),
)
EMPTY = "<answer>[]</answer>"
case(
    "conf-no-object-confident",
    "no_target",
    EMPTY,
    "the purple star",
    (224, 224),
    "accepted",
    token_logprobs=tokens(EMPTY),
)
case(
    "conf-no-object-uncertain",
    "no_target",
    EMPTY,
    "the purple star",
    (224, 224),
    "abstained",
    reasons=["confidence"],
    token_logprobs=tokens(EMPTY, branch_lp=-2.3),
)
case(
    "conf-mismatched-tokens",
    "confidence",
    OUT,
    DEMO,
    (224, 224),
    "accepted",
    [[10, 20, 50, 60]],
    token_logprobs=[["something else", -3.0]],
)
Q2 = "<|object_ref_start|>a dog<|object_ref_end|><|box_start|>(100,200),(300,400)<|box_end|>"
case(
    "conf-box-tokens-low",
    "confidence",
    Q2,
    "the dog",
    (1000, 1000),
    "abstained",
    reasons=["confidence"],
    token_logprobs=tokens(Q2, digit_lp=-3.0),
)
R1OUT = r1("It is the red circle.", OUT)
case(
    "conf-r1-high",
    "confidence",
    R1OUT,
    DEMO,
    (224, 224),
    "accepted",
    [[10, 20, 50, 60]],
    token_logprobs=tokens(R1OUT),
)

# --- H. honest misses: wrong answers with no signal, or right ones the guards reject ---------
case(
    "miss-wrong-box-right-label",
    "miss",
    obj([150, 150, 200, 200], "red circle"),
    DEMO,
    (224, 224),
    "accepted",
    [[150, 150, 200, 200]],
    should_abstain=True,
)
case(
    "miss-wrong-instance",
    "miss",
    obj([400, 100, 500, 300], "man"),
    "the man on the left",
    (640, 480),
    "accepted",
    [[400, 100, 500, 300]],
    should_abstain=True,
)
case(
    "miss-false-no-target",
    "miss",
    "[]",
    "the green star",
    (224, 224),
    "accepted",
    should_abstain=True,
)
case(
    "fa-confident-but-unsure",
    "miss",
    OUT,
    DEMO,
    (224, 224),
    "abstained",
    reasons=["confidence"],
    token_logprobs=tokens(OUT, digit_lp=-2.0),
    should_abstain=False,
)


if __name__ == "__main__":
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    with (HERE / "corpus.jsonl").open("w") as f:
        for c in CASES:
            f.write(json.dumps(c) + "\n")
    print(f"wrote {len(CASES)} cases")
