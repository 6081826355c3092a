"""Notebooks 01-07 on a `world: real` profile (`params/real-local.yaml`), through `make paper`, with
every real adapter behind them and nothing from a hub or a GPU: the smoke profile's trained toy
SLM as a local Hugging Face model, toy problems as JSONL datasets in the hub's field layouts
(NuminaMath-style boxed solutions, MATH-500's problem/answer/unique_id, GSM8K's '#### answer'),
a fake OpenAI-compatible Oracle (one injected 429), a tiny local seq-cls reward model, and a tiny
remote-code reward model shaped like Qwen2.5-Math-RM-72B as the reward cross-check."""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fault_proxy import FaultServer
from oracle_helpers import KEY_ENV, cache_files
from qwen_rm import build_qwen_rm

from paradox.io import read_jsonl
from paradox.params import load_params
from paradox.report import TOY_CAVEAT
from paradox.streams import STREAMS

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "real-local"
RUN, SMOKE = ROOT / "runs" / PROFILE, ROOT / "runs" / "smoke"
ASSETS = RUN / "assets"
STAGES = (
    "01_data",
    "02_oracle_refine",
    "03_style_align",
    "04_train",
    "05_eval",
    "06_figures",
    "07_mechanism",
)
CHAT = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] | trim }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

pytestmark = pytest.mark.pipeline


def _port(params) -> int:
    m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/v1", params.oracle.base_url or "")
    assert m, f"{PROFILE}: oracle.base_url must be a local port, got {params.oracle.base_url}"
    return int(m.group(1))


# --- the assets: SLM, datasets, reward model -------------------------------------------------------


