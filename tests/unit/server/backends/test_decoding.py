"""The decoding rules both backends share: greedy n, the think cut, forced tokens."""

from __future__ import annotations

from boxguard.server.backends import decoding as dc
from boxguard.server.backends.base import Completion, GenerationRequest, TokenChoice
from boxguard.server.constraints import yes_no_constraint


def _request(n: int, temperature: float) -> GenerationRequest:
    return GenerationRequest("p", None, yes_no_constraint(), n=n, temperature=temperature)


def test_greedy_decodes_once_whatever_n_and_sampling_decodes_n() -> None:
    assert [dc.effective_n(_request(n, 0.0)) for n in (1, 4)] == [1, 1]
    assert [dc.effective_n(_request(n, 0.7)) for n in (1, 4)] == [1, 4]
    assert not dc.is_sampled(_request(4, 0.0)) and dc.is_sampled(_request(1, 0.1))


def test_cut_at_keeps_covered_tokens_and_forces_the_rest() -> None:
    tokens = [TokenChoice(1, "I see", -0.5), TokenChoice(2, " it</", -0.2), TokenChoice(3, "x", 0)]
    cut = dc.cut_at(Completion("I see it</think>", tokens, "stop"), "</think>")
    assert cut.text == "I see it" and cut.finish_reason == "stop"
    assert [(t.token_id, t.text) for t in cut.tokens] == [(1, "I see"), (-1, " it")]
    whole = dc.cut_at(Completion("ab", [TokenChoice(1, "ab", -0.1)]), "</think>")
    assert [t.text for t in whole.tokens] == ["ab"]
    empty = Completion("</think>", [TokenChoice(1, "</think>", -0.1)])
    assert dc.cut_at(empty, "</think>").tokens == []
