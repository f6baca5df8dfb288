"""The vLLM backend on CPU: request translation, engine driving with a fake engine, registry."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from boxguard.server.backends import (
    BackendDead,
    BackendError,
    Completion,
    GenerationRequest,
    QueueFull,
    TokenChoice,
    create_backend,
)
from boxguard.server.backends import decoding as dc
from boxguard.server.backends import vllm_backend as vb
from boxguard.server.backends import vllm_translate as vt
from boxguard.server.constraints import Constraint, box_list_schema, yes_no_constraint
from boxguard.server.models.families import Qwen25VLAdapter
from boxguard.server.settings import Settings
from PIL import Image

SCHEMA = box_list_schema(644, 476, max_items=1, max_label_chars=32)
GRAMMAR = Constraint(json_schema=SCHEMA).ebnf()
PROMPT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Locate x<|im_end|>\n"


def _request(**kw: Any) -> GenerationRequest:
    constraint = kw.pop("constraint", Constraint(json_schema=SCHEMA, max_tokens=64))
    return GenerationRequest(
        prompt=PROMPT, image=kw.pop("image", None), constraint=constraint, **kw
    )


def _lp(value: float, text: str) -> SimpleNamespace:
    return SimpleNamespace(logprob=value, decoded_token=text, rank=1)


def _output(pieces: list[tuple[int, str, float]], text: str, finish: str = "stop") -> Any:
    return SimpleNamespace(
        text=text,
        token_ids=[t for t, _, _ in pieces],
        logprobs=[{t: _lp(v, s)} for t, s, v in pieces],
        finish_reason=finish,
    )


def _concat(c: Completion) -> str:
    return "".join(t.text for t in c.tokens)


# --- engine arguments ------------------------------------------------------------------------


def test_engine_args_come_from_settings_and_adapter() -> None:
    settings = Settings(
        backend="vllm",
        tensor_parallel_size=2,
        data_parallel_size=3,
        gpu_memory_utilization=0.8,
        load_format="dummy",
        enforce_eager=True,
        seed=7,
        dtype="bfloat16",
        max_model_len=4096,
        mm_processor_cache_gb=0,
        enable_prefix_caching=False,
        max_num_seqs=48,
        max_num_batched_tokens=4096,
    )
    adapter = Qwen25VLAdapter(min_pixels=3136, max_pixels=1_003_520)
    args = vt.engine_args_dict(settings, "/models/q", adapter)
    assert args["model"] == "/models/q"
    assert (args["tensor_parallel_size"], args["data_parallel_size"]) == (2, 3)
    assert args["gpu_memory_utilization"] == 0.8 and args["load_format"] == "dummy"
    assert args["enforce_eager"] is True and args["seed"] == 7 and args["dtype"] == "bfloat16"
    assert args["max_model_len"] == 4096 and args["mm_processor_cache_gb"] == 0
    assert args["enable_prefix_caching"] is False
    assert (args["max_num_seqs"], args["max_num_batched_tokens"]) == (48, 4096)
    assert args["limit_mm_per_prompt"] == {"image": 1, "video": 0}
    assert args["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 1_003_520}
    assert args["logprobs_mode"] == "processed_logprobs"
    assert args["disable_log_stats"] is False
    assert args["structured_outputs_config"]["backend"] == "xgrammar"
    assert "tokenizer" not in args  # None: the model's own
    json.dumps(args)  # plain data only


def test_engine_args_leave_unset_values_to_vllm() -> None:
    args = vt.engine_args_dict(Settings(tokenizer="/tok"), "/m", Qwen25VLAdapter())
    assert "max_model_len" not in args and "served_model_name" not in args
    assert "mm_processor_cache_gb" not in args and "enable_prefix_caching" not in args
    assert "max_num_seqs" not in args and "max_num_batched_tokens" not in args
    assert args["tokenizer"] == "/tok"


# --- sampling parameters ---------------------------------------------------------------------


def test_answer_kwargs_constrain_to_the_schema() -> None:
    kw = vt.answer_kwargs(_request(temperature=0.0, n=1, seed=3))
    assert kw["structured_outputs"] == {"grammar": GRAMMAR}
    assert kw["max_tokens"] == 64 and kw["logprobs"] == 0 and kw["n"] == 1
    assert kw["output_kind"] == vt.FINAL_ONLY and kw["seed"] == 3


def test_choice_constraint_becomes_its_grammar() -> None:
    kw = vt.answer_kwargs(_request(constraint=yes_no_constraint()))
    assert kw["structured_outputs"] == {"grammar": 'root ::= "yes" | "no"'}
    assert kw["max_tokens"] == 1  # the first token decides yes or no


def test_greedy_asks_for_one_sample_and_sampling_for_n() -> None:
    assert vt.answer_kwargs(_request(n=4, temperature=0.0))["n"] == 1
    kw = vt.answer_kwargs(_request(n=4, temperature=0.7, top_p=0.9))
    assert (kw["n"], kw["temperature"], kw["top_p"]) == (4, 0.7, 0.9)
    assert vt.answer_kwargs(_request(logprobs=False))["logprobs"] is None


def test_think_phases() -> None:
    req = _request(
        constraint=Constraint(json_schema=SCHEMA, think=True, think_max_tokens=20, max_tokens=50),
        n=2,
        temperature=1.0,
        seed=10,
    )
    first = vt.think_kwargs(req)
    assert first["stop"] == ["</think>"] and first["max_tokens"] == 20
    assert first["structured_outputs"] is None and first["n"] == 2
    second = vt.continuation_kwargs(req, 1)
    assert second["structured_outputs"] == {"grammar": GRAMMAR}
    assert (second["n"], second["max_tokens"], second["seed"]) == (1, 50, 11)
    assert dc.think_prompt("P") == "P<think>"
    assert dc.continuation_prompt("P", "hmm") == "P<think>hmm</think>\n<answer>"
    # A spelled control token in the think must not reach the prompt (a second image for vLLM).
    spelled = "see <|vision_start|><|image_pad|><|vision_end|> it <|im_end|>"
    assert dc.continuation_prompt("P", spelled) == "P<think>see  it </think>\n<answer>"


def test_prompt_input_carries_the_image() -> None:
    assert vt.prompt_input("p", None) == {"prompt": "p"}
    image = object()
    assert vt.prompt_input("p", image)["multi_modal_data"] == {"image": image}  # type: ignore


# --- outputs ---------------------------------------------------------------------------------


def test_align_pieces() -> None:
    assert vt.align_pieces("ab", ["a", "b", "<|im_end|>"]) == ["a", "b", ""]
    assert vt.align_pieces("x </", ["x", " </", "think>"]) == ["x", " </", ""]
    assert vt.align_pieces("abc", ["a", "bcd"]) == ["a", "bc"]
    assert vt.align_pieces("aé", ["a", "", "é"]) == ["a", "", "é"]
    assert vt.align_pieces("abz", ["a", "?"]) == ["a", "bz"]


def test_completion_tokens_concatenate_to_text() -> None:
    out = _output([(1, "[", -0.1), (2, "]", -0.2), (151645, "<|im_end|>", -0.01)], "[]")
    c = vt.completion_from_output(out)
    assert c.text == "[]" and _concat(c) == "[]" and c.finish_reason == "stop"
    assert [t.logprob for t in c.tokens] == [-0.1, -0.2]  # EOS dropped, as transformers does
    kept = vt.completion_from_output(out, drop_untexted_tail=False)
    assert [t.text for t in kept.tokens] == ["[", "]", ""]
    assert c.tokens[0] == TokenChoice(1, "[", -0.1)


def test_completion_without_logprobs_decodes_tokens() -> None:
    out = SimpleNamespace(text="ab", token_ids=[5, 6], logprobs=None, finish_reason="length")
    c = vt.completion_from_output(out, decode={5: "a", 6: "b"}.get)
    assert _concat(c) == "ab" and c.finish_reason == "length"
    assert all(t.logprob == 0.0 for t in c.tokens)


def test_think_stop_tokens_are_dropped_and_tags_forced() -> None:
    think = vt.completion_from_output(
        _output([(1, "red", -0.5), (2, "</", -0.1), (3, "think>", -0.1)], "red")
    )
    assert [t.token_id for t in think.tokens] == [1]
    answer = vt.completion_from_output(_output([(4, "[]", -0.3)], "[]"))
    joined = dc.join_think(think, answer)
    assert joined.text == "<think>red</think>\n<answer>[]</answer>"
    assert _concat(joined) == joined.text
    forced = [t for t in joined.tokens if t.token_id == dc.FORCED_TOKEN_ID]
    assert forced and all(t.logprob == 0.0 for t in forced)


def test_replicate_greedy_samples() -> None:
    c = Completion("x", [TokenChoice(1, "x", -1.0)])
    copies = dc.replicate([c], 3)
    assert len(copies) == 3 and all(k.text == "x" for k in copies)
    assert copies[1].tokens is not c.tokens


# --- one grammar for both backends ----------------------------------------------------------


@pytest.mark.parametrize(
    "constraint",
    [
        Constraint(json_schema=SCHEMA, max_tokens=64),
        Constraint(json_schema=SCHEMA, think=True, think_max_tokens=8),
        yes_no_constraint(),
    ],
    ids=["json", "think", "choice"],
)
def test_vllm_gets_the_grammar_the_transformers_backend_compiles(
    engine: Any, constraint: Constraint
) -> None:
    """The grammar text vLLM receives is the one HFEngine compiles: same rules, same answers."""
    xgr = pytest.importorskip("xgrammar")
    request = _request(constraint=constraint, temperature=1.0, n=2)
    sent = [vt.answer_kwargs(request), vt.continuation_kwargs(request, 1)]
    grammars = {kw["structured_outputs"]["grammar"] for kw in sent}
    assert len(grammars) == 1
    hf = engine.compile(constraint)
    via_vllm = engine.compiler.compile_grammar(grammars.pop())
    assert str(via_vllm.grammar) == str(hf.grammar)
    samples = [
        '[{"bbox_2d": [1, 2, 3, 4], "label": "x"}]',
        '[{"bbox_2d":[1,2,3,4],"label":"x"}]',  # compact: vLLM 0.32's disable_any_whitespace
        '[ {"bbox_2d": [1, 2, 3, 4], "label": "x"}]',
        "[]",
        "yes",
        "no",
    ]

    def verdicts(compiled: Any) -> list[bool]:
        out = []
        for text in samples:
            matcher = xgr.GrammarMatcher(compiled)
            out.append(matcher.accept_string(text) and matcher.is_completed())
        return out

    assert verdicts(via_vllm) == verdicts(hf)
    expected = [False] * 4 + [True] * 2 if constraint.choices else [True, False, False, True]
    assert verdicts(hf)[: len(expected)] == expected


# --- with vLLM installed: the real vLLM objects ----------------------------------------------


def test_real_vllm_objects() -> None:
    pytest.importorskip("vllm")
    params = vb.build_sampling_params(vt.answer_kwargs(_request()))
    assert params.structured_outputs is not None and params.structured_outputs.grammar == GRAMMAR
    from vllm.v1.structured_output.backend_xgrammar import validate_xgrammar_grammar

    validate_xgrammar_grammar(params)  # vLLM's own check: parses as EBNF, passed on unchanged
    assert params.structured_outputs.grammar == GRAMMAR
    assert params.output_kind.name == "FINAL_ONLY" and params.logprobs == 0 and params.n == 1
    assert params.detokenize is False and params.skip_clone is True
    think = vb.build_sampling_params(vt.think_kwargs(_request(temperature=0.5, n=2)))
    assert think.stop == ["</think>"] and think.structured_outputs is None
    assert think.detokenize is True  # its stop string is matched on the text
    choice = vb.build_sampling_params(vt.answer_kwargs(_request(constraint=yes_no_constraint())))
    assert choice.structured_outputs.grammar == yes_no_constraint().ebnf()
    settings = Settings(backend="vllm", load_format="dummy", max_model_len=2048)
    args = vb.build_engine_args(vt.engine_args_dict(settings, "/m", Qwen25VLAdapter()))
    assert args.logprobs_mode == "processed_logprobs" and args.load_format == "dummy"
    assert args.limit_mm_per_prompt == {"image": 1, "video": 0}
    assert args.structured_outputs_config.backend == "xgrammar"


# --- the registry without vLLM ---------------------------------------------------------------


def test_registry_without_vllm_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(ImportError, match=r'pip install "boxguard\[vllm\]"'):
        create_backend(Settings(backend="vllm"), "/m", Qwen25VLAdapter())


# --- engine driving, with a fake engine (failure handling and the two think phases) ----------


class _DeadError(Exception):
    pass


class _GenerateError(Exception):
    pass


class _FakeParams:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)
        self.structured_outputs = None


class _FakeTokenizer:
    """Decodes the ids the scripted outputs use; 151645 is the special <|im_end|>."""

    vocab = {1: "[]", 2: "[]", 3: "hm", 151645: "<|im_end|>"}

    def __init__(self) -> None:
        self.calls = 0

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        self.calls += 1
        return "".join(self.vocab[i] for i in ids if not (skip_special_tokens and i == 151645))


def _undetokenized(final: Any) -> Any:
    """What vLLM returns with `detokenize=False`: no text, logprobs without decoded tokens."""
    outs = [
        SimpleNamespace(
            text="",
            token_ids=o.token_ids,
            logprobs=[
                {t: SimpleNamespace(logprob=lp.logprob, decoded_token=None, rank=1)}
                for pos in o.logprobs
                for t, lp in pos.items()
            ],
            finish_reason=o.finish_reason,
        )
        for o in final.outputs
    ]
    return SimpleNamespace(outputs=outs, prompt_token_ids=final.prompt_token_ids)


class _FakeEngine:
    """Answers from a script; records prompts, params and aborts."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls: list[tuple[dict, Any, str]] = []
        self.aborted: list[str] = []
        self.errored = False
        self.tokenizer = _FakeTokenizer()
        self.waiting: dict[str, asyncio.Event] = {}
        self.stopping = asyncio.Event()
        self.shut_down = False

    async def generate(self, prompt: dict, params: Any, request_id: str) -> Any:
        self.calls.append((prompt, params, request_id))
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        if step in ("late", "late-fails"):  # in input processing when the shutdown begins
            await self.stopping.wait()
            if step == "late-fails":  # AsyncLLM.shutdown() stops the renderer first
                raise _GenerateError("cannot schedule new futures after shutdown")
            step = "hang"
        if step == "hang":  # until aborted; vLLM then ends the stream with an "abort" output
            self.waiting[request_id] = asyncio.Event()
            await self.waiting[request_id].wait()
            yield _final(_output([], "", finish="abort"))
            return
        yield step if getattr(params, "detokenize", True) else _undetokenized(step)

    def get_tokenizer(self) -> _FakeTokenizer:
        return self.tokenizer

    async def abort(self, request_id: str | list[str]) -> None:
        for one in [request_id] if isinstance(request_id, str) else request_id:
            self.aborted.append(one)
            if one in self.waiting:
                self.waiting[one].set()

    def shutdown(self) -> None:
        self.shut_down = True


