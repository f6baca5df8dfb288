"""boxguard.guards: decide, for every grounding answer, whether to return it or abstain, and why.

Pure Python + pydantic; usable offline to verify the output of any VLM::

    from boxguard.guards import verify, Policy
    verdict = verify(raw_text, "the red circle", (640, 480), policy=Policy(min_confidence=0.5))

Submodules: ``parse`` (parse_output), ``threshold`` (pick_threshold, phi_c, risk_coverage),
``geometry`` (iou, map_box), ``embed`` (optional embedding extra, warmup()).
"""

from .policy import Policy
from .types import CheckResult, Detection, TokenLogprob, Verdict, Verifier
from .verify import verify

__all__ = ["verify", "Policy", "Verdict", "Detection", "CheckResult", "TokenLogprob", "Verifier"]
