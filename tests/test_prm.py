"""The process reward model as Style-Aligned Refinement's error locator (`paradox.prm`), on a tiny PRM
built here with Qwen2.5-Math-PRM-7B's published layout (tests/qwen_rm.py: config.json, remote code with
a 2-class head per token, the "<extra_0>" step separator, a ChatML template), and `make plan`'s checks of
a PRM's files. No hub: every model and tokenizer is built locally."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from paradox import backends, prm
from paradox.params import Oracle, load_params
from paradox.paths import RunPaths
from paradox.prm import HFProcessReward, prm_chat, token_batches
from paradox.problems import Problem
from paradox.prompt_oracle import PromptOracle, load_prompts, split_steps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from qwen_rm import PRM_SEPARATOR, build_qwen_prm, qwen_prm_tokenizer, step_probabilities  # noqa: E402

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


@pytest.fixture(scope="module")
def tiny_prm(tiny_lm, tmp_path_factory) -> Path:
    tok = qwen_prm_tokenizer(AutoTokenizer.from_pretrained(tiny_lm))
    return build_qwen_prm(tmp_path_factory.mktemp("qwen_prm") / "prm", tok, seed=3)


def _o(path: Path, **kw) -> Oracle:
    return Oracle(
        **{
            "backend": "openai",
            "base_url": "http://127.0.0.1:1/v1",
            "model": "m",
            "prm": str(path),
            "prm_trust_remote_code": True,
            "prm_dtype": "float32",
            **kw,
        }
    )


def _problem(i: int) -> Problem:
    return Problem(
        id=f"p{i}",
        question=f"Tom has {i + 2} apples and buys {i}. How many?",
        answer=str(2 * i + 2),
        reference_solution="",
        source="test",
    )


# Paragraph traces (steps split at blank lines, as the model card splits a response at "\n\n") and one
# single-paragraph trace (its lines are its steps), of varied lengths so that every batch is padded.
TRACES = [
    "Tom has 2 apples.\n\nHe buys 0 more: 2 + 0 = 2.\n\nThe answer is \\boxed{2}.",
    "Start: 3 apples.\nBuy 1: 3 + 1 = 4.\nSo \\boxed{4}.",
    "\n\n".join(f"Step {j}: {j} + 1 = {j + 1}." for j in range(9)) + "\n\nThe answer is \\boxed{6}.",
    "Only one step, \\boxed{8}.",
    "A step.\n\nAnother step.",
]


def test_chat_follows_the_model_card(tiny_prm):
    """System prompt, the question as the user turn, every step followed by the separator (the card's
    "<extra_0>".join(steps) + "<extra_0>"), no generation prompt; a separator in the text is removed."""
    tok = AutoTokenizer.from_pretrained(tiny_prm)
    steps = ["Step one.", "Step two."]
    text = prm_chat(tok, "What is 1+1?", steps, SYSTEM, PRM_SEPARATOR)
    card = PRM_SEPARATOR.join(steps) + PRM_SEPARATOR
    assert text == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nWhat is 1+1?<|im_end|>\n"
        f"<|im_start|>assistant\n{card}<|im_end|>\n"
    )
    sneaky = prm_chat(tok, f"Q{PRM_SEPARATOR}?", [f"a{PRM_SEPARATOR}b", "c"], None, PRM_SEPARATOR)
    assert sneaky.count(PRM_SEPARATOR) == 2 and "<|im_start|>system" not in sneaky


def test_step_scores_are_the_softmax_at_each_separator_whatever_the_batch(tiny_prm):
    problems = [_problem(i) for i in range(len(TRACES))]
    small = HFProcessReward(_o(tiny_prm, prm_token_budget=1), show_progress=False)  # one chat per pass
    big = HFProcessReward(_o(tiny_prm, prm_token_budget=100_000), show_progress=False)
    a, b = small.step_scores_many(problems, TRACES), big.step_scores_many(problems, TRACES)
    assert [len(s) for s in a] == [len(split_steps(t)) for t in TRACES] == [3, 3, 10, 1, 2]
    chats = [big.encode(p.question, t)[0] for p, t in zip(problems, TRACES, strict=True)]
    want = step_probabilities(tiny_prm, chats, big.sep_id)  # the model card's reading, unpadded, by hand
    for got_small, got_big, w in zip(a, b, want, strict=True):
        assert got_small == pytest.approx(w, abs=1e-5) and got_big == pytest.approx(w, abs=1e-5)
    flat = [x for s in a for x in s]
    assert all(0 < x < 1 for x in flat) and len(set(flat)) > len(flat) // 2  # real spread, not a constant
    assert big.stats() == {"prm_chats": len(TRACES), "prm_truncated": 0}


def test_first_step_below_the_threshold_is_the_first_wrong_one(tiny_prm):
    problems = [_problem(i) for i in range(len(TRACES))]
    scores = HFProcessReward(_o(tiny_prm), show_progress=False).step_scores_many(problems, TRACES)
    for threshold in (0.3, 0.5, 0.7):
        got = HFProcessReward(_o(tiny_prm, prm_threshold=threshold), show_progress=False).locate_many(
            problems, TRACES
        )
        want = [next((i for i, s in enumerate(sc) if s < threshold), None) for sc in scores]
        assert got == want
    everything = HFProcessReward(_o(tiny_prm, prm_threshold=0.999999), show_progress=False)
    assert everything.locate_many(problems, TRACES) == [0] * len(TRACES)
    nothing = HFProcessReward(_o(tiny_prm, prm_threshold=1e-9), show_progress=False)
    assert nothing.locate_many(problems, TRACES) == [None] * len(TRACES)
    assert nothing.locate_many([problems[0]], [""]) == [None]  # no step: nothing to score


def test_a_cut_chat_scores_the_steps_that_fit_and_is_not_located_beyond_them(tiny_prm):
    """The END of a too long chat is cut: its first steps keep their scores; if none is below the
    threshold the trace is "not located" (counted), never a guess about the steps cut off."""
    problem, trace = _problem(1), TRACES[2]
    full = HFProcessReward(_o(tiny_prm), show_progress=False)
    ids, n = full.encode(problem.question, trace)
    sep = full.sep_id
    keep = [i for i, t in enumerate(ids) if t == sep][3] + 1  # room for four of the ten steps
    cut = HFProcessReward(_o(tiny_prm, prm_max_length=keep, prm_threshold=1e-9), show_progress=False)
    assert cut.step_scores_many([problem], [trace])[0] == pytest.approx(
        full.step_scores_many([problem], [trace])[0][:4], abs=1e-5
    )
    assert cut.locate_many([problem], [trace]) == [None] and cut.stats()["prm_truncated"] == 1


def test_answers_are_remembered_and_the_weights_freed(tiny_prm):
    problems = [_problem(i) for i in range(3)]
    loc = HFProcessReward(_o(tiny_prm), show_progress=False)
    first = loc.locate_many(problems, TRACES[:3])
    loc.close()
    assert loc.model is None
    assert loc.locate_many(problems[::-1], TRACES[:3][::-1]) == first[::-1]  # no reload, no new pass
    assert loc.model is None and loc.stats()["prm_chats"] == 3


def test_bad_separator_or_checkpoint_fail_on_load_naming_the_key(tiny_prm, tmp_path):
    with pytest.raises(ValueError, match=r"prm_step_separator.*tokens of its tokenizer"):
        HFProcessReward(_o(tiny_prm, prm_step_separator="<extra_9>"), show_progress=False).load()
    no_map = tmp_path / "no_map"
    shutil.copytree(tiny_prm, no_map)
    cfg = json.loads((no_map / "config.json").read_text())
    cfg["auto_map"].pop("AutoModel")
    (no_map / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="auto_map.AutoModel"):
        HFProcessReward(_o(no_map), show_progress=False).load()


def test_params_need_trust_remote_code_for_the_hf_backend_and_a_real_oracle():
    with pytest.raises(ValueError, match="prm_trust_remote_code"):
        Oracle(backend="openai", base_url="http://x/v1", model="m", prm="Qwen/Qwen2.5-Math-PRM-7B")
    Oracle(
        backend="openai",
        base_url="http://x/v1",
        model="m",
        prm="Qwen/Qwen2.5-Math-PRM-7B",
        prm_backend="vllm",
    )
    with pytest.raises(ValueError, match="toy Oracle's PRM is its stand-in"):
        Oracle(prm="Qwen/Qwen2.5-Math-PRM-7B", prm_trust_remote_code=True)
    with pytest.raises(ValueError, match="needs oracle.prm"):
        Oracle(backend="openai", base_url="http://x/v1", model="m", locator="prm")


def test_token_batches_respect_the_budget():
    lengths = [5, 50, 20, 20, 7, 100]
    batches = token_batches(lengths, 60)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [5]  # longer than the budget: alone
    assert all(len(b) * lengths[b[0]] <= 60 or len(b) == 1 for b in batches)
    assert all(lengths[b[0]] == max(lengths[i] for i in b) for b in batches)  # longest first


class _Client:
    """A BatchCompleter that must not be asked to locate (the PRM does)."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def answer_many(self, prompts, *, kind="", sources=None, desc=None):
        self.kinds += [kind] * len(prompts)
        raise AssertionError(f"the Oracle was asked ({kind}) but the PRM locates")


