"""Conformance of the SLM path with each paper model family's published conventions.

Tiny tokenizers with each family's special tokens, BOS/EOS conventions and an equivalent chat
template (tests/conformance/families.py) stand in for the real ones (no hub here). Checked per
family, with the paper profile that drives it: the rendered prompt (one CoT instruction, the
family's turn markers), the stop settings' ids, BOS exactly once in the ids that generation,
TRL training and perplexity scoring see (the same ids for the same text), the training completion
ending with a stop token, and HFGenerator's text and `truncated` flag on a tiny model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from families import COT, DEEPSEEK, LLAMA3, PAPER_FAMILIES, QWEN, build_tokenizer, save_stop_prone_lm  # noqa: E402

from paradox import backends  # noqa: E402
from paradox.generation import HFGenerator, SamplingSettings  # noqa: E402
from paradox.metrics import response_nll  # noqa: E402
from paradox.models import load_model
from paradox.params import Params, load_params  # noqa: E402
from paradox.tokenization import SequenceEncoder, Stops  # noqa: E402
from paradox.training.trainer import tokenized_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
IDS = [f.name for f in PAPER_FAMILIES]
QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have?"
COMPLETION = "Tom starts with 3 apples. He buys 5 more, so 3 + 5 = 8. The answer is \\boxed{8}."


def profile(name: str) -> Params:
    return load_params(name, ROOT / "params")


def with_slm(p: Params, **slm) -> Params:
    return p.model_copy(update={"slm": p.slm.model_copy(update=slm)})


@pytest.fixture(scope="module")
def tokenizers():
    return {f.name: build_tokenizer(f) for f in PAPER_FAMILIES}


@pytest.fixture(scope="module")
def family_lms(tmp_path_factory, tokenizers):
    """family name -> a saved tiny model that ends answers with the family's completion_end token."""
    out = {}
    for f in PAPER_FAMILIES:
        path = tmp_path_factory.mktemp(f.name)
        save_stop_prone_lm(tokenizers[f.name], path, f.end_token)
        out[f.name] = path
    return out


@pytest.fixture(scope="module")
def plain_lms(tmp_path_factory, tokenizers):
    """family name -> a saved tiny random model (its answers rarely end: long texts to cut)."""
    return {
        f.name: save_stop_prone_lm(tokenizers[f.name], tmp_path_factory.mktemp(f"{f.name}-plain"), None)
        for f in PAPER_FAMILIES
    }


# --- prompts ---------------------------------------------------------------------------------------


