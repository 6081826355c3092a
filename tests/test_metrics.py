import math

import pytest
import torch

from paradox.generation import load_model
from paradox.metrics import avg_at_k, mean_ci95, perplexity, response_nll


def test_avg_at_k_is_a_mean_not_pass_at_k():
    rows = [{"id": "a", "correct": True}, {"id": "a", "correct": False},
            {"id": "b", "correct": False}, {"id": "b", "correct": False}]
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
    batch = response_nll(model, tok, [prompt, "Question: a much longer prompt here\nAnswer:\n"],
                         [response, "x"], batch_size=2)
    assert batch[0].nll == pytest.approx(scored.nll, rel=1e-4)


def test_perplexity_is_token_weighted():
    from paradox.metrics import TraceNLL

    a, b = TraceNLL(2.0, 1, [2.0]), TraceNLL(3.0, 3, [1.0, 1.0, 1.0])
    assert perplexity([a, b]) == pytest.approx(math.exp(5.0 / 4))


def test_mean_ci95():
    m, h = mean_ci95([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-6)  # t, 2 d.o.f.
    assert mean_ci95([5.0]) == (5.0, 0.0)
