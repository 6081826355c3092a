"""`make plan`'s Oracle-budget check: every Oracle prompt template, on the longest question and trace
a profile allows, fits the Oracle's context with its completion limit - and the bound it uses holds
for the prompts PromptOracle actually sends."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fault_proxy import FaultServer
from oracle_helpers import BYTE_CHAT_OVERHEAD, byte_tokenizer

from paradox import oracle_budget, plan
from paradox.oracle_budget import KINDS, OracleTokenizer, load_templates, request_budgets, trace_tokens
from paradox.oracle_client import OracleClient
from paradox.params import ParamsError, load_params
from paradox.problems import Problem
from paradox.prompt_oracle import PromptOracle
from paradox.retention import judge_retention_many

ROOT = Path(__file__).resolve().parents[1]
PAPER = ["paper-qwen2.5-math-1.5b", "paper-qwen2.5-math-7b", "paper-llama-3.2-3b", "paper-deepseekmath-7b"]


@pytest.fixture
def pdir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "params", tmp_path / "params")
    return tmp_path / "params"


def child(pdir: Path, body: str, name: str = "child") -> str:
    (pdir / f"{name}.yaml").write_text(f"extends: paper-qwen2.5-math-1.5b\ndescription: x\n{body}")
    return name


@pytest.mark.parametrize("profile", PAPER)
def test_paper_profiles_fit_every_oracle_request(profile):
    p = load_params(profile, ROOT / "params")
    assert p.oracle.context_length == 4096  # Qwen2.5-Math-72B-Instruct's context
    lines, errors = oracle_budget.check(p)
    assert errors == []
    for kind in KINDS:
        assert any(
            line.strip().startswith(kind) and line.rstrip().endswith("left)") and " fits " in line
            for line in lines
        ), kind


def test_the_paper_setting_with_its_full_length_traces_cannot_fit(pdir, monkeypatch, capsys):
    """The issue: 4,096-token SLM traces (sampling.max_new_tokens) in a 4,096-token context. `make plan`
    refuses, naming the kinds and the key to change; nothing runs."""
    name = child(pdir, "rft:\n  max_trace_tokens: 4096\n")
    monkeypatch.setattr(plan, "load_params", lambda profile: load_params(profile, pdir))
    assert plan.main([name]) == 1
    out = capsys.readouterr()
    for kind in KINDS:
        if kind != "synthesize":  # the only prompt without the trace
            assert f"error: profile {name}: Oracle {kind} request: prompt <= " in out.err
    assert "> oracle.context_length 4,096; lower rft.max_trace_tokens (4,096)" in out.err
    assert "DOES NOT FIT" in out.out and "check(s) failed" in out.out
    assert plan.main(["--check", name]) == 1  # what `make paper` can run first: the errors only
    checked = capsys.readouterr()
    assert checked.out == "" and "Oracle refine request" in checked.err
    monkeypatch.setattr(plan, "load_params", lambda profile: load_params(profile, ROOT / "params"))
    assert plan.main(["--check", "paper-qwen2.5-math-1.5b"]) == 0 and capsys.readouterr() == ("", "")


def test_a_completion_cap_below_what_an_answer_needs_is_refused(pdir):
    p = load_params(child(pdir, "oracle:\n  max_tokens: 1024\n"), pdir)
    _, errors = oracle_budget.check(p)
    assert any(
        e.startswith("oracle.max_tokens (1,024) is below the 1,312 tokens a refine answer needs")
        for e in errors
    )


@pytest.mark.parametrize(
    "body,message",
    [
        ("rft:\n  max_trace_tokens: null\n", "oracle.context_length is set but ['rft.max_trace_tokens'] not"),
        (
            "oracle:\n  context_length: null\n",
            "rft.max_question_tokens and rft.max_trace_tokens count the Oracle's tokens",
        ),
        (
            "oracle:\n  answers:\n    refine:\n      max_tokens: 8\n      min_tokens: 16\n",
            "min_tokens 16 is above max_tokens 8",
        ),
        (
            "oracle:\n  answers:\n    refin: {max_tokens: 8, min_tokens: 4}\n",
            "unknown key 'oracle.answers.refin'",
        ),
    ],
)
def test_budget_keys_are_checked_with_the_params(pdir, body, message):
    with pytest.raises(ParamsError) as err:
        load_params(child(pdir, body), pdir)
    assert message in str(err.value)


def test_an_uncounted_oracle_is_said_so():
    p = load_params("paper-qwen2.5-math-1.5b", ROOT / "params")
    loose = p.model_copy(
        update={
            "oracle": p.oracle.model_copy(update={"context_length": None}),
            "rft": p.rft.model_copy(update={"max_trace_tokens": None, "max_question_tokens": None}),
        }
    )
    lines, errors = oracle_budget.check(loose)
    assert errors == [] and "not counted (oracle.context_length is not set)" in lines[0]
    toy_lines, _ = oracle_budget.check(load_params("toy", ROOT / "params"))
    assert "toy Oracle" in toy_lines[0]


# --- the bound holds for what is really sent ---------------------------------------------------------

Q_BOUND, T_BOUND = 120, 700


def longest_trace(count) -> str:
    """A line-per-step trace (as rft.clean leaves them) whose step-tagged form just fits T_BOUND."""
    lines: list[str] = []
    while True:
        nxt = [*lines, f"Step {len(lines)}: we add {len(lines)} and 2 to get {len(lines) + 2}."]
        if trace_tokens("\n".join(nxt), count) > T_BOUND:
            return "\n".join(lines)
        lines = nxt


def test_the_plan_bound_holds_for_the_prompts_actually_sent(tmp_path):
    """With a tokenizer of one token per byte the plan's template bound (1 token per byte, the
    exact chat overhead) is tight, so the test compares like with like: every prompt PromptOracle
    sends for a question and a trace at the bounds is within the plan's bound for its kind, and
    every completion limit it asks for is within the plan's too."""
    tok = OracleTokenizer(str(byte_tokenizer(tmp_path / "tok")))
    base = load_params("paper-qwen2.5-math-1.5b", ROOT / "params")
    p = base.model_copy(
        update={
            "oracle": base.oracle.model_copy(
                update={
                    "context_length": 16384,
                    "template_tokens_per_byte": 1.0,
                    "chat_template_tokens": BYTE_CHAT_OVERHEAD,
                }
            ),
            "rft": base.rft.model_copy(update={"max_question_tokens": Q_BOUND, "max_trace_tokens": T_BOUND}),
        }
    )
    budgets = {b.kind: b for b in request_budgets(p, load_templates(p))[0]}
    trace = longest_trace(tok.text_tokens)
    question = ("Q1: " + "how many apples are there in all? " * 10)[:Q_BOUND]
    assert trace_tokens(trace, tok.text_tokens) > T_BOUND - 40 and tok.text_tokens(question) == Q_BOUND

    def answer(
        body: dict,
    ) -> str:  # the worst case: the first step is wrong, rewrites as long as their source
        prompt = body["messages"][-1]["content"]
        if "[Math Problem]" in prompt:
            return "\\boxed{0}"
        if "Refine this solution" in prompt or "Solve the following" in prompt:
            return f"<solution>\n{trace}\n</solution>"
        if "Score the rewrite" in prompt:
            return "Score: 5"
        return f"<rewrite>\n{trace}\n</rewrite>"

    with FaultServer(responder=answer) as srv:
        client = OracleClient(
            base_url=srv.url,
            model="m",
            cache_dir=tmp_path / "cache",
            api_key_env="X",
            context_length=p.oracle.context_length,
            tokenizer=tok,
            answers=p.oracle.answers,
        )
        oracle = PromptOracle(client, load_templates(p))
        ps = [Problem(id="p", question=question, answer="4", reference_solution="", source="test")]
        refined = oracle.refine_many(ps, [trace])[0]
        oracle.synthesize_many(ps)
        oracle.rewrite_fraction_many(ps, [trace], 0.5)  # locate, style-align, drift
        judge_retention_many(client, load_templates(p)["retention_judge"], [(trace, refined)], desc=None)
        sent = srv.chat_requests()
    markers = {
        "refine": "Refine this solution",
        "synthesize": "Solve the following",
        "locate": "[Math Problem]",
        "style_align": "earliest step that contains",
        "drift": "shown for context only",
        "retention_judge": "Score the rewrite",
    }
    for kind, marker in markers.items():
        mine = [r for r in sent if marker in r.prompt]
        assert mine, kind
        worst = max(tok.prompt_tokens(r.prompt) for r in mine)
        assert worst <= budgets[kind].prompt, (kind, worst, budgets[kind].prompt)
        assert max(r.body["max_tokens"] for r in mine) <= budgets[kind].completion, kind
    # Not a vacuous bound: the prompts carrying the trace come within a few percent of it.
    for kind in ("locate", "style_align"):
        worst = max(tok.prompt_tokens(r.prompt) for r in sent if markers[kind] in r.prompt)
        assert worst >= 0.95 * budgets[kind].prompt, (kind, worst, budgets[kind].prompt)


def test_notebook_01s_check_tests_what_make_plan_assumed(tmp_path):
    """The paper profile assumes 0.5 tokens per byte of template text; a tokenizer needing more is
    caught in the first minute of a run (notebook 01), naming the key."""
    p = load_params("paper-qwen2.5-math-1.5b", ROOT / "params")
    tok = OracleTokenizer(str(byte_tokenizer(tmp_path / "tok")))  # 1 token per byte
    lines, errors = oracle_budget.check(p, tok)
    assert "counted with the Oracle's tokenizer" in lines[0]
    assert any(
        "the refine template takes" in e and "raise oracle.template_tokens_per_byte to 1.000" in e
        for e in errors
    )
    exact = p.model_copy(update={"oracle": p.oracle.model_copy(update={"template_tokens_per_byte": 1.0})})
    assert not [e for e in oracle_budget.check(exact, tok)[1] if "template_tokens_per_byte" in e]
