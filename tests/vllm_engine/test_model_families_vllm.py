"""VLLMGenerator against HFGenerator on tiny models with the paper families' tokenizer conventions
(tests/conformance/families.py): the same stop tokens and stop strings, the same returned text
(stop excluded), `truncated` exactly when the token limit was hit, and prompt ids (one BOS) that
vLLM takes as they are."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_vllm = importlib.util.find_spec("vllm")
if _vllm is None or _vllm.origin is None:
    pytest.skip("vLLM is not installed in this environment", allow_module_level=True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "conformance"))
from families import LLAMA3, QWEN, build_tokenizer, save_stop_prone_lm  # noqa: E402

from paradox import backends  # noqa: E402
from paradox.generation import HFGenerator, SamplingSettings  # noqa: E402
from paradox.params import load_params  # noqa: E402
from paradox.vllm_backend import VLLMGenerator  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = ["What is 2 + 3?", "Ana has 5 coins. She loses 2.", "12 * 3 =", "Lee has 7 cards.", "x"]


def _engine(path: Path, fast_engine, **stops) -> VLLMGenerator:
    return VLLMGenerator.from_pretrained(str(path), fast_engine, dtype="float32", seed=0, **stops)


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    """(params, stop-prone model dir, plain model dir) for the Qwen2.5-Math family."""
    tok = build_tokenizer(QWEN)
    return (
        load_params("paper-qwen2.5-math-1.5b", ROOT / "params"),
        save_stop_prone_lm(tok, tmp_path_factory.mktemp("qwen-stop"), "<|im_end|>"),
        save_stop_prone_lm(tok, tmp_path_factory.mktemp("qwen-plain"), None),
    )


@pytest.fixture(scope="module")
def qwen_engine(qwen, fast_engine):
    p, path, _ = qwen
    gen = _engine(path, fast_engine, stop_tokens=p.slm.stop_tokens, stop_strings=p.slm.stop_strings)
    yield gen
    gen.close()


def _prompts(p, tok):
    return [backends.format_prompt(p, q, tok) for q in QUESTIONS]


def test_stop_token_greedy_and_sampled_as_hf(qwen, qwen_engine):
    p, path, _ = qwen
    hf = HFGenerator.from_pretrained(str(path), 8, p.slm.stop_tokens, p.slm.stop_strings)
    prompts = _prompts(p, qwen_engine.tok)
    assert qwen_engine.stops == hf.stops  # the same ids: EOS, generation_config eos, <|im_end|>
    greedy = SamplingSettings(1, 0.0, 1.0, 12, 0)
    ours = qwen_engine.generate(prompts, greedy)
    assert ours == hf.generate(prompts, greedy)
    short = qwen_engine.generate(prompts, SamplingSettings(6, 1.0, 1.0, 6, seed=4))
    long = qwen_engine.generate(prompts, SamplingSettings(6, 1.0, 1.0, 200, seed=4))
    flags = [c.truncated for cs in short for c in cs]
    assert any(flags) and not all(flags)  # finish_reason "length" for some, <|im_end|> for the others
    assert not any(c.truncated for cs in long for c in cs)
    for ss, ls in zip(short, long, strict=True):
        for sc, lc in zip(ss, ls, strict=True):
            assert "<|im_end|>" not in lc.text and "<|endoftext|>" not in lc.text
            if sc.truncated:
                assert lc.text.startswith(sc.text.rstrip("\ufffd").strip())
            else:
                assert sc == lc


def test_stop_string_cut_as_hf(qwen, fast_engine):
    p, _, plain_path = qwen
    base = _engine(plain_path, fast_engine, stop_tokens=p.slm.stop_tokens)
    try:
        prompts = _prompts(p, base.tok)
        greedy = SamplingSettings(1, 0.0, 1.0, 30, 0)
        plain = base.generate(prompts, greedy)
        text = plain[0][0].text
        stop = next(
            text[i : i + 3]
            for i in range(4, len(text) - 3)
            if text[i : i + 3].isascii() and text[i : i + 3].isprintable() and not text[i].isspace()
        )
        with_stop = VLLMGenerator(base.llm, p.slm.stop_tokens, [stop])  # the same engine, other stops
        cut = with_stop.generate(prompts, greedy)
        assert cut[0][0].text == text[: text.index(stop)].strip() and not cut[0][0].truncated
        hf = HFGenerator.from_pretrained(str(plain_path), 8, p.slm.stop_tokens, [stop])
        assert cut == hf.generate(prompts, greedy)
    finally:
        base.close()


def test_llama_family_prompt_ids_keep_one_bos(tmp_path_factory, fast_engine):
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    p = load_params("paper-llama-3.2-3b", ROOT / "params")
    tok = build_tokenizer(LLAMA3)
    path = save_stop_prone_lm(tok, tmp_path_factory.mktemp("llama-stop"), LLAMA3.eos)
    gen = _engine(path, fast_engine, stop_tokens=p.slm.stop_tokens, stop_strings=p.slm.stop_strings)
    try:
        prompts = _prompts(p, gen.tok)
        ids = [gen.encoder.prompt(x) for x in prompts]
        assert all(x[0] == tok.bos_token_id and x.count(tok.bos_token_id) == 1 for x in ids)
        outs = gen.llm.generate(
            [TokensPrompt(prompt_token_ids=x) for x in ids], SamplingParams(max_tokens=1), use_tqdm=False
        )
        assert [list(o.prompt_token_ids) for o in outs] == ids  # vLLM adds nothing to token prompts
        greedy = SamplingSettings(1, 0.0, 1.0, 16, 0)
        hf = HFGenerator.from_pretrained(str(path), 8, p.slm.stop_tokens, p.slm.stop_strings)
        assert gen.generate(prompts, greedy) == hf.generate(prompts, greedy)
    finally:
        gen.close()