class _EngineWithOutputHandler(_FakeEngine):
    """Shuts down as AsyncLLM does: engine core first (its output task queues EngineDeadError),
    then a thread-safe cancel of the output handler, which fails if it reads the error first."""

    def __init__(self, script: list[Any]) -> None:
        super().__init__(script)
        self.outputs: asyncio.Queue[Exception] = asyncio.Queue()
        self.handler_failures: list[Exception] = []
        self.output_handler = asyncio.create_task(self._handle_outputs())

    async def _handle_outputs(self) -> None:
        try:
            raise await self.outputs.get()
        except Exception as exc:  # vLLM logs "AsyncLLM output_handler failed." here
            self.handler_failures.append(exc)

    def shutdown(self) -> None:
        loop = self.output_handler.get_loop()
        loop.call_soon_threadsafe(self.stopping.set)
        loop.call_soon_threadsafe(self.outputs.put_nowait, _DeadError("engine core stopped"))
        time.sleep(0.05)  # joining the engine processes
        loop.call_soon_threadsafe(self.output_handler.cancel)
        super().shutdown()


def _fake_vllm() -> SimpleNamespace:
    return SimpleNamespace(
        version="fake",
        EngineDeadError=_DeadError,
        EngineGenerateError=_GenerateError,
        RequestOutputKind=SimpleNamespace(FINAL_ONLY="FINAL"),
        SamplingParams=_FakeParams,
        StructuredOutputsParams=lambda **kw: kw,
    )


