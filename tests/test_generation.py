import pytest

from paradox.generation import HFGenerator, SamplingSettings, sample_sharded
from paradox.models import load_model

PROMPTS = [
    "Question: Tom has 3 apples.\nAnswer:\n",
    "Question: Ana has 5 coins. She loses 2.\nAnswer:\n",
    "Question: x\nAnswer:\n",
]


def test_loads_through_auto_classes_and_is_seeded(tiny_lm):
    gen = HFGenerator.from_pretrained(str(tiny_lm), batch_size=8)
    s = SamplingSettings(n=3, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=7)
    a, b = gen.generate(PROMPTS, s), gen.generate(PROMPTS, s)
    assert a == b
    assert len(a) == len(PROMPTS) and all(len(c) == 3 for c in a)
    other = gen.generate(PROMPTS, SamplingSettings(3, 1.0, 1.0, 12, seed=8))
    assert other != a
    # an untrained model rarely stops: truncation is reported, not hidden
    assert all(isinstance(c.truncated, bool) for cs in a for c in cs)


def test_greedy_matches_a_plain_forward_argmax(tiny_lm):
    import torch

    model, tok = load_model(str(tiny_lm))
    gen = HFGenerator(model, tok, batch_size=4)
    out = gen.generate(PROMPTS[:1], SamplingSettings(1, 0.0, 1.0, 5, 0))[0][0]
    ids = tok(PROMPTS[0], return_tensors="pt", add_special_tokens=False)["input_ids"]
    for _ in range(5):
        nxt = model(input_ids=ids).logits[0, -1].argmax()
        ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    manual = tok.decode(ids[0, -5:], skip_special_tokens=True).strip()
    assert out.text == manual


class CountingGenerator:
    name = "counting"

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def generate(self, prompts, s):
        self.calls += 1
        return self.inner.generate(prompts, s)


def test_sharded_sampling_resumes_without_redoing_shards(tiny_lm, tmp_path):
    gen = CountingGenerator(HFGenerator.from_pretrained(str(tiny_lm), batch_size=1))
    ids = [f"p{i}" for i in range(len(PROMPTS))]
    s = SamplingSettings(2, 1.0, 1.0, 8, seed=1)
    first = sample_sharded(gen, "m1", ids, PROMPTS, s, tmp_path, batch_size=1)
    assert gen.calls == 3 and len(first) == 6
    (tmp_path / "shard-00001.jsonl").unlink()  # as if the run was killed before this shard finished
    again = sample_sharded(gen, "m1", ids, PROMPTS, s, tmp_path, batch_size=1)
    assert gen.calls == 4 and again == first
    # other settings invalidate every shard
    sample_sharded(gen, "m1", ids, PROMPTS, SamplingSettings(2, 1.0, 1.0, 8, seed=2), tmp_path, batch_size=1)
    assert gen.calls == 7
    # other weights too
    sample_sharded(gen, "m2", ids, PROMPTS, SamplingSettings(2, 1.0, 1.0, 8, seed=2), tmp_path, batch_size=1)
    assert gen.calls == 10


def test_greedy_with_n_samples_repeats_the_one_greedy_answer_and_close_frees(tiny_lm):
    gen = HFGenerator.from_pretrained(str(tiny_lm), batch_size=2)
    prompts = ["Question: 1 + 2?\nAnswer:\n", "Question: 3 + 4?\nAnswer:\n"]
    one = gen.generate(prompts, SamplingSettings(1, 0.0, 1.0, 6, 0))
    three = gen.generate(prompts, SamplingSettings(3, 0.0, 1.0, 6, 0))
    assert [len(c) for c in three] == [3, 3]
    assert all(c == [o[0]] * 3 for c, o in zip(three, one, strict=True))
    gen.close()
    assert gen.model is None


def test_stops_cut_at_the_first_stop_token_or_string_and_say_whether_one_ended_the_text(tiny_lm):
    from paradox.tokenization import Stops

    _, tok = load_model(str(tiny_lm))
    eos, pad = tok.eos_token_id, tok.pad_token_id
    ids = tok("He has 5 apples. Question: next", add_special_tokens=False)["input_ids"]
    plain = Stops.resolve(tok)
    assert plain.token_ids == (eos,) and plain.key() is None  # EOS alone: cache keys stay as they were
    assert plain.finish(tok, ids) == ("He has 5 apples. Question: next", False)  # ran to the token limit
    assert plain.finish(tok, [*ids[:3], eos, *ids[3:]]) == (tok.decode(ids[:3]).strip(), True)
    assert plain.finish(tok, [*ids, pad, pad]) == (
        "He has 5 apples. Question: next",
        False,
    )  # pad is not a stop
    by_string = Stops.resolve(tok, stop_strings=["Question:", "apples"])
    assert by_string.finish(tok, ids) == ("He has 5", True)  # the earliest of the stop strings
    assert by_string.key() == {"tokens": [], "strings": ["Question:", "apples"]}
    with_pad = Stops.resolve(tok, stop_tokens=["<pad>"])
    assert with_pad.token_ids == (eos, pad) and with_pad.finish(tok, [*ids[:2], pad, *ids[2:]])[1]
    with pytest.raises(ValueError, match="'Question' is not one token"):
        Stops.resolve(tok, stop_tokens=["Question"])


@pytest.mark.parametrize("cut", ["whole-lines", "mid-line"])
def test_a_truncated_shard_is_resampled_not_trusted(tiny_lm, tmp_path, cut):
    gen = CountingGenerator(HFGenerator.from_pretrained(str(tiny_lm), batch_size=3))
    ids = [f"p{i}" for i in range(len(PROMPTS))]
    s = SamplingSettings(4, 1.0, 1.0, 8, seed=1)
    first = sample_sharded(gen, "m1", ids, PROMPTS, s, tmp_path, batch_size=3)
    shard = tmp_path / "shard-00000.jsonl"
    data = shard.read_bytes()
    shard.write_bytes(
        b"".join(data.splitlines(keepends=True)[:5]) if cut == "whole-lines" else data[: len(data) // 2]
    )
    again = sample_sharded(gen, "m1", ids, PROMPTS, s, tmp_path, batch_size=3)
    assert gen.calls == 2 and again == first and shard.read_bytes() == data
