"""The real Qwen tokenizer: pinned tarball, checked special-token ids, a loadable directory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from boxguard.server import qwen_tokenizer as qt
from real_qwen import real_tokenizer_dir


def _tok(added: dict[str, int]) -> dict:
    """A tokenizer.json skeleton with Qwen's base vocabulary size and these added tokens."""
    vocab = {f"t{i}": i for i in range(qt.BASE_VOCAB)}
    tokens = [{"id": i, "content": c, "special": True} for c, i in added.items()]
    return {"model": {"type": "BPE", "vocab": vocab}, "added_tokens": tokens}


def _qwen2_added() -> dict[str, int]:
    added = dict(qt.SPECIAL_TOKEN_IDS)
    added |= {f"<extra{i}>": i for i in range(151657, qt.LAST_ADDED_ID["qwen2_5_vl"] + 1)}
    return added


def test_check_accepts_qwen_ids_and_refuses_a_moved_special_token() -> None:
    qt.check_tokenizer(_tok(_qwen2_added()), "qwen2_5_vl")
    moved = _qwen2_added() | {"<|image_pad|>": 151656, "<|video_pad|>": 151655}
    with pytest.raises(qt.TokenizerUnavailable, match="image_pad"):
        qt.check_tokenizer(_tok(moved), "qwen2_5_vl")
    with pytest.raises(qt.TokenizerUnavailable, match="think"):  # Qwen3 needs <think>
        qt.check_tokenizer(_tok(_qwen2_added()), "qwen3_vl")


def test_chat_template_is_qwen25_vl_instruct() -> None:
    """The recorded hash of the official template is over its JSON string."""
    digest = hashlib.sha256(json.dumps(qt.CHAT_TEMPLATE).encode()).hexdigest()
    assert digest == qt.CHAT_TEMPLATE_SHA256


def test_without_npm_and_tarball_the_reason_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOXGUARD_CACHE", str(tmp_path))
    monkeypatch.setattr(qt.shutil, "which", lambda name: None)
    (tmp_path / "qwen-tokenizer").mkdir()
    (tmp_path / "qwen-tokenizer" / qt.TARBALL).write_bytes(b"not the pinned tarball")
    with pytest.raises(qt.TokenizerUnavailable, match="npm is not installed"):
        qt.qwen_tokenizer_dir()
    assert qt.main([]) == 1


@pytest.mark.parametrize(("family", "size"), [("qwen2_5_vl", 151665), ("qwen3_vl", 151669)])
def test_real_tokenizer_loads_with_qwen_ids(family: str, size: int) -> None:
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(real_tokenizer_dir(family))
    assert len(tok) == size
    for token, token_id in qt.SPECIAL_TOKEN_IDS.items():
        assert tok.convert_tokens_to_ids(token) == token_id
    assert (tok.eos_token_id, tok.pad_token_id) == (151645, 151643)
    # Qwen2 pre-tokenization: one token per digit, as the grammar's bounds assume.
    pieces = tok.tokenize("[12, 345]")
    assert [p for p in pieces if p.isdigit()] == ["1", "2", "3", "4", "5"]
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert prompt.endswith(
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
