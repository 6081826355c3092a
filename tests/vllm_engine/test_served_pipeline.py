"""Notebooks 01-07 on `params/real-served.yaml` through `make paper`, with the SLM (sampling and every
evaluated model) and the Oracle behind managed `vllm serve` processes on vLLM's CPU build: every
stage starts the servers it needs and stops them, and none is left running, also when a stage fails.

The assets are built here: a toy SLM small enough to train in seconds and with heads vLLM's CPU
attention supports (head size 32), a random tiny Oracle model (it writes nonsense: the Oracle's
fallbacks are exercised, not its wisdom), a tiny reward model, toy problems in the hub's layouts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

_vllm = importlib.util.find_spec("vllm")
if _vllm is None or _vllm.origin is None:
    pytest.skip("vLLM is not installed in this environment", allow_module_level=True)

from paradox.io import read_jsonl  # noqa: E402
from paradox.params import load_params  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROFILE = "real-served"
RUN = ROOT / "runs" / PROFILE
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
KEYS = {
    "PARADOX_TEST_SLM_KEY": "sk-slm-" + secrets.token_hex(8),
    "PARADOX_TEST_ORACLE_KEY": "sk-or-" + secrets.token_hex(8),
}


# --- assets ------------------------------------------------------------------------------------


def build_slm(splits: dict) -> None:
    """The smoke world's SLM, two heads of 32 (vLLM's CPU attention needs head size >= 32): it
    solves about half of the smoke-sized training problems with 4 samples after ~10 s of training."""
    from paradox.toy import slm as toy_slm
    from paradox.training.trainer import TrainSettings, sft_train, steps_for

    smoke = load_params("smoke")
    cfg = smoke.toy.slm.model_copy(
        update={
            "hidden_size": 64,
            "n_heads": 2,
            "intermediate_size": 128,
            "pretrain_problems": 300,
            "pretrain_epochs": 4,
        }
    )
    toy = smoke.toy.model_copy(update={"slm": cfg})
    corpus = toy_slm.pretraining_corpus(
        splits["pretrain"], smoke.slm.prompt_template, cfg.foreign_style_fraction, 0
    )
    tok = toy_slm.train_tokenizer([r["prompt"] + r["completion"] for r in corpus], cfg.vocab_size)
    model = toy_slm.build_model(toy, tok, 0)
    settings = TrainSettings(
        loss_type="nll",
        learning_rate=cfg.pretrain_lr,
        batch_size=cfg.pretrain_batch_size,
        grad_accum=1,
        max_length=cfg.max_position,
        seed=0,
        warmup_ratio=0.05,
        max_steps=steps_for(len(corpus), cfg.pretrain_batch_size, cfg.pretrain_epochs),
    )
    sft_train(model, tok, corpus, ASSETS / "slm", settings)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ASSETS / "slm")
    tok.chat_template = CHAT  # the paper profiles prompt their SLM through its chat template
    tok.save_pretrained(ASSETS / "slm")


def build_random_lm(name: str, positions: int, num_labels: int | None = None) -> None:
    """A random tiny Llama on the SLM's tokenizer: the Oracle (long context) or the reward model."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(ASSETS / "slm")
    torch.manual_seed(1)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=positions,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        **({"num_labels": num_labels} if num_labels else {}),
    )
    model = LlamaForSequenceClassification(cfg) if num_labels else LlamaForCausalLM(cfg)
    model.save_pretrained(ASSETS / name)
    tok.save_pretrained(ASSETS / name)


def write_assets() -> None:
    from paradox.toy import problems as toy_problems

    shutil.rmtree(RUN, ignore_errors=True)
    ASSETS.mkdir(parents=True)
    P = load_params("smoke").toy.problems
    splits = toy_problems.build_splits(
        0,
        {"train": 48, "test": 8, "hard": 1, "pretrain": 300},
        P.ops,
        P.max_operand,
        P.max_value,
        P.hard_ops,
        P.hard_max_operand,
        P.hard_max_value,
    )
    build_slm(splits)
    build_random_lm("oracle", positions=4096)
    build_random_lm("rm", positions=1024, num_labels=1)

    def boxed(p) -> str:  # a toy reference solution with its answer boxed, as NuminaMath/MATH write it
        return p.reference_solution.rsplit("####", 1)[0] + f"The answer is \\boxed{{{p.answer}}}."

    rows = {
        "train": [{"problem": p.question, "solution": boxed(p)} for p in splits["train"]],
        "math500": [
            {
                "problem": p.question,
                "answer": p.answer,
                "solution": boxed(p),
                "unique_id": f"test/toy/{i}.json",
            }
            for i, p in enumerate(splits["test"])
        ],
    }
    for name, rs in rows.items():
        (ASSETS / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))


