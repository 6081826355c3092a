import math

import pytest
import torch

from paradox.metrics import avg_at_k, mean_ci95, perplexity, response_nll
from paradox.models import load_model


def test_avg_at_k_is_a_mean_not_pass_at_k():
    rows = [
        {"id": "a", "correct": True},
        {"id": "a", "correct": False},
        {"id": "b", "correct": False},
        {"id": "b", "correct": False},
    ]
    assert avg_at_k(rows) == pytest.approx(25.0)
    assert math.isnan(avg_at_k([]))


def test_response_nll_scores_exactly_the_response_tokens(tiny_lm):
    model, tok = load_model(str(tiny_lm))
    prompt, response = "Question: Tom has 3 apples.\nAnswer:\n", "Tom has 3 apples.\nThe answer is 3."
    [scored] = response_nll(model, tok, [prompt], [response])
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    r_ids = tok(response, add_special_tokens=False)["input_ids"]
    assert scored.n_tokens == len(r_ids)
    ids = torch.tensor([p_ids + r_ids])
    logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    manual = -sum(logp[len(p_ids) - 1 + i, t].item() for i, t in enumerate(r_ids))
    assert scored.nll == pytest.approx(manual, rel=1e-4)
    # batching with padding does not change a trace's score
    batch = response_nll(
        model, tok, [prompt, "Question: a much longer prompt here\nAnswer:\n"], [response, "x"], batch_size=2
    )
    assert batch[0].nll == pytest.approx(scored.nll, rel=1e-4)


def test_perplexity_is_token_weighted():
    from paradox.metrics import TraceNLL

    a, b = TraceNLL(2.0, 1, [2.0]), TraceNLL(3.0, 3, [1.0, 1.0, 1.0])
    assert perplexity([a, b]) == pytest.approx(math.exp(5.0 / 4))


def test_mean_ci95():
    m, h = mean_ci95([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-6)  # t, 2 d.o.f.
    assert mean_ci95([5.0]) == (5.0, 0.0)


# --- memory-safe scoring ----------------------------------------------------------------------------


def _pairs(splits, n=14):
    from paradox.toy import slm

    rows = slm.pretraining_corpus(splits["train"][:n], "Question: {question}\nAnswer:\n", 0.5, 1)
    # varied lengths, one very short response, one prompt repeated with another response
    rows[3] = {**rows[3], "completion": "8"}
    rows[5] = {**rows[5], "prompt": rows[4]["prompt"]}
    return [r["prompt"] for r in rows], [r["completion"] for r in rows]


def _reference_nll(model, tok, prompt, response):
    """The former method: one sequence, full float32 logits, log_softmax."""
    a = tok(prompt, add_special_tokens=False)["input_ids"]
    b = tok(response, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([a + b])).logits[0].float(), -1)
    return [-logp[len(a) - 1 + i, t].item() for i, t in enumerate(b)]


def test_response_nll_equals_the_full_logits_result_whatever_the_batching(tiny_lm, splits):
    model, tok = load_model(str(tiny_lm))
    prompts, responses = _pairs(splits)
    ref = [_reference_nll(model, tok, p, r) for p, r in zip(prompts, responses, strict=True)]
    for kw in (
        {"token_budget": 1},
        {"token_budget": 300},
        {"token_budget": 10**6},
        {"token_budget": 10**6, "batch_size": 3},
        {"logit_chunk_bytes": 4 * len(tok) * 3},
    ):
        got = response_nll(model, tok, prompts, responses, **kw)
        for g, want in zip(got, ref, strict=True):
            assert g.n_tokens == len(want) and g.token_nll == pytest.approx(want, abs=1e-5), kw
            assert g.nll == pytest.approx(sum(want), abs=1e-4)
    # a trace scores the same alone and among others (batch composition), in input order
    alone = response_nll(model, tok, prompts[2:3], responses[2:3])[0]
    assert alone.token_nll == pytest.approx(
        response_nll(model, tok, prompts, responses)[2].token_nll, abs=1e-5
    )


