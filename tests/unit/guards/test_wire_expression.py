"""GroundRequest.expression: blank means no printable non-space character."""

from __future__ import annotations

import pytest
from boxguard.guards.wire import GroundRequest
from pydantic import ValidationError


@pytest.mark.parametrize(
    "expression", ["", " ", "\t\n", "\u3000", "\x00", "\x00\x01\x1f\x7f", "\u200b", " \x00\r\n "]
)
def test_blank_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ValidationError, match="expression is blank"):
        GroundRequest(image="AAAA", expression=expression)


@pytest.mark.parametrize("expression", ["a", " the red circle ", "x\x00", "\u00e9", "\u7ea2\u8272"])
def test_expressions_with_a_visible_character_pass(expression: str) -> None:
    assert GroundRequest(image="AAAA", expression=expression).expression == expression