def test_prompt_oracle_takes_its_first_wrong_steps_from_the_prm(tiny_prm, tmp_path):
    params = load_params("smoke", ROOT / "params")
    o = _o(tiny_prm, locator="prm")
    real = params.model_copy(update={"oracle": o})
    oracle = backends.oracle(real, RunPaths("smoke", tmp_path))
    assert isinstance(oracle, PromptOracle) and isinstance(oracle.locator, HFProcessReward)
    problems = [_problem(i) for i in range(len(TRACES))]
    want = HFProcessReward(o, show_progress=False).locate_many(problems, TRACES)
    oracle.client = _Client()  # type: ignore[assignment]
    assert oracle.locate_many(problems, TRACES) == want and oracle.stats()["prm_chats"] == len(TRACES)
    located = backends.locators(real, oracle)
    assert set(located) == {"oracle", "prm"} and located["prm"] is oracle.locator  # one model, one memory
    alone = backends.locators(
        real.model_copy(update={"oracle": o.model_copy(update={"compare_locators": False})}), oracle
    )
    assert set(alone) == {"prm"}  # no locate request to the Oracle


def test_prompt_oracle_without_a_locator_still_asks_the_locate_prompt():
    prompts = load_prompts(Oracle().prompts.model_dump(), root=ROOT)
    client = _Client()
    oracle = PromptOracle(client, prompts)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="locate"):
        oracle.locate_many([_problem(0)], ["a\n\nb"])
    assert client.kinds == ["locate"]