def servers_of(marker: str) -> list[str]:
    """Command lines of running processes that mention `marker` (a path only our servers hold)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in text and state != "Z" and "pytest" not in text:
            found.append(text)
    return found


def wait_no_servers(marker: str, seconds: float = 90) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := servers_of(marker)) and time.monotonic() < deadline:
        time.sleep(1)
    return left


def make(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **KEYS}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # servers run their engine as vLLM does by default
    return subprocess.run(
        ["make", *args, f"PROFILE={PROFILE}", "VENV=.venv-vllm"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )


# --- the run ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_run():
    write_assets()
    proc = make("paper")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return proc


def test_every_stage_ran_through_managed_servers(served_run):
    for stage in STAGES:
        assert (RUN / "notebooks" / f"{stage}.ipynb").is_file()
    assert not list(RUN.rglob("*.tmp"))
    starts = {p.name: p.read_text().count("$ ") for p in (RUN / "logs").glob("*.log")}
    # The SLM: sampling in 01, then 05 evaluates the base model and each fine-tuned model whose
    # samples are not on disk yet (oracle_refined trained on the same traces as slm_rft here: the
    # nonsense Oracle's refinements all fell back to the originals, so its weights and samples are
    # slm_rft's and no server starts for it). The Oracle: 02, 03 and 07's judge.
    assert sum(n for name, n in starts.items() if name.startswith("slm-")) == 3
    assert starts["oracle.log"] == 3
    assert "--served-model-name slm" in "".join(p.read_text() for p in (RUN / "logs").glob("slm-*.log"))
    assert list((RUN / "cache" / "completions").rglob("*.json")) and list(
        (RUN / "cache" / "oracle").rglob("*.json")
    )


def test_no_server_is_left_running(served_run):
    assert wait_no_servers(str(ASSETS)) == []
    assert not (ROOT / "runs" / ".cache" / "gpu.lock").exists() or _lock_free(
        ROOT / "runs" / ".cache" / "gpu.lock"
    )


def _lock_free(path: Path) -> bool:
    import fcntl

    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
    return True


def test_the_served_slm_sampled_and_was_evaluated(served_run):
    import pandas as pd

    summary = json.loads((RUN / "data" / "summary.json").read_text())
    assert summary["n_solvable"] > 0 and summary["k"] == 4
    assert read_jsonl(RUN / "streams" / "slm_rft.jsonl")
    acc = pd.read_csv(RUN / "eval" / "accuracy.csv")
    assert set(acc["model"]) == {"base-s0", "slm_rft-dft-s0", "oracle_refined-dft-s0"}
    assert acc["avg_at_k"].between(0, 100).all()


def test_the_keys_are_in_no_file(served_run):
    keys = [k.encode() for k in KEYS.values()]
    leaks = [p for p in RUN.rglob("*") if p.is_file() and any(k in p.read_bytes() for k in keys)]
    assert not leaks


def test_a_failing_stage_leaves_no_server(served_run, tmp_path):
    """A stage that fails while its managed server runs: papermill stops the kernel, and the server
    goes with it."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("profile = 'real-served'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "from paradox import backends\nfrom paradox.params import load_params\n"
            "from paradox.paths import RunPaths\n"
            "params = load_params(profile); paths = RunPaths(profile)\n"
            "gen = backends.generator(params, backends.slm_path(params, paths), 8, paths)\n"
            "assert gen.pool.endpoints"
        ),
        nbformat.v4.new_code_cell("raise RuntimeError('the stage fails while its server runs')"),
    ]
    src, out = tmp_path / "fail.ipynb", tmp_path / "fail-out.ipynb"
    nbformat.write(nb, src)
    starts = lambda: sum(p.read_text().count("$ ") for p in (RUN / "logs").glob("slm-*.log"))  # noqa: E731
    before = starts()
    env = {**os.environ, **KEYS}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(src), str(out), "-k", "python3", "--cwd", str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode != 0 and "the stage fails while its server runs" in proc.stderr
    assert starts() == before + 1  # the server was started, then the stage failed
    assert wait_no_servers(str(ASSETS)) == []
