"""Faults of what a check depends on, as opposed to faults of the model's answer.

A check that cannot run because something it needs failed (the label-embedding model, say)
raises a `GuardFault`: `prepare`/`verify` let it propagate instead of abstaining, so a server
answers 503 and a broken dependency never reads as a hallucination.
"""

from __future__ import annotations


class GuardFault(RuntimeError):
    """A dependency of a check failed; the answer was not judged."""
