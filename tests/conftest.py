from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from paradox.problems import Problem
from paradox.toy import problems as toy_problems
from paradox.toy import styles

# tests/vllm_engine/ needs the vLLM environment and runs through `make test-vllm`; `pytest tests/vllm_engine`
# still collects it (an explicit path is not ignored).
collect_ignore = ["vllm_engine", "browser"]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smoke_run() -> subprocess.CompletedProcess:
    """`make paper PROFILE=smoke` from scratch into runs/smoke, once per session: the pipeline
    tests read it, the fault-injection tests damage copies of it."""
    shutil.rmtree(ROOT / "runs" / "smoke", ignore_errors=True)
    shutil.rmtree(ROOT / "figures" / "smoke", ignore_errors=True)  # left by older code: must not come back
    proc = subprocess.run(["make", "paper", "PROFILE=smoke"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="session")
def toy_problem() -> Problem:
    """A fixed 3-step problem: 7 + 5 = 12, 12 - 4 = 8, 8 * 3 = 24."""
    meta = {
        "story": 0,
        "name": "Tom",
        "pron": "he",
        "item": "apples",
        "start": 7,
        "ops": [["+", 5], ["-", 4], ["*", 3]],
        "values": [7, 12, 8, 24],
    }
    return Problem(
        id="t-0",
        question="q",
        answer="24",
        reference_solution=styles.render_dataset(meta),
        source="test",
        meta=meta,
    )


@pytest.fixture(scope="session")
def native_trace(toy_problem: Problem) -> str:
    return styles.render_native(toy_problem.meta, random.Random(3))


@pytest.fixture(scope="session")
def splits():
    return toy_problems.build_splits(1, {"train": 50, "test": 20, "hard": 20}, (2, 3), 9, 99, (4, 5), 15, 199)


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory, splits):
    """A randomly initialised toy SLM saved with save_pretrained (no training: tests need speed)."""
    from paradox.params import ToyProblems, ToySLM, ToyWorld
    from paradox.toy import slm

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
            max_position=256,
            pretrain_problems=1,
            pretrain_epochs=1,
            pretrain_lr=1e-3,
            pretrain_batch_size=1,
            foreign_style_fraction=0.1,
        ),
    )
    corpus = slm.pretraining_corpus(splits["train"], "Question: {question}\nAnswer:\n", 0.1, 0)
    tok = slm.train_tokenizer([r["prompt"] + r["completion"] for r in corpus], 300)
    model = slm.build_model(toy, tok, 0)
    path = tmp_path_factory.mktemp("tiny_lm")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
