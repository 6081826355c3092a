"""PromptOracle (the real Oracle's prompts and parsing) against a scripted fake endpoint."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from fault_proxy import FaultServer
from oracle_helpers import PayloadServer, byte_tokenizer, completion

from paradox import backends
from paradox.oracle_client import OracleClient
from paradox.params import OraclePrompts, load_params
from paradox.paths import RunPaths
from paradox.problems import Problem
from paradox.prompt_oracle import (
    FALLBACK_COUNTS,
    REQUIRED,
    PromptOracle,
    load_prompts,
    parse_index,
    split_steps,
)
from paradox.retention import judge_retention_many, load_prompt
from paradox.toy import styles
from paradox.toy.oracle import ToyOracle

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = load_prompts(OraclePrompts().model_dump(), root=ROOT)

# Four paragraphs; paragraph 1 is wrong, yet the final answer (4) is right.
TRACE = "We add the two numbers first.\n\n2 + 2 = 5, so we have 5.\n\nThen 4 * 1 = 4.\n\nThe answer is 4.\n"
FIXED_TAIL = "2 + 2 = 4, so we have 4.\n\nThen 4 * 1 = 4.\n\nThe answer is 4."


def problem(pid: str, question: str, answer: str = "4") -> Problem:
    return Problem(id=pid, question=question, answer=answer, reference_solution="", source="test")


class Script:
    """The fake Oracle: one answer per (kind of prompt, question)."""

    KINDS = {
        "locate": "[Math Problem]",
        "style_align": "earliest step that contains an error",
        "drift": "shown for context only",
        "refine": "Refine this solution",
        "synthesize": "Solve the following",
        "retention_judge": "Score the rewrite",
    }

    def __init__(self, answers: dict[tuple[str, str], str]) -> None:
        self.answers = answers

    @classmethod
    def kind(cls, prompt: str) -> str:
        return next(k for k, marker in cls.KINDS.items() if marker in prompt)

    def __call__(self, body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        q = re.search(r"(Q\d+)", prompt)
        return self.answers.get((self.kind(prompt), q.group(1) if q else ""), "")


@pytest.fixture
def fake(tmp_path):
    """(start(answers) -> PromptOracle, the server) with the shipped prompt files."""
    servers = []

    def start(answers: dict[tuple[str, str], str]) -> tuple[PromptOracle, FaultServer]:
        srv = FaultServer(responder=Script(answers)).start()
        servers.append(srv)
        client = OracleClient(
            base_url=srv.url,
            model="fake-model",
            cache_dir=tmp_path / "cache",
            api_key_env="X",
            backoff_base_s=0.01,
        )
        return PromptOracle(client, PROMPTS, name="fake"), srv

    yield start
    for s in servers:
        s.stop()


def test_prompt_files_have_their_placeholders():
    assert set(PROMPTS) == set(REQUIRED)
    for name, text in PROMPTS.items():
        for field in REQUIRED[name]:
            assert field in text, (name, field)


def test_split_steps_paragraphs_then_lines():
    s = split_steps(TRACE)
    assert s.mode == "paragraph" and s.items == [
        "We add the two numbers first.",
        "2 + 2 = 5, so we have 5.",
        "Then 4 * 1 = 4.",
        "The answer is 4.",
    ]
    assert s.head(1) == "We add the two numbers first.\n\n" and s.head(1) + s.tail(1) == TRACE
    lines = split_steps("a = 1\n  b = 2\n\n")  # one paragraph: its lines
    assert lines.mode == "line" and lines.items == ["a = 1", "b = 2"]
    assert split_steps("x\n \n\n  y\n").items == ["x", "y"]  # several blank lines are one break
    assert len(split_steps("")) == 0 and split_steps("   \n").items == []


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("The earliest error is in paragraph 1.\n\n\\boxed{1}", (1, True)),
        ("All paragraphs are correct. \\boxed{-1}", (None, True)),
        ("\\boxed{ 2 }", (2, True)),
        ("<think>maybe \\boxed{0}</think>The answer is \\boxed{3}", (3, True)),
        ("Final answer: 2", (2, True)),
        ("-1", (None, True)),
        ("paragraph 3 looks fine to me", (None, False)),
        ("garbage", (None, False)),
        ("", (None, False)),
        (None, (None, False)),
        ("\\boxed{4}", (None, False)),  # out of range: 4 steps are 0-3
        ("\\boxed{-2}", (None, False)),
    ],
)
def test_parse_index(answer, expected):
    assert parse_index(answer, 4) == expected


def test_locate_good_minus_one_and_garbage(fake):
    oracle, srv = fake(
        {
            ("locate", "Q1"): "Paragraph 1 adds wrongly.\n\\boxed{1}",
            ("locate", "Q2"): "\\boxed{-1}",
            ("locate", "Q3"): "I cannot tell.",
        }
    )
    ps = [problem(f"p{i}", f"Q{i}: add 2 and 2, times 1") for i in (1, 2, 3)]
    assert oracle.locate_many(ps, [TRACE] * 3) == [1, None, None]
    assert oracle.stats()["locate_unparsed"] == 1
    sent = srv.chat_requests()[0].prompt
    assert "<paragraph_1>\n2 + 2 = 5, so we have 5.\n</paragraph_1>" in sent and "{steps}" not in sent


def test_style_rewrite_keeps_earlier_steps_verbatim(fake):
    oracle, srv = fake(
        {
            ("locate", "Q1"): "\\boxed{1}",
            ("style_align", "Q1"): f"<rewrite>\n{FIXED_TAIL}\n</rewrite>",
            ("locate", "Q2"): "\\boxed{0}",
            ("style_align", "Q2"): "",
            ("locate", "Q3"): "\\boxed{1}",
            ("style_align", "Q3"): "<rewrite>2 + 2 = 5.\n\nThe answer is 5.</rewrite>",
        }
    )
    ps = [problem(f"p{i}", f"Q{i}: add 2 and 2, times 1") for i in (1, 2, 3)]
    first = oracle.locate_many(ps, [TRACE] * 3)
    out = oracle.rewrite_in_style_many(ps, [TRACE] * 3, first)
    rewrite, changed = out[0]
    assert rewrite == "We add the two numbers first.\n\n" + FIXED_TAIL + "\n"
    assert rewrite.startswith(split_steps(TRACE).head(1))  # the steps before the wrong one, verbatim
    assert changed == [1]  # only the wrong paragraph differs; the rest came back word for word
    assert out[1] == (TRACE, [])  # empty answer: the original, counted
    assert out[2] == (TRACE, [])  # a "repair" that breaks the correct answer: the original, counted
    assert oracle.stats()["style_align_empty"] == 1 and oracle.stats()["style_align_answer_lost"] == 1
    sent = next(
        r.prompt
        for r in srv.chat_requests()
        if "earliest step that contains" in r.prompt and "Q1" in r.prompt
    )
    assert "Step 1 is the earliest" in sent and "4 steps" in sent
    # One problem at a time, the ToyOracle way: the same answers, from the cache.
    n = len(srv.chat_requests())
    assert oracle.rewrite_in_style(ps[0], TRACE) == out[0]
    assert len(srv.chat_requests()) == n


def test_line_mode_trace_rewrites_lines(fake):
    trace = "Tom has 7 apples.\nHe gets 5 more: 7 + 5 = 13.\nSo the answer is 12."
    oracle, _ = fake(
        {
            ("locate", "Q1"): "\\boxed{1}",
            ("style_align", "Q1"): "<rewrite>He gets 5 more: 7 + 5 = 12.\nSo the answer is 12.</rewrite>",
        }
    )
    p = problem("p1", "Q1: Tom has 7 apples and gets 5", answer="12")
    rewrite, changed = oracle.rewrite_in_style(p, trace)
    assert rewrite == "Tom has 7 apples.\nHe gets 5 more: 7 + 5 = 12.\nSo the answer is 12." and changed == [
        1
    ]


def test_drift_dial_endpoints_and_middle(fake):
    refined = "Let \\( x = 2 + 2 = 4 \\).\n\nThen \\( 4 \\times 1 = 4 \\).\n\n\\boxed{4}"
    oracle, srv = fake(
        {
            ("locate", "Q1"): "\\boxed{1}",
            ("style_align", "Q1"): f"<rewrite>{FIXED_TAIL}</rewrite>",
            ("refine", "Q1"): f"<solution>\n{refined}\n</solution>",
            ("drift", "Q1"): "<rewrite>\\( a = 2 \\), \\( b = 2 \\).\n\n\\( a + b = 4 \\).</rewrite>",
        }
    )
    ps = [problem("p1", "Q1: add 2 and 2, times 1")]
    repaired = oracle.rewrite_in_style_many(ps, [TRACE], oracle.locate_many(ps, [TRACE]))[0][0]
    n = len(srv.chat_requests())
    assert oracle.rewrite_fraction_many(ps, [TRACE], 0.0) == [repaired]  # f = 0: the repair alone
    assert len(srv.chat_requests()) == n  # from the cache
    assert oracle.rewrite_fraction_many(ps, [TRACE], 1.0) == oracle.refine_many(ps, [TRACE]) == [refined]
    half = oracle.rewrite_fraction(ps[0], TRACE, 0.5)  # 4 steps: the first 2 in the Oracle's notation
    assert (
        half == "\\( a = 2 \\), \\( b = 2 \\).\n\n\\( a + b = 4 \\).\n\nThen 4 * 1 = 4.\n\nThe answer is 4.\n"
    )
    drift_prompt = next(r.prompt for r in srv.chat_requests() if "shown for context only" in r.prompt)
    # The repaired trace once, every step tagged; the first two asked for.
    assert "<paragraph_1>\n2 + 2 = 4, so we have 4.\n</paragraph_1>" in drift_prompt
    assert "<paragraph_3>\nThe answer is 4.\n</paragraph_3>" in drift_prompt
    assert drift_prompt.count("2 + 2 = 4, so we have 4.") == 1
    assert "split into 4 steps" in drift_prompt and "first 2 step(s), steps 0 to 1" in drift_prompt


def test_malformed_refine_and_synthesis_never_crash(fake):
    oracle, _ = fake(
        {
            ("refine", "Q1"): "",
            ("synthesize", "Q1"): "",
            ("refine", "Q2"): "Sure! <solution>\n2 + 2 = 4 \\boxed{4}",
            ("synthesize", "Q2"): "<solution>4 \\boxed{4}</solution>",
        }
    )
    ps = [problem("p1", "Q1: add"), problem("p2", "Q2: add")]
    assert oracle.refine_many(ps, [TRACE, TRACE]) == [
        TRACE,
        "2 + 2 = 4 \\boxed{4}",
    ]  # unclosed tag: what follows it
    assert oracle.synthesize_many(ps) == ["", "4 \\boxed{4}"]
    assert oracle.stats()["refine_empty"] == 1 and oracle.stats()["synthesize_empty"] == 1


# Answers that are not what their prompt asks for (no <solution>/<rewrite> tag, an empty tag): a
# model that chats ("Sure! Here is ...") or ignores the format must not become a training trace.
UNTAGGED = "Sure! The student added wrongly: 2 + 2 = 4, so the answer is \\boxed{4}."
GARBAGE = {
    ("refine", "Q1"): UNTAGGED,
    ("synthesize", "Q1"): UNTAGGED,
    ("style_align", "Q1"): UNTAGGED,
    ("drift", "Q1"): UNTAGGED,
    ("refine", "Q2"): "<solution>\n\n</solution>",
    ("synthesize", "Q2"): "<solution> </solution>",
    ("style_align", "Q2"): "<rewrite></rewrite>",
    ("drift", "Q2"): "<rewrite>\n</rewrite>",
}


def test_untagged_or_empty_answers_fall_back_and_are_counted(fake):
    oracle, _ = fake(GARBAGE)
    ps = [problem("p1", "Q1: add 2 and 2, times 1"), problem("p2", "Q2: add 2 and 2, times 1")]
    rft = [TRACE, TRACE.replace("first", "at first")]
    assert oracle.refine_many(ps, rft) == rft  # the SLM-RFT trace
    assert oracle.synthesize_many(ps, rft) == rft  # the SLM-RFT trace too: the problem stays in the stream
    assert oracle.synthesize_many(ps) == ["", ""]  # no fallback given: empty, never the garbage
    assert oracle.rewrite_in_style_many(ps, rft, [1, 1]) == [(t, []) for t in rft]  # the original
    # f = 0.5: locate finds nothing (unscripted answer), so the repaired trace is the trace itself
    assert oracle.rewrite_fraction_many(ps, rft, 0.5) == rft
    stats = oracle.stats()
    assert {k: stats[k] for k in stats if k.endswith(("_untagged", "_empty"))} == {
        "refine_untagged": 1,
        "refine_empty": 1,
        "synthesize_untagged": 2,  # asked twice, counted twice (the second from the cache)
        "synthesize_empty": 2,
        "style_align_untagged": 1,
        "style_align_empty": 1,
        "drift_untagged": 1,
        "drift_empty": 1,
    }


def test_both_worlds_report_the_same_fallback_counts(fake):
    oracle, _ = fake({})
    assert set(ToyOracle().stats()) == set(FALLBACK_COUNTS) <= set(oracle.stats())
    assert not any(ToyOracle().stats().values()) and not any(oracle.stats()[k] for k in FALLBACK_COUNTS)


def test_toy_batch_methods_match_single_calls(splits):
    oracle, rng = ToyOracle(), random.Random(0)
    ps = splits["train"][:20]
    traces = [styles.render_native(p.meta, rng) for p in ps]
    traces = [
        re.sub(r"= (\d+)", lambda m: f"= {int(m.group(1)) + 1}", t, count=1) if i % 3 == 0 else t
        for i, t in enumerate(traces)
    ]  # some with a wrong step
    first = oracle.locate_many(ps, traces)
    assert first == [oracle.first_wrong_step(p, t) for p, t in zip(ps, traces, strict=True)]
    assert any(k is not None for k in first) and any(k is None for k in first)
    assert oracle.rewrite_in_style_many(ps, traces, first) == [
        (t, []) if k is None else oracle.rewrite_in_style(p, t)
        for p, t, k in zip(ps, traces, first, strict=True)
    ]
    assert oracle.refine_many(ps, traces) == [oracle.refine(p, t) for p, t in zip(ps, traces, strict=True)]
    assert oracle.synthesize_many(ps) == [oracle.synthesize(p) for p in ps]
    assert oracle.rewrite_fraction_many(ps, traces, 0.5) == [
        oracle.rewrite_fraction(p, t, 0.5) for p, t in zip(ps, traces, strict=True)
    ]


def test_backend_factory(tmp_path):
    from paradox.params import Oracle

    params = load_params("smoke", ROOT / "params")
    paths = RunPaths("smoke", tmp_path)
    assert isinstance(backends.oracle(params, paths), ToyOracle)
    real = params.model_copy(
        update={
            "oracle": Oracle(backend="openai", base_url="http://127.0.0.1:1/v1", model="m", api_key_env="X")
        }
    )
    oracle = backends.oracle(real, paths)
    assert (
        isinstance(oracle, PromptOracle)
        and oracle.client.cache_dir == tmp_path / "smoke" / "cache" / "oracle"
    )
    prm = params.model_copy(
        update={
            "oracle": Oracle(
                backend="openai",
                base_url="http://x/v1",
                model="m",
                locator="prm",
                prm="Qwen/Qwen2.5-Math-PRM-7B",
                prm_trust_remote_code=True,
            )
        }
    )
    with_prm = backends.oracle(prm, paths)  # the PRM locator is built (tests/test_prm.py), not loaded
    assert isinstance(with_prm, PromptOracle) and with_prm.locator is not None
    assert with_prm.locator.name == "PRM Qwen/Qwen2.5-Math-PRM-7B (hf, threshold 0.5)"


# --- requests that do not fit, answers cut short ----------------------------------------------------

JUDGE = load_prompt(ROOT / "params" / "prompts" / "retention_judge.txt")


def run_every_kind(oracle: PromptOracle, client: OracleClient) -> list:
    ps = [problem("p1", "Q1: add 2 and 2, times 1")]
    return [
        oracle.refine_many(ps, [TRACE]),
        oracle.synthesize_many(ps),
        oracle.locate_many(ps, [TRACE]),
        oracle.rewrite_in_style_many(ps, [TRACE], [1]),
        oracle.rewrite_fraction_many(ps, [TRACE], 0.5),
        judge_retention_many(client, JUDGE, [(TRACE, TRACE)], desc=None),
    ]


FALLBACKS = [[TRACE], [""], [None], [(TRACE, [])], [TRACE], [None]]  # the documented fallback of each kind


def test_requests_that_do_not_fit_are_not_sent_and_fall_back(tmp_path):
    """A context too small for any prompt: nothing reaches the endpoint, every kind keeps its fallback
    (refine: the trace; synthesize: empty; locate: not located; style-align and drift: the trace as
    it was; judge: unscored), and each is counted."""
    tok = str(byte_tokenizer(tmp_path / "tok"))
    with FaultServer(responder=Script({})) as srv:
        client = OracleClient(
            base_url=srv.url,
            model="m",
            cache_dir=tmp_path / "cache",
            api_key_env="X",
            context_length=300,
            tokenizer=tok,
            backoff_base_s=0.01,
        )
        oracle = PromptOracle(client, PROMPTS)
        assert run_every_kind(oracle, client) == FALLBACKS
        assert not srv.chat_requests()
    stats = oracle.stats()
    assert {
        k: stats[k]
        for k in (
            "refine_skipped",
            "synthesize_skipped",
            "locate_skipped",
            "style_align_skipped",
            "drift_skipped",
        )
    } == {
        "refine_skipped": 1,
        "synthesize_skipped": 1,
        "locate_skipped": 2,
        "style_align_skipped": 1,
        "drift_skipped": 1,
    }
    assert stats["skipped_retention_judge"] == 1 and stats["skipped"] == 7 and stats["requests"] == 0


def test_answers_cut_at_their_limit_are_never_used(tmp_path):
    """finish_reason "length": the answer is a prefix (vLLM caps max_tokens to what the context
    leaves); a half-written rewrite must not become a training trace."""
    script = Script(
        {
            ("refine", "Q1"): "<solution>\nWe add: 2 + 2 = 4, so",
            ("synthesize", "Q1"): "<solution>\n2 + 2",
            ("locate", "Q1"): "Paragraph 0 is fine. Paragraph 1: is \\boxed{1} the",
            ("style_align", "Q1"): "<rewrite>2 + 2 = 4, so",
            ("drift", "Q1"): "<rewrite>\\( a = 2",
            ("retention_judge", ""): "Score: 5 for the first atoms; but",  # a score it had not settled
        }
    )
    with PayloadServer(lambda body: completion(script(body), finish_reason="length")) as srv:
        client = OracleClient(
            base_url=srv.url, model="m", cache_dir=tmp_path / "cache", api_key_env="X", backoff_base_s=0.01
        )
        oracle = PromptOracle(client, PROMPTS)
        assert run_every_kind(oracle, client) == FALLBACKS  # the judge's too: unscored
    stats = oracle.stats()
    assert (
        stats["refine_truncated"] == 1
        and stats["synthesize_truncated"] == 1
        and stats["locate_truncated"] == 2
    )
    assert stats["style_align_truncated"] == 1 and stats["drift_truncated"] == 1
    assert stats.get("refine_empty", 0) == 0 and stats.get("synthesize_empty", 0) == 0  # not taken for empty


def test_retention_judge_asks_for_its_own_small_budget(tmp_path):
    from paradox.params import AnswerTokens, OracleAnswers

    tok = str(byte_tokenizer(tmp_path / "tok"))
    with FaultServer(responder=lambda body: "Score: 4") as srv:
        client = OracleClient(
            base_url=srv.url,
            model="m",
            cache_dir=tmp_path / "cache",
            api_key_env="X",
            context_length=8192,
            tokenizer=tok,
            answers=OracleAnswers(retention_judge=AnswerTokens(max_tokens=24, min_tokens=8)),
        )
        assert judge_retention_many(client, JUDGE, [(TRACE, "2 + 2 = 4"), (TRACE, TRACE)], desc=None) == [
            4.0,
            4.0,
        ]
        assert {r.body["max_tokens"] for r in srv.chat_requests()} == {24}
