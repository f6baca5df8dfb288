"""boxguard.guards: decide, for every grounding answer, whether to return it or abstain, and why.

Pure Python + pydantic; usable offline to verify the output of any VLM::

    from boxguard.guards import verify, Policy
    verdict = verify(raw_text, "the red circle", (640, 480), policy=Policy(min_confidence=0.5))

or in two phases, gathering the model-backed evidence yourself (the server does, batched)::

    plan = prepare(raw_text, "the red circle", (640, 480))
    verdict = plan.finish(Evidence(yes_probabilities=(0.9,) * len(plan.crops)))

Submodules: ``parse`` (parse_output), ``threshold`` (pick_threshold, phi_c, risk_coverage),
``geometry`` (iou, map_box), ``embed`` (optional embedding extra, warmup()).
"""

from .faults import GuardFault
from .plan import Plan, prepare
from .policy import Policy
from .types import CheckResult, Detection, TokenLogprob, Verdict, Verifier
from .verify import verify
from .visual import CropQuestion, Evidence

__all__ = [
    "verify",
    "prepare",
    "Plan",
    "CropQuestion",
    "Evidence",
    "Policy",
    "Verdict",
    "Detection",
    "CheckResult",
    "TokenLogprob",
    "GuardFault",
    "Verifier",
]