def smoke_slm() -> Path:
    """The smoke profile's trained toy SLM (stage 00 of `make paper PROFILE=smoke`; a no-op if made)."""
    proc = subprocess.run(
        ["make", "runs/smoke/notebooks/00_toy_world.ipynb", "PROFILE=smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return ROOT / json.loads((SMOKE / "world" / "slm.json").read_text())["path"]


def boxed(reference_solution: str, answer: str) -> str:
    """A toy reference solution ('... #### 12') with its answer boxed, as NuminaMath/MATH write it."""
    return reference_solution.rsplit("####", 1)[0] + f"The answer is \\boxed{{{answer}}}."


def write_datasets() -> None:
    """Toy problems drawn like the smoke world's (its first 24 training problems are the smoke
    SLM's own), written in the real datasets' field layouts."""
    from paradox.toy import problems as toy_problems

    P = load_params("smoke").toy.problems
    splits = toy_problems.build_splits(
        0,
        {"train": 48, "test": 8, "hard": 8},
        P.ops,
        P.max_operand,
        P.max_value,
        P.hard_ops,
        P.hard_max_operand,
        P.hard_max_value,
    )
    rows = {
        "train": [
            {"problem": p.question, "solution": boxed(p.reference_solution, p.answer)}
            for p in splits["train"]
        ],
        # MATH-500's ids look like 'test/precalculus/807.json': slashes in a problem id
        "math500": [
            {
                "problem": p.question,
                "answer": p.answer,
                "solution": boxed(p.reference_solution, p.answer),
                "unique_id": f"test/toy/{i}.json",
            }
            for i, p in enumerate(splits["test"])
        ],
        "gsm8k": [{"question": p.question, "answer": p.reference_solution} for p in splits["hard"]],
    }
    for name, rs in rows.items():
        (ASSETS / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))


def give_chat_template(model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.chat_template = CHAT
    tok.save_pretrained(model_dir)


def write_reward_model(slm: Path) -> None:
    """A randomly initialised LlamaForSequenceClassification (one output) on the SLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(slm)  # with the chat template a reward model scores in
    torch.manual_seed(0)
    cfg = LlamaConfig(
        num_labels=1,
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
    )
    LlamaForSequenceClassification(cfg).save_pretrained(ASSETS / "rm")
    tok.save_pretrained(ASSETS / "rm")


def write_assets() -> None:
    from transformers import AutoTokenizer

    slm = smoke_slm()
    shutil.rmtree(RUN, ignore_errors=True)
    ASSETS.mkdir(parents=True)
    shutil.copytree(slm, ASSETS / "slm")
    give_chat_template(ASSETS / "slm")  # the paper profiles prompt their SLM through its chat template
    write_datasets()
    write_reward_model(ASSETS / "slm")
    build_qwen_rm(
        ASSETS / "rm-qwen", AutoTokenizer.from_pretrained(ASSETS / "slm"), seed=3
    )  # the cross-check


# --- the fake Oracle -------------------------------------------------------------------------------


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def respond(body: dict) -> str:
    """A plausible answer to each of the Oracle's prompts (params/prompts/)."""
    prompt = body["messages"][-1]["content"]
    if "Refine this solution" in prompt:  # refine: the trace, as its own repair
        return "<solution>\n" + _between(prompt, "Student's solution:\n<<<\n", "\n>>>") + "\n</solution>"
    if prompt.startswith("Solve the following math problem"):  # synthesize
        return (
            "<solution>\nLet \\( N \\) be the count.\nAdding up every change gives \\( N = 4 \\).\n"
            "\\( \\boxed{4} \\)\n</solution>"
        )
    if "earliest error occurs" in prompt:  # locate: no wrong step
        return "Every paragraph is correct. \\boxed{-1}"
    if "Rewrite step" in prompt or "Rewrite its first" in prompt:  # style-align, drift: the steps, in LaTeX
        steps = re.findall(r"<paragraph_\d+>\n(.*?)\n</paragraph_\d+>", prompt, re.DOTALL)
        last = re.search(r"steps 0 to (\d+)", prompt)  # drift shows every step and asks for the first ones
        steps = steps[: int(last.group(1)) + 1] if last else steps
        return "<rewrite>\n" + "\n".join(f"\\( {s} \\)" for s in steps) + "\n</rewrite>"
    if "Score the rewrite" in prompt:  # retention judge
        return "Score: 4"
    return "I cannot tell what is asked."


# --- the run -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> str:
    return "sk-paradox-test-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def oracle(key):
    params = load_params(PROFILE)
    assert params.oracle.api_key_env == KEY_ENV
    srv = FaultServer(responder=respond, model=params.oracle.model, port=_port(params))
    srv.schedule(["429"])  # the first request is rate-limited: the client retries it
    with srv:
        yield srv


@pytest.fixture(scope="module")
def real_run(oracle, key):
    write_assets()
    env = {**os.environ, KEY_ENV: key}
    proc = subprocess.run(
        ["make", "paper", f"PROFILE={PROFILE}"], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return env


def test_every_stage_ran_and_there_is_no_stage_00(real_run):
    for stage in STAGES:
        assert (RUN / "notebooks" / f"{stage}.ipynb").is_file()
    assert not (RUN / "notebooks" / "00_toy_world.ipynb").exists() and not (RUN / "world").exists()
    assert not list(RUN.rglob("*.tmp"))


def test_streams_share_problems(real_run):
    ids = {s: [r["id"] for r in read_jsonl(RUN / "streams" / f"{s}.jsonl")] for s in STREAMS}
    assert len({tuple(v) for v in ids.values()}) == 1 and ids["slm_rft"]
    assert all(i.startswith("train-") for i in ids["slm_rft"])
    assert all(
        r["prompt"].startswith("<|user|>\nQuestion: ") and r["prompt"].endswith("<|assistant|>\n")
        for r in read_jsonl(RUN / "streams" / "slm_rft.jsonl")
    )  # the SLM's chat template
    gt = read_jsonl(RUN / "streams" / "ground_truth.jsonl")
    assert all("\\boxed{" in r["completion"] for r in gt)  # the dataset's own solutions


def test_rewards_come_from_the_hf_reward_model(real_run):
    from paradox.problems import Problem
    from paradox.reward_models import HFReward

    params = load_params(PROFILE)
    for s in (*STREAMS, "compat_selected", "drift_050"):
        scores = [r["reward"] for r in read_jsonl(RUN / "rewards" / f"{s}.jsonl")]
        assert scores and all(isinstance(x, float) and math.isfinite(x) for x in scores)
    # the stored score of a trace is the tiny model's score of it
    problems = {p["id"]: Problem.from_dict(p) for p in read_jsonl(RUN / "data" / "kept_problems.jsonl")}
    row = read_jsonl(RUN / "streams" / "ground_truth.jsonl")[0]
    stored = read_jsonl(RUN / "rewards" / "ground_truth.jsonl")[0]
    rm = HFReward(params.reward.model_copy(update={"name_or_path": str(ASSETS / "rm")}), show_progress=False)
    assert rm.score(problems[row["id"]], row["completion"]) == pytest.approx(stored["reward"], abs=1e-5)


def test_every_stream_is_cross_checked_by_the_second_reward_model(real_run):
    from paradox.problems import Problem
    from paradox.reward_models import HFReward

    params = load_params(PROFILE)
    xc = RUN / "rewards" / "cross_check" / "rm-qwen"
    for s in (*STREAMS, "compat_selected", "drift_050"):
        rows = read_jsonl(xc / f"{s}.jsonl")
        assert [r["id"] for r in rows] == [r["id"] for r in read_jsonl(RUN / "streams" / f"{s}.jsonl")]
        assert all(isinstance(r["reward"], float) and math.isfinite(r["reward"]) for r in rows)
    # the stored score is the Qwen-shaped model's score of that trace (not the main model's)
    problems = {p["id"]: Problem.from_dict(p) for p in read_jsonl(RUN / "data" / "kept_problems.jsonl")}
    row = read_jsonl(RUN / "streams" / "style_aligned.jsonl")[0]
    stored = read_jsonl(xc / "style_aligned.jsonl")[0]["reward"]
    spec = params.reward.cross_check[0].model_copy(update={"name_or_path": str(ASSETS / "rm-qwen")})
    assert HFReward(spec, show_progress=False).score(problems[row["id"]], row["completion"]) == pytest.approx(
        stored, abs=1e-5
    )
    assert stored != pytest.approx(read_jsonl(RUN / "rewards" / "style_aligned.jsonl")[0]["reward"], abs=1e-3)
    # the selected stream takes each trace's score from the stream it was chosen from
    chosen = {r["id"]: r["chosen"] for r in read_jsonl(RUN / "data" / "compat_selection.jsonl")}
    by_stream = {
        s: {r["id"]: r["reward"] for r in read_jsonl(xc / f"{s}.jsonl")} for s in set(chosen.values())
    }
    assert all(
        r["reward"] == by_stream[chosen[r["id"]]][r["id"]] for r in read_jsonl(xc / "compat_selected.jsonl")
    )
    # the tables: 02's for its four streams, 06's for the training streams with ranks and Spearman per model
    summary = pd.read_csv(RUN / "rewards" / "cross_check" / "summary.csv")
    assert list(summary["stream"]) == ["slm_rft", "ground_truth", "oracle_refined", "oracle_synthesized"]
    assert {"reward:main (rm)", "reward:rm-qwen", "rank:main (rm)", "rank:rm-qwen"} <= set(summary.columns)
    table = pd.read_csv(RUN / "figures" / "reward_cross_check.csv")
    assert list(table["stream"]) == [*params.train.streams, "compat_selected"]
    assert table["reward:rm-qwen"].notna().all() and sorted(table["rank:rm-qwen"]) == sorted(
        table["reward:rm-qwen"].rank(ascending=False, method="min").astype(int)
    )
    rho = pd.read_csv(RUN / "figures" / "reward_cross_check_spearman.csv")
    assert (
        list(rho["model"]) == ["main (rm)", "rm-qwen"] and rho["spearman_sft"].isna().all()
    )  # dft only here


def test_oracle_was_asked_retried_and_cached(real_run, oracle, key):
    chats = oracle.chat_requests()
    assert [r.action for r in chats].count("429") == 1 and chats[0].action == "429"
    assert any(r.prompt == chats[0].prompt and r.action == "ok" for r in chats[1:])  # retried
    assert all(r.headers.get("authorization") == f"Bearer {key}" for r in chats)
    kinds = {
        k
        for r in chats
        for k in (
            "Refine this solution",
            "Solve the following",
            "earliest error occurs",
            "Rewrite its first",
            "Score the rewrite",
        )
        if k in (r.prompt or "")
    }
    assert len(kinds) == 5  # refine, synthesize, locate, drift, retention judge
    assert cache_files(RUN / "cache" / "oracle")


def test_oracle_requests_were_counted_and_fitted(real_run, oracle):
    """real-local sets oracle.context_length: notebook 01 checked the budgets with the (stand-in)
    Oracle tokenizer and applied the rft bounds, and every request went out with a fitted limit."""
    summary = json.loads((RUN / "data" / "summary.json").read_text())
    assert summary["dropped_long_question"] == 0 and summary["dropped_long_trace"] == 0  # generous bounds
    assert "Oracle requests in a 8,192-token context" in (RUN / "notebooks" / "01_data.ipynb").read_text()
    limits = {r.body["max_tokens"] for r in oracle.chat_requests() if r.action == "ok"}
    assert limits and max(limits) < 8192 and len(limits) > 2  # per kind and per trace, not one global limit


def test_rerun_of_stage_02_sends_no_request(real_run, oracle, tmp_path):
    before = len(oracle.chat_requests())
    out = tmp_path / "02.ipynb"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            "notebooks/02_oracle_refine.ipynb",
            str(out),
            "-k",
            "python3",
            "--cwd",
            str(ROOT),
            "-p",
            "profile",
            PROFILE,
            "-p",
            "runs_dir",
            "runs",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=real_run,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert len(oracle.chat_requests()) == before
    stats = re.search(r"'requests': (\d+), 'cache_hits': (\d+)", out.read_text())
    assert stats and int(stats.group(1)) == 0 and int(stats.group(2)) > 0  # every answer from the cache


def test_eval_has_both_splits(real_run):
    acc = pd.read_csv(RUN / "eval" / "accuracy.csv")
    assert set(acc["split"]) == {"math500", "gsm8k"}
    assert acc["avg_at_k"].between(0, 100).all() and set(acc["purpose"]) == {"base", "main"}
    lc = pd.read_csv(RUN / "eval" / "learning_curves.csv")
    assert set(lc["split"]) == {"math500"} and set(lc["stream"]) == {"slm_rft"}


def test_report_has_no_toy_caveat(real_run):
    report = (RUN / "REPORT.md").read_text()
    assert "Does the paradox appear?" in report
    assert TOY_CAVEAT not in report and "toy" not in report.lower()  # no toy caveat, no toy caveats
    assert "Reward is the score of `runs/real-local/assets/rm`" in report
    assert "judgement of `fake-oracle`" in report and "0 judge answer(s) without a score" in report
    meta = json.loads((RUN / "figures" / "table1.csv.json").read_text())
    assert "Toy world" not in meta["caption"]


def test_the_api_key_is_in_no_file(real_run, key):
    leaks = [p for p in RUN.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    leaks += [p for p in (RUN / "figures").rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert not leaks


def test_second_run_does_nothing(real_run):
    proc = subprocess.run(["make", "-q", "paper", f"PROFILE={PROFILE}"], cwd=ROOT)
    assert proc.returncode == 0, "make paper would redo work with nothing changed"
