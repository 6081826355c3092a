"""The paper's profiles and `make plan`: they validate, layer through `extends`, and print a plan
without loading or downloading anything (no GPU, no hub here)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from paradox.params import ParamsError, load_params
from paradox.plan import render, stages
from paradox.training.runs import training_runs

ROOT = Path(__file__).resolve().parents[1]
PAPER = ["paper-qwen2.5-math-1.5b", "paper-qwen2.5-math-7b", "paper-llama-3.2-3b", "paper-deepseekmath-7b"]


@pytest.mark.parametrize("profile", PAPER)
def test_paper_profiles_hold_the_papers_setting(profile):
    p = load_params(profile, ROOT / "params")
    assert p.world == "real" and p.toy is None
    # The paper's training and evaluation protocol, whatever the model.
    assert (p.train.learning_rate, p.train.batch_size, p.train.epochs) == (5e-5, 256, 1)
    assert set(p.train.losses) == {"nll", "dft"}
    assert (p.sampling.k, p.sampling.temperature, p.eval.k, p.eval.temperature) == (8, 1.0, 16, 1.0)
    assert p.eval.max_new_tokens == 4096
    assert list(p.eval.splits) == ["math500", "minerva", "aime24", "amc23", "olympiadbench"]
    assert p.datasets["train"].hub_id == "AI-MO/NuminaMath-CoT" and p.datasets["train"].limit == 100_000
    assert (set(p.grid.learning_rates), set(p.grid.batch_sizes)) == ({2e-5, 5e-5}, {128, 256})
    per_device, accum = p.train.split_batch(p.train.batch_size)
    assert per_device * accum * p.train.num_processes == 256


def test_extends_layers_the_parent_and_keeps_its_settings():
    main = load_params("paper-qwen2.5-math-1.5b", ROOT / "params")
    big = load_params("paper-qwen2.5-math-7b", ROOT / "params")
    assert (
        big.slm.name_or_path == "Qwen/Qwen2.5-Math-7B" and big.slm.prompt_template == main.slm.prompt_template
    )
    assert big.train.per_device_batch_size == 2 and big.oracle == main.oracle
    assert big.hash() != main.hash()


def test_plan_lists_every_stage_and_run(capsys):
    p = load_params("paper-qwen2.5-math-1.5b", ROOT / "params")
    names = [s.notebook for s in stages(p)]
    assert names == [
        "01_data",
        "02_oracle_refine",
        "03_style_align",
        "04_train",
        "05_eval",
        "06_figures",
        "07_mechanism",
    ]  # no toy world in a real profile
    text = render(p)
    assert f"runs: {len(training_runs(p))} " in text
    assert "Qwen/Qwen2.5-Math-72B-Instruct" in text and "Qwen/Qwen2.5-Math-RM-72B" in text
    assert "100,000" in text and "HuggingFaceH4/MATH-500" in text and "Nothing was run" in text
    toy = [s.notebook for s in stages(load_params("toy", ROOT / "params"))]
    assert toy[0] == "00_toy_world"


def test_make_plan_runs_and_fails_clearly_on_a_bad_profile():
    ok = subprocess.run(
        ["make", "-s", "plan", "PROFILE=paper-llama-3.2-3b"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "meta-llama/Llama-3.2-3B" in ok.stdout
    bad = subprocess.run(
        ["make", "-s", "plan", "PROFILE=paper-nope"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode != 0 and "paper-nope.yaml: params file not found" in bad.stderr


@pytest.fixture
def pdir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "params", tmp_path / "params")
    return tmp_path / "params"


def test_extends_cycle_and_bad_parent_are_errors(pdir):
    (pdir / "a.yaml").write_text("extends: b\n")
    (pdir / "b.yaml").write_text("extends: a\n")
    with pytest.raises(ParamsError, match="cycle"):
        load_params("a", pdir)
    (pdir / "c.yaml").write_text("extends: base\n")
    with pytest.raises(ParamsError, match=r"c\.yaml: key 'extends' must name another profile"):
        load_params("c", pdir)


def test_a_key_in_a_child_profile_is_blamed_on_the_child(pdir):
    (pdir / "child.yaml").write_text(
        "extends: paper-qwen2.5-math-1.5b\ndescription: x\ntrain:\n  batch_sise: 3\n"
    )
    with pytest.raises(ParamsError, match=r"child\.yaml: unknown key 'train.batch_sise'.*train.batch_size"):
        load_params("child", pdir)


@pytest.mark.parametrize(
    "extra,message",
    [
        (
            "train:\n  per_device_batch_size: 3\n",
            "batch size 256 is not a multiple of per_device_batch_size 3",
        ),
        ("grid:\n  batch_sizes: [100]\n", "batch size 100 is not a multiple"),
        ("oracle:\n  api_key_env: sk-abc123\n", "never put the key itself in params"),
        ("oracle:\n  base_url: null\n", "needs oracle.model and oracle.base_url (or oracle.serve)"),
        ("oracle:\n  locator: prm\n  prm: null\n", "needs oracle.prm"),
        ("oracle:\n  prm_trust_remote_code: false\n", "set oracle.prm_trust_remote_code: true"),
        ("train:\n  accelerate_config: params/accelerate/nope.yaml\n", "accelerate_config': file not found"),
        ("reward:\n  name_or_path: null\n", "reward backend 'hf' needs name_or_path"),
        ("eval:\n  splits: [math500, gsm9k]\n", "no entry for split(s) ['gsm9k']"),
    ],
)
def test_real_profile_mistakes_are_named(pdir, extra, message):
    (pdir / "bad.yaml").write_text(f"extends: paper-qwen2.5-math-1.5b\ndescription: x\n{extra}")
    with pytest.raises(ParamsError) as err:
        load_params("bad", pdir)
    assert message in str(err.value)


def test_cli_world_flag():
    out = subprocess.run(
        [sys.executable, "-m", "paradox.params", "--world", "paper-qwen2.5-math-7b"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    assert out.stdout.split() == [
        "real",
        "params/base.yaml",
        "params/paper-qwen2.5-math-1.5b.yaml",
        "params/paper-qwen2.5-math-7b.yaml",
    ]


def test_nothing_points_outside_the_project():
    """Users clone the project alone: no tracked file may refer to files beside the clone."""
    root = Path(__file__).resolve().parents[1]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = "../" + "shared"  # spelt in two parts so that this file does not match itself
    offenders = [
        f
        for f in tracked
        if f.endswith((".py", ".yaml", ".md", ".txt", ".ipynb")) or f == "Makefile"
        if outside in (root / f).read_text(errors="replace")
    ]
    assert offenders == []


def test_paper_mini_is_the_protocol_at_a_fiftieth_on_one_gpu():
    """The issue's one-GPU setting: Qwen2.5-Math-1.5B, ~2K NuminaMath-CoT problems, a 7B instruct
    Oracle served on the same GPU between SLM stages, a small reward model, Avg@4 on MATH-500, AMC23
    and AIME24; everything else as the main setting."""
    main = load_params("paper-qwen2.5-math-1.5b", ROOT / "params")
    p = load_params("paper-mini", ROOT / "params")
    assert p.slm == main.slm and p.rft == main.rft
    assert p.datasets["train"].hub_id == "AI-MO/NuminaMath-CoT" and p.datasets["train"].limit == 2000
    assert (p.sampling.k, p.sampling.temperature, p.sampling.max_new_tokens) == (8, 1.0, 4096)
    o = p.oracle
    assert (
        o.model == o.tokenizer == "Qwen/Qwen2.5-Math-7B-Instruct"
        and o.base_urls == ()
        and o.serve is not None
    )
    assert o.context_length == main.oracle.context_length == 4096 and o.prompts == main.oracle.prompts
    assert (
        o.serve.gpu_memory_utilization < p.endpoint.serve.gpu_memory_utilization
    )  # room beside it in 03 and 07
    assert p.reward.name_or_path == "Skywork/Skywork-Reward-V2-Llama-3.2-3B" and p.reward.head == "seq_cls"
    assert list(p.eval.splits) == ["math500", "amc23", "aime24"]
    assert (p.eval.k, p.eval.temperature, p.eval.max_new_tokens) == (4, 1.0, 4096)
    assert (p.train.learning_rate, p.train.epochs, set(p.train.losses)) == (5e-5, 1, {"nll", "dft"})
    assert (p.hardware.gpus_per_node, p.train.num_processes, p.train.launcher) == (1, 1, "accelerate")
    assert p.endpoint.serve.replicas * p.endpoint.serve.data_parallel_size == 1
    text = render(p)
    assert text.count("Oracle GPUs: 1 of this node's 1, served by this stage") == 2  # 02 and 03
    assert "Nothing was run. `make paper PROFILE=paper-mini`" in text