def _backend(monkeypatch: pytest.MonkeyPatch, script: list[Any]) -> vb.VLLMBackend:
    monkeypatch.setattr(vb, "_import_vllm", _fake_vllm)
    backend = vb.VLLMBackend(Settings(backend="vllm"), "/m", Qwen25VLAdapter())
    backend.engine = _FakeEngine(script)
    backend._texts = vb.TokenTexts(backend.engine.get_tokenizer())  # what start() sets
    backend._max_inflight = 4
    return backend


def _final(*outs: Any) -> Any:
    return SimpleNamespace(outputs=list(outs), prompt_token_ids=[0] * 9)


async def test_generate_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _output([(1, "[]", -0.2), (151645, "<|im_end|>", -0.01)], "[]")
    backend = _backend(monkeypatch, [_final(out)])
    gen = await backend.generate(_request(n=2, temperature=0.0))
    assert [c.text for c in gen.completions] == ["[]", "[]"] and gen.prompt_tokens == 9
    assert [(t.token_id, t.text, t.logprob) for t in gen.completions[0].tokens] == [(1, "[]", -0.2)]
    _, params, _ = backend.engine.calls[0]
    assert params.structured_outputs == {"grammar": GRAMMAR} and params.output_kind == "FINAL"
    assert params.detokenize is False  # the backend decoded the text itself