def test_qwen_prompt_is_the_toolkit_cot_prompt_with_one_instruction(tokenizers):
    """Qwen2.5-Math: the question alone in the user turn, the CoT instruction once, from the template's
    default system prompt (the Qwen2.5-Math toolkit's qwen25-math-cot prompt)."""
    text = backends.format_prompt(profile(QWEN.profile), QUESTION, tokenizers[QWEN.name])
    assert text == (
        f"<|im_start|>system\n{COT}<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert text.count("Please reason step by step") == 1
    for size in ("paper-qwen2.5-math-7b",):  # the 7B profile inherits the same prompt
        assert backends.format_prompt(profile(size), QUESTION, tokenizers[QWEN.name]) == text


def test_instruction_sent_twice_is_an_error(tokenizers):
    """The profile's old prompt (the instruction in the user turn as well as in the default system
    prompt) is refused, naming the repeated line."""
    doubled = with_slm(profile(QWEN.profile), prompt_template="{question}\n" + COT)
    with pytest.raises(ValueError, match="appears 2 times"):
        backends.format_prompt(doubled, QUESTION, tokenizers[QWEN.name])


@pytest.mark.parametrize("fam", [LLAMA3, DEEPSEEK], ids=["llama-3.2", "deepseek-math"])
def test_raw_prompts_of_base_families(fam, tokenizers):
    p = profile(fam.profile)
    assert not p.slm.use_chat_template
    text = backends.format_prompt(p, QUESTION, tokenizers[fam.name])
    assert text == f"Question: {QUESTION}\n{COT}\nAnswer:\n"  # \boxed{} survives (str.format raised here)
    assert "Question:" in p.slm.stop_strings and p.slm.completion_end == "eos"


def test_question_with_braces_and_format_fields_is_inserted_verbatim(tokenizers):
    q = "Find {x} such that \\frac{1}{x} = 2 and {question} is not a field."
    for f in PAPER_FAMILIES:
        assert q in backends.format_prompt(profile(f.profile), q, tokenizers[f.name])


def test_llama_chat_template_writes_bos_and_it_is_not_added_again(tokenizers):
    tok = tokenizers[LLAMA3.name]
    p = with_slm(profile(LLAMA3.profile), use_chat_template=True, prompt_template="{question}\n" + COT)
    text = backends.format_prompt(p, QUESTION, tok)
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n")
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    ids = SequenceEncoder(tok).prompt(text)
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    with pytest.raises(ValueError, match="BOS twice"):
        SequenceEncoder(tok).prompt("<|begin_of_text|>" + text)


def test_a_chat_prompt_that_does_not_end_on_a_newline_is_an_error(tokenizers):
    tok = build_tokenizer(QWEN)
    tok.chat_template = "{% for m in messages %}User: {{ m['content'] }}\n{% endfor %}Assistant:"
    with pytest.raises(ValueError, match="not a newline"):
        backends.format_prompt(profile(QWEN.profile), QUESTION, tok)


# --- stop settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fam", PAPER_FAMILIES, ids=IDS)
def test_stop_settings_resolve_to_the_family_ids(fam, tokenizers):
    tok, slm = tokenizers[fam.name], profile(fam.profile).slm
    stops = Stops.resolve(tok, slm.stop_tokens, slm.stop_strings, generation_eos=tok.eos_token_id)
    want = {tok.convert_tokens_to_ids(t) for t in {fam.eos, fam.end_token}}
    assert set(stops.token_ids) == want
    assert stops.strings == slm.stop_strings
    end = SequenceEncoder(tok, slm.completion_end).end_id
    assert end == tok.convert_tokens_to_ids(fam.end_token)
    assert end in stops.token_ids  # what training ends with, generation stops on


def test_a_stop_token_of_another_family_is_a_clear_error(tokenizers):
    with pytest.raises(ValueError, match=r"slm.stop_tokens: '<\|im_end\|>' is not one token"):
        Stops.resolve(tokenizers[LLAMA3.name], ["<|im_end|>"])
    with pytest.raises(ValueError, match="slm.completion_end"):
        SequenceEncoder(tokenizers[DEEPSEEK.name], "<|im_end|>")


def test_params_tie_completion_end_to_a_stop_token_and_raw_prompts_to_a_newline(tmp_path):
    import shutil

    from paradox.params import ParamsError

    pdir = tmp_path / "params"
    shutil.copytree(ROOT / "params", pdir)
    (pdir / "x.yaml").write_text("extends: paper-qwen2.5-math-1.5b\nslm:\n  stop_tokens: []\n")
    with pytest.raises(
        ParamsError,
        match=r"paper-qwen2\.5-math-1\.5b\.yaml: key 'slm\.completion_end': .*must be 'eos' or one of slm\.stop_tokens \[\]",
    ):
        load_params("x", pdir)
    # the Llama profile's former prompt ended on "Answer:": the completion would lose its leading space
    (pdir / "y.yaml").write_text(
        'extends: paper-llama-3.2-3b\nslm:\n  prompt_template: "Question: {question}\\nAnswer:"\n'
    )
    with pytest.raises(
        ParamsError, match=r"y\.yaml: key 'slm\.prompt_template': .*raw prompt .* must end with a newline"
    ):
        load_params("y", pdir)


# --- one token sequence ----------------------------------------------------------------------------


def _generation_ids(model, tok, prompt: str, stops) -> list[int]:
    """The ids HFGenerator feeds the model for one prompt (captured at the first forward pass)."""
    seen = []
    handle = model.register_forward_pre_hook(
        lambda m, args, kw: seen.append(kw["input_ids"][0].tolist()), with_kwargs=True
    )
    try:
        HFGenerator(model, tok, 1, *stops).generate([prompt], SamplingSettings(1, 0.0, 1.0, 2, 0))
    finally:
        handle.remove()
    return seen[0]


def _scoring_ids(model, tok, prompt: str, completion: str) -> list[int]:
    seen = []
    handle = model.base_model.register_forward_pre_hook(
        lambda m, args, kw: seen.append(kw["input_ids"][0].tolist()), with_kwargs=True
    )
    try:
        response_nll(model, tok, [prompt], [completion])
    finally:
        handle.remove()
    return seen[-1]


def _trl_ids(
    model, tok, prompt: str, completion: str, completion_end: str, tmp_path
) -> tuple[list[int], list[int]]:
    """input_ids and labels of the example as TRL's SFTTrainer prepares it from our dataset."""
    from trl import SFTConfig, SFTTrainer

    cfg = SFTConfig(
        output_dir=str(tmp_path / "trl"),
        max_length=512,
        completion_only_loss=True,
        report_to="none",
        use_cpu=True,
        max_steps=1,
    )
    trainer = SFTTrainer(
        model=model,
        args=cfg,
        processing_class=tok,
        train_dataset=tokenized_dataset(tok, [{"prompt": prompt, "completion": completion}], completion_end),
    )
    row = trainer.train_dataset[0]
    return row["input_ids"], row["labels"]


@pytest.mark.parametrize("fam", PAPER_FAMILIES, ids=IDS)
def test_training_sampling_and_scoring_see_the_same_ids(fam, family_lms, tmp_path):
    p = profile(fam.profile)
    model, tok = load_model(str(family_lms[fam.name]))  # as the notebooks load it (pad = EOS if none)
    prompt = backends.format_prompt(p, QUESTION, tok)
    gen = _generation_ids(model, tok, prompt, (p.slm.stop_tokens, p.slm.stop_strings))
    score = _scoring_ids(model, tok, prompt, COMPLETION)
    train, labels = _trl_ids(model, tok, prompt, COMPLETION, p.slm.completion_end, tmp_path)
    end = tok.convert_tokens_to_ids(fam.end_token)
    assert train[: len(gen)] == gen  # the prompt is tokenized as generation sees it
    assert train == [*score, end]  # scoring = training without the end token
    assert train[len(gen) : -1] == tok(COMPLETION, add_special_tokens=False)["input_ids"]
    assert labels == [-100] * len(gen) + train[len(gen) :]  # loss on the completion and its end token only
    if fam.bos:
        bos = tok.bos_token_id
        assert gen[0] == bos and [x.count(bos) for x in (gen, score, train)] == [1, 1, 1]
    else:
        assert tok.bos_token_id is None and gen[0] == tok.convert_tokens_to_ids("<|im_start|>")
    # the completion ends with what generation stops on
    assert train[-1] in HFGenerator(model, tok, 1, p.slm.stop_tokens, p.slm.stop_strings).stops.token_ids


def test_a_completion_holding_the_end_token_is_refused_naming_the_row(tokenizers):
    tok = tokenizers[QWEN.name]
    rows = [
        {"id": "a", "prompt": "x\n", "completion": "fine"},
        {"id": "b", "prompt": "x\n", "completion": "4<|im_end|>5"},
    ]
    with pytest.raises(ValueError, match=r"training row 1 \(id b\)"):
        tokenized_dataset(tok, rows, "<|im_end|>")


# --- generation on a tiny model --------------------------------------------------------------------


@pytest.mark.parametrize("fam", PAPER_FAMILIES, ids=IDS)
def test_generator_text_excludes_the_stop_token_and_truncated_means_the_token_limit(fam, family_lms):
    p = profile(fam.profile)
    model, tok = load_model(str(family_lms[fam.name]))
    gen = HFGenerator(model, tok, 8, p.slm.stop_tokens, ())
    prompts = [backends.format_prompt(p, q, tok) for q in ("What is 2 + 3?", "Ana has 5 coins.", "12 * 3 =")]
    short = gen.generate(prompts, SamplingSettings(6, 1.0, 1.0, 6, seed=3))
    long = gen.generate(prompts, SamplingSettings(6, 1.0, 1.0, 200, seed=3))
    flags = [c.truncated for cs in short for c in cs]
    assert any(flags) and not all(flags)  # answers end by the stop token at varied lengths
    assert not any(c.truncated for cs in long for c in cs)
    for ss, ls in zip(short, long, strict=True):
        for sc, lc in zip(ss, ls, strict=True):
            assert fam.end_token not in lc.text and fam.eos not in lc.text
            if sc.truncated:  # the same draw, cut by the limit (a cut may split a character's bytes)
                assert lc.text.startswith(sc.text.rstrip("\ufffd").strip())
            else:
                assert sc == lc


def clean_window(text: str, start: int = 4, size: int = 3) -> str:
    """A few ASCII characters the text holds (not a byte fragment of a split character)."""
    for i in range(start, len(text) - size):
        w = text[i : i + size]
        if w.isascii() and w.isprintable() and not w[0].isspace():
            return w
    raise AssertionError(f"no clean window in {text!r}")


@pytest.mark.parametrize("fam", PAPER_FAMILIES, ids=IDS)
def test_generator_stops_at_a_stop_string_and_drops_it(fam, plain_lms):
    model, tok = load_model(str(plain_lms[fam.name]))
    p = profile(fam.profile)
    prompt = backends.format_prompt(p, "Lee has 7 cards.", tok)
    greedy = SamplingSettings(1, 0.0, 1.0, 40, 0)
    plain = HFGenerator(model, tok, 1, p.slm.stop_tokens, ()).generate([prompt], greedy)[0][0]
    assert plain.truncated and len(plain.text) > 12, plain
    stop = clean_window(plain.text)  # a string the greedy answer writes: generation must stop right there
    cut = HFGenerator(model, tok, 1, p.slm.stop_tokens, (stop,)).generate([prompt], greedy)[0][0]
    assert cut.text == plain.text[: plain.text.index(stop)].strip() and not cut.truncated
    # a stop string that never appears changes nothing
    same = HFGenerator(model, tok, 1, p.slm.stop_tokens, ("@@never@@",)).generate([prompt], greedy)[0][0]
    assert same == plain


def test_generator_stops_on_the_generation_config_eos_ids_too(family_lms):
    """A model whose generation_config lists <|im_end|> (as Qwen2.5 instruct models do) stops there even
    when params name no stop token: HF and vLLM both read generation_config.json."""
    model, tok = load_model(str(family_lms[QWEN.name]))
    bare = HFGenerator(model, tok, 1)
    assert bare.stops.token_ids == (tok.eos_token_id,)
    model.generation_config.eos_token_id = [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]
    assert set(HFGenerator(model, tok, 1).stops.token_ids) == set(model.generation_config.eos_token_id)


class Counting:
    def __init__(self, inner):
        self.inner, self.name, self.stops, self.calls = inner, inner.name, inner.stops, 0

    def generate(self, prompts, s):
        self.calls += 1
        return self.inner.generate(prompts, s)


def test_sampling_cache_key_covers_stop_settings(family_lms, tmp_path):
    from paradox.generation import sample_sharded

    model, tok = load_model(str(family_lms[QWEN.name]))
    s = SamplingSettings(1, 0.0, 1.0, 8, 0)
    a = Counting(HFGenerator(model, tok, 1, ["<|im_end|>"]))
    sample_sharded(a, "m", ["p"], ["x\n"], s, tmp_path, 1)
    sample_sharded(a, "m", ["p"], ["x\n"], s, tmp_path, 1)
    assert a.calls == 1  # same settings: the shard is reused
    b = Counting(HFGenerator(model, tok, 1, ["<|im_end|>"], ["Question:"]))
    sample_sharded(b, "m", ["p"], ["x\n"], s, tmp_path, 1)
    assert b.calls == 1  # other stop settings: sampled again


# --- the toy family: training ids unchanged ---------------------------------------------------------


def test_toy_pretokenized_dataset_equals_trl_own_tokenization(splits, tmp_path):
    """The toy SLM trained on TRL's own prompt/completion tokenization before; the pre-tokenized
    dataset gives TRL the very same input_ids and labels, so toy training is unchanged."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from paradox.params import ToyProblems, ToySLM, ToyWorld
    from paradox.toy import slm

    corpus = slm.pretraining_corpus(splits["train"], "Question: {question}\nAnswer:\n", 0.5, 0)
    tok = slm.train_tokenizer([r["prompt"] + r["completion"] for r in corpus], 300)
    toy = ToyWorld(
        problems=ToyProblems(
            n_train=1,
            n_test=1,
            n_hard=1,
            ops=(2, 3),
            max_operand=9,
            max_value=99,
            hard_ops=(4, 5),
            hard_max_operand=15,
            hard_max_value=199,
        ),
        slm=ToySLM(
            hidden_size=32,
            n_layers=1,
            n_heads=2,
            intermediate_size=64,
            vocab_size=300,
            max_position=512,
            pretrain_problems=1,
            pretrain_epochs=1,
            pretrain_lr=1e-3,
            pretrain_batch_size=1,
            foreign_style_fraction=0.1,
        ),
    )
    model = slm.build_model(toy, tok, 0)
    cfg = SFTConfig(
        output_dir=str(tmp_path),
        max_length=256,
        completion_only_loss=True,
        report_to="none",
        use_cpu=True,
        max_steps=1,
    )
    theirs = SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(corpus), processing_class=tok)
    ours = SFTTrainer(
        model=model, args=cfg, train_dataset=tokenized_dataset(tok, corpus), processing_class=tok
    )
    assert theirs.train_dataset["input_ids"] == ours.train_dataset["input_ids"]
    assert theirs.train_dataset["labels"] == ours.train_dataset["labels"]
    kept = [
        ids for ids in ours.train_dataset["input_ids"] if len(ids) < cfg.max_length
    ]  # longer ones are cut
    assert kept and all(ids[-1] == tok.eos_token_id for ids in kept)


def test_scoring_matches_a_full_logits_reference_for_every_family(family_lms):
    """response_nll on each family's model equals a full-logits reference (BOS handled the same way)."""
    for f in PAPER_FAMILIES:
        model, tok = load_model(str(family_lms[f.name]))
        p = profile(f.profile)
        prompt = backends.format_prompt(p, QUESTION, tok)
        [got] = response_nll(model, tok, [prompt], [COMPLETION])
        enc = SequenceEncoder(tok)
        a, b = enc.prompt(prompt), enc.completion(COMPLETION, end=False)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([a + b])).logits[0].float(), -1)
        want = [-logp[len(a) - 1 + i, t].item() for i, t in enumerate(b)]
        assert got.token_ids == b and got.token_nll == pytest.approx(want, abs=1e-5)


def test_leading_bos_is_read_from_what_the_tokenizer_does():
    from tokenizers import processors

    from paradox.tokenization import leading_bos

    assert leading_bos(build_tokenizer(QWEN)) is None
    llama = build_tokenizer(LLAMA3)
    assert leading_bos(llama) == llama.bos_token_id
    # BOS and an appended EOS (add_eos_token): BOS in front, the EOS left to completion_end
    both = build_tokenizer(LLAMA3)
    bos, eos = both.bos_token_id, both.eos_token_id
    both.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A <|end_of_text|>",
        special_tokens=[("<|begin_of_text|>", bos), ("<|end_of_text|>", eos)],
    )
    assert leading_bos(both) == bos
    odd = build_tokenizer(LLAMA3)
    odd.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|start_header_id|> $A",
        special_tokens=[("<|start_header_id|>", odd.convert_tokens_to_ids("<|start_header_id|>"))],
    )
    with pytest.raises(ValueError, match="other than a leading BOS"):
        leading_bos(odd)