def test_response_nll_never_holds_full_vocabulary_logits_of_a_batch(tiny_lm, splits):
    model, tok = load_model(str(tiny_lm))
    prompts, responses = _pairs(splits)
    vocab, budget, per_slice = model.get_output_embeddings().weight.shape[0], 200, 5
    head_rows, body_shapes = [], []
    h1 = model.get_output_embeddings().register_forward_hook(
        lambda m, i, o: head_rows.append(o.shape[:-1].numel())
    )
    h2 = model.base_model.register_forward_pre_hook(
        lambda m, a, kw: body_shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    try:
        response_nll(
            model, tok, prompts, responses, token_budget=budget, logit_chunk_bytes=4 * vocab * per_slice
        )
    finally:
        h1.remove()
        h2.remove()
    lengths = sorted(
        len(tok(p + r, add_special_tokens=False)["input_ids"])
        for p, r in zip(prompts, responses, strict=True)
    )
    assert len(body_shapes) > 2  # several micro-batches
    for rows, width in body_shapes:
        assert rows * width <= budget or rows == 1  # a sequence longer than the budget goes alone
    # logits: slices of <= per_slice positions, plus the one-off check of the head on <= 8 positions
    assert max(head_rows) <= 8 and sum(r <= per_slice for r in head_rows) >= len(head_rows) - 2
    assert lengths[-1] > 8  # so a whole sequence's logits would have been larger than any slice seen


def test_micro_batches_respect_the_budget_and_keep_every_index():
    from paradox.metrics import micro_batches

    lengths = [5, 50, 7, 7, 30, 1, 120, 9]
    groups = micro_batches(lengths, token_budget=60, max_rows=3)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert len(g) <= 3 and (len(g) * max(lengths[i] for i in g) <= 60 or len(g) == 1)
    assert [6] in groups  # longer than the budget: alone


def test_response_nll_edge_cases(tiny_lm):
    model, tok = load_model(str(tiny_lm))
    assert response_nll(model, tok, [], []) == []
    [empty] = response_nll(model, tok, ["Question: x\nAnswer:\n"], [""])
    assert (empty.n_tokens, empty.nll, empty.token_nll) == (0, 0.0, [])
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        response_nll(model, tok, ["a\n", "b\n"], ["c"])
    with pytest.raises(ValueError, match="prompt 0 is empty"):
        response_nll(model, tok, [""], ["c"])


def test_response_nll_refuses_a_model_whose_logits_are_not_its_head_of_the_hidden_states(tiny_lm):
    """A family that scales or soft-caps its logits would be scored wrong from the hidden states."""
    model, tok = load_model(str(tiny_lm))
    forward = model.forward

    def scaled(*a, **kw):
        out = forward(*a, **kw)
        out.logits = out.logits * 2.0
        return out

    model.forward = scaled
    with pytest.raises(ValueError, match="not lm_head"):
        response_nll(model, tok, ["Question: x\nAnswer:\n"], ["Tom has 3 apples."])


def test_avg_at_k_refuses_missing_problems_or_samples():
    full = [{"id": i, "correct": j == 0} for i in ("a", "b") for j in range(2)]
    assert avg_at_k(full, ["a", "b"], 2, "m/test") == pytest.approx(50.0)
    with pytest.raises(ValueError, match=r"m/test: .*1 of 2 problems have no samples .*'b'"):
        avg_at_k(full[:2], ["a", "b"], 2, "m/test")
    with pytest.raises(ValueError, match=r"m/test: .*exactly k=2 samples .*'b': 1"):
        avg_at_k(full[:3], ["a", "b"], 2, "m/test")
    with pytest.raises(ValueError, match=r"ids not among the problems .*'c'"):
        avg_at_k([*full, {"id": "c", "correct": True}], ["a", "b"], 2, "m/test")