def test_token_texts_decode_each_token_once() -> None:
    tokenizer = _FakeTokenizer()
    texts = vb.TokenTexts(tokenizer)
    assert [texts.piece(i) for i in (1, 3, 1, 3)] == ["[]", "hm", "[]", "hm"]
    assert tokenizer.calls == 2
    assert texts.text([3, 1, 151645]) == "hm[]"  # special tokens skipped, as the request asks


async def test_generate_think_in_two_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    think = _final(_output([(1, "hm", -0.3)], "hm"))
    answer = _final(_output([(2, "[]", -0.1)], "[]"))
    backend = _backend(monkeypatch, [think, answer])
    req = _request(constraint=Constraint(json_schema=SCHEMA, think=True, think_max_tokens=8))
    gen = await backend.generate(req)
    (first, p1, _), (second, p2, _) = backend.engine.calls
    assert first["prompt"] == PROMPT + "<think>" and p1.structured_outputs is None
    assert second["prompt"] == PROMPT + "<think>hm</think>\n<answer>"
    assert p2.structured_outputs == {"grammar": GRAMMAR}
    text = gen.completions[0].text
    assert text == "<think>hm</think>\n<answer>[]</answer>" == _concat(gen.completions[0])


async def test_cancel_aborts_the_engine_request(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _backend(monkeypatch, ["hang"])
    task = asyncio.create_task(backend.generate(_request()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.engine.aborted == [backend.engine.calls[0][2]]
    assert backend._inflight == 0


async def test_stop_fails_in_flight_requests_with_backend_dead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In-flight requests end at once with BackendDead (503), not at their deadlines."""
    backend = _backend(monkeypatch, ["hang", "hang"])
    engine = backend.engine
    think = Constraint(json_schema=SCHEMA, think=True, think_max_tokens=8)
    tasks = [
        asyncio.create_task(backend.generate(_request())),
        asyncio.create_task(backend.generate(_request(constraint=think))),  # in phase 1
    ]
    await asyncio.sleep(0.05)
    await backend.stop()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 2)
    assert [type(r) for r in results] == [BackendDead, BackendDead]
    assert sorted(engine.aborted) == sorted(rid for _, _, rid in engine.calls)
    assert len(engine.calls) == 2  # the think request never reached phase 2
    assert engine.shut_down and not backend.ready and backend._inflight == 0
    with pytest.raises(BackendError):
        await backend.generate(_request())


async def test_stop_cancels_the_output_handler_before_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A clean stop: vLLM's output handler is cancelled, it never sees the engine core's end."""
    backend = _backend(monkeypatch, ["hang"])
    engine = backend.engine = _EngineWithOutputHandler(["hang"])
    task = asyncio.create_task(backend.generate(_request()))
    await asyncio.sleep(0.05)
    await backend.stop()
    results = await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 2)
    assert [type(r) for r in results] == [BackendDead]
    await asyncio.sleep(0.01)  # shutdown()'s own thread-safe cancel has run
    assert engine.output_handler.cancelled() and engine.handler_failures == []
    assert engine.shut_down


async def test_stop_fails_a_request_that_reaches_the_engine_after_the_aborts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the output handler only an abort ends it: stop() aborts late ones after shutdown."""
    backend = _backend(monkeypatch, [])
    engine = backend.engine = _EngineWithOutputHandler(["late"])
    task = asyncio.create_task(backend.generate(_request()))
    await asyncio.sleep(0)  # in engine.generate, not yet registered there
    await backend.stop()
    results = await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 2)
    assert [type(r) for r in results] == [BackendDead]
    rid = engine.calls[0][2]
    assert engine.aborted == [rid, rid] and backend._engine_requests == set()


async def test_a_request_failing_because_of_stop_is_backend_dead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = _backend(monkeypatch, [])
    backend.engine = _EngineWithOutputHandler(["late-fails"])
    task = asyncio.create_task(backend.generate(_request()))
    await asyncio.sleep(0)
    await backend.stop()
    with pytest.raises(BackendDead, match="stopped"):
        await asyncio.wait_for(task, 2)


async def test_an_aborted_output_is_not_an_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine-side abort while running is a BackendError, never a (truncated) answer."""
    backend = _backend(monkeypatch, [_final(_output([(1, "[", -0.1)], "[", finish="abort"))])
    with pytest.raises(BackendError, match="aborted"):
        await backend.generate(_request())
    assert backend.ready


async def test_cancelling_one_request_aborts_only_its_engine_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cancellation is the one way to stop a generation: its engine request alone is aborted."""
    backend = _backend(monkeypatch, ["hang", "hang"])
    one = asyncio.create_task(backend.generate(_request(request_id="r1")))
    two = asyncio.create_task(backend.generate(_request(request_id="r10")))
    await asyncio.sleep(0.05)
    one.cancel()
    with pytest.raises(asyncio.CancelledError):
        await one
    assert [rid.split("-")[0] for rid in backend.engine.aborted] == ["r1"]
    assert not two.done()
    two.cancel()
    with pytest.raises(asyncio.CancelledError):
        await two
    assert backend._inflight == 0


async def test_engine_death_marks_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _backend(monkeypatch, [_DeadError("dead")])
    assert backend.ready and backend.health.state == "ready"
    with pytest.raises(BackendDead, match="restarting"):
        await backend.generate(_request())
    assert not backend.ready
    assert backend.health.state == "dead" and "dead" in (backend.health.reason or "")
    with pytest.raises(BackendDead, match="restarting"):
        await backend.generate(_request())


async def test_queue_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _backend(monkeypatch, [])
    backend._inflight = backend._max_inflight
    with pytest.raises(QueueFull):
        await backend.generate(_request())


# --- the benchmark's FLOPs arithmetic --------------------------------------------------------


def _bench_module() -> Any:
    path = Path(__file__).resolve().parents[4] / "bench" / "bench_vllm.py"
    spec = importlib.util.spec_from_file_location("bench_vllm", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_bench_flops_estimate_for_qwen25vl_7b() -> None:
    bench = _bench_module()
    est = bench.flops_per_image(bench.QWEN25_VL_7B, 640, 480, decode_tokens=40)
    assert est["model_width"] == 644 and est["model_height"] == 476
    assert est["vision_tokens"] == 391
    # ~8-9 TFLOPs per 640x480 image: vision ~2, prefill ~6, decode ~0.6
    assert 6e12 < est["total"] < 12e12
    assert est["vision"] < est["prefill"]
    big = bench.flops_per_image(bench.QWEN25_VL_7B, 1280, 960, decode_tokens=40)
    assert big["total"] > 2 * est["total"]


def test_dummy_7b_has_the_real_7b_pixel_bounds(tmp_path: Path) -> None:
    """The 7B dummy the bench serves has the 7B's frames, not a tiny checkpoint's ones."""
    from boxguard.server.models import adapter_for
    from real_qwen import dummy_checkpoint

    bench = _bench_module()
    model = dummy_checkpoint("qwen2_5_vl-7b", tmp_path / "dummy7b")
    adapter = adapter_for(model)
    assert (adapter.min_pixels, adapter.max_pixels) == (3136, 12_845_056)
    frames = [adapter.model_frame(640, 480), adapter.model_frame(1280, 960)]
    assert [(f.width, f.height) for f in frames] == [(644, 476), (1288, 952)]
    est = bench.flops_per_image(bench.QWEN25_VL_7B, 1280, 960)
    assert (est["model_width"], est["model_height"]) == (1288, 952)
    config = json.loads((model / "config.json").read_text())
    assert config["vision_config"]["depth"] == 32


async def test_start_builds_the_engine_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    built: dict[str, Any] = {}

    class _AsyncLLM:
        @staticmethod
        def from_engine_args(args: Any, usage_context: Any = None) -> Any:
            built["args"], built["usage_context"] = args, usage_context
            engine = _FakeEngine([])
            engine.vllm_config = SimpleNamespace(
                scheduler_config=SimpleNamespace(max_num_seqs=8),
                model_config=SimpleNamespace(hf_config=SimpleNamespace(image_token_id=151655)),
            )
            engine.shutdown = lambda: built.setdefault("shutdown", True)
            return engine

    def fake() -> SimpleNamespace:
        ns = _fake_vllm()
        ns.AsyncLLM = _AsyncLLM
        ns.AsyncEngineArgs = lambda **kw: kw
        ns.StructuredOutputsConfig = lambda **kw: ("so", kw)
        ns.UsageContext = SimpleNamespace(OPENAI_API_SERVER="server", ENGINE_CONTEXT="engine")
        return ns

    monkeypatch.setattr(vb, "_import_vllm", fake)
    backend = vb.VLLMBackend(Settings(backend="vllm", queue_size=5), "/m", Qwen25VLAdapter())
    assert not backend.ready
    await backend.start()
    assert backend.ready and backend.loop is asyncio.get_running_loop()
    assert built["args"]["model"] == "/m" and built["args"]["structured_outputs_config"][0] == "so"
    # vLLM's server's batch defaults, not AsyncLLM's own (128 sequences, 2,048 tokens a step)
    assert built["usage_context"] == "server"
    assert backend._max_inflight == 8 + 5 and backend.queue_depth == 0
    assert backend._image_token_id == 151655  # the frame check counts these
    await backend.stop()
    assert built["shutdown"] and not backend.ready


@pytest.mark.parametrize(
    ("prompt_ids", "frame_size", "refused"),
    [
        ([1, 7, 7, 2], None, False),  # the 56x28 frame boxguard resized: 2 patches of 28
        ([1, 7, 2], None, True),
        ([1, 7, 7, 7, 2], (84, 28), False),  # resized by the engine to an 84x28 frame
        ([1, 7, 7, 2], (84, 28), True),
    ],
)
async def test_an_answer_seen_in_another_frame_is_refused(
    monkeypatch: pytest.MonkeyPatch,
    prompt_ids: list[int],
    frame_size: tuple[int, int] | None,
    refused: bool,
) -> None:
    final = SimpleNamespace(outputs=[_output([(1, "[]", -0.2)], "[]")], prompt_token_ids=prompt_ids)
    backend = _backend(monkeypatch, [final])
    backend._image_token_id = 7  # what start() reads from the model's config
    request = _request(image=Image.new("RGB", (56, 28)), frame_size=frame_size)
    if refused:
        with pytest.raises(BackendError, match="image tokens"):
            await backend.generate(request)
    else:
        assert (await backend.generate(request)).completions[0].text == "[]"