# --- make plan: the PRM's files ------------------------------------------------------------------------


def _real(path: str, **kw):
    params = load_params("smoke", ROOT / "params")
    return params.model_copy(update={"oracle": _o(Path(path), **kw)})


def test_plan_checks_a_local_prm_config_and_separator(tiny_prm, tmp_path):
    lines, errors = prm.check(_real(str(tiny_prm)))
    assert errors == [] and "step separator '<extra_0>' checked" in lines[0]
    _, errors = prm.check(_real(str(tiny_prm), prm_step_separator="<extra_7>"))
    assert len(errors) == 1 and "'<extra_7>' (oracle.prm_step_separator) is" in errors[0]
    wrong_arch = tmp_path / "arch"
    shutil.copytree(tiny_prm, wrong_arch)
    cfg = json.loads((wrong_arch / "config.json").read_text())
    (wrong_arch / "config.json").write_text(json.dumps(cfg | {"architectures": ["Qwen2ForRewardModel"]}))
    _, errors = prm.check(_real(str(wrong_arch), prm_backend="vllm"))
    assert len(errors) == 1 and "STEP pooling" in errors[0] and "Qwen2ForRewardModel" in errors[0]


def test_plan_says_a_hub_prm_not_on_this_machine_is_checked_when_it_loads(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    lines, errors = prm.check(_real("Qwen/Qwen2.5-Math-PRM-7B"))
    assert errors == [] and "checked when notebook 03 loads it" in lines[0]
    _, errors = prm.check(_real("runs/nowhere/prm"))
    assert errors and "oracle.prm" in errors[0] and "runs/nowhere/prm" in errors[0]


def test_plan_shows_the_locator_its_model_and_its_cost_and_refuses_a_bad_local_prm(tiny_prm):
    from paradox import gpu_hours, plan

    main = load_params("paper-qwen2.5-math-1.5b", ROOT / "params")
    text = plan.render(main)
    assert (
        "locator (oracle.locator: oracle): the Oracle's locate prompt (Qwen/Qwen2.5-Math-72B-Instruct)"
        in text
    )
    assert "beside it, for the locator agreement table: PRM Qwen/Qwen2.5-Math-PRM-7B via transformers" in text
    assert "03_style_align   PRM Qwen/Qwen2.5-Math-PRM-7B (hf), locating:" in text  # its GPU hours
    assert "03_style_align   PRM Qwen/Qwen2.5-Math-PRM-7B (hf): needs ~" in text  # its memory
    alone = main.model_copy(
        update={"oracle": main.oracle.model_copy(update={"locator": "prm", "compare_locators": False})}
    )
    text = plan.render(alone)
    assert "locator (oracle.locator: prm): PRM Qwen/Qwen2.5-Math-PRM-7B" in text and "beside it" not in text
    assert "locate requests to the Oracle: none" in text
    s = gpu_hours.sizes(main)
    asked = gpu_hours.oracle_requests(main, s)["03_style_align"]["requests"]
    assert asked - gpu_hours.oracle_requests(alone, s)["03_style_align"]["requests"] == s.kept  # no locate
    no_prm = main.model_copy(update={"oracle": main.oracle.model_copy(update={"prm": None})})
    assert "PRM" not in "\n".join(w.what for w in gpu_hours.estimate(no_prm))
    bad = main.model_copy(
        update={"oracle": main.oracle.model_copy(update={"prm": str(tiny_prm), "prm_step_separator": "<x>"})}
    )
    _, errors = plan.checks(bad)
    assert any("'<x>' (oracle.prm_step_separator)" in e for e in errors)


def test_preflight_checks_the_config_and_tokenizer_without_weights(tiny_prm, tmp_path):
    main = load_params("paper-qwen2.5-math-1.5b", ROOT / "params")

    def with_prm(path: Path, **kw):
        return main.model_copy(update={"oracle": main.oracle.model_copy(update={"prm": str(path), **kw})})

    prm.preflight(with_prm(tiny_prm))
    with pytest.raises(ValueError, match="prm_step_separator"):
        prm.preflight(with_prm(tiny_prm, prm_step_separator="<extra_5>"))
    no_template = tmp_path / "no_template"
    shutil.copytree(tiny_prm, no_template)
    cfg = json.loads((no_template / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(cfg))
    (no_template / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="no chat template"):
        prm.preflight(with_prm(no_template))
    prm.preflight(with_prm(tmp_path / "nowhere-but-not-run", locator="oracle", compare_locators=False))
