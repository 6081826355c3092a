"""`make plan`'s GPU-hour estimates: each stage's work recomputed by hand for paper-mini, the paper
profile's sampling and evaluation spread over its 8 GPUs, the assumptions overridable under
`hardware.gpu_hours`, and what the params cannot say reported as not estimated, never guessed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from paradox import gpu_hours, plan
from paradox.gpu_memory import GIB, SHAPES, n_params
from paradox.params import ParamsError, load_params
from paradox.training.runs import training_runs

ROOT = Path(__file__).resolve().parents[1]
SLM = "Qwen/Qwen2.5-Math-1.5B"


@pytest.fixture
def pdir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "params", tmp_path / "params")
    return tmp_path / "params"


def by_what(works: list[gpu_hours.Work], stage: str, start: str) -> gpu_hours.Work:
    found = [w for w in works if w.stage == stage and w.what.startswith(start)]
    assert len(found) == 1, [w.what for w in works]
    return found[0]


def test_paper_mini_estimates_by_hand():
    """Every number from the profile and the stated assumptions (H100: 989 TFLOP/s; 1.5B: 20,000 and
    7B: 6,000 generated tokens/s per GPU; 34% kept; 150-token questions, 600-token traces, 800-token
    benchmark answers; weights read at 2 GiB/s, 90 s per vLLM start)."""
    p = load_params("paper-mini", ROOT / "params")
    works = gpu_hours.estimate(p)
    peak, slm = 989e12, n_params(SHAPES[SLM])
    load = slm * 2 / GIB / 2.0  # bf16 weights at 2 GiB/s
    kept = round(2000 * 0.34)
    assert kept == 680

    # 01: 2,000 problems x 8 samples x 600 tokens at 20,000 tokens/s, the prompts' prefill, one start.
    sampling = by_what(works, "01_data", "sampling")
    busy = 2000 * 8 * 600 / 20_000 + 2 * slm * 2000 * 150 / (peak * 0.3)
    assert sampling.gpus == 1
    assert sampling.gpu_h == pytest.approx((busy + load + 90) / 3600)
    assert sampling.wall_h == pytest.approx(sampling.gpu_h)

    # 02: refine + synthesize per kept problem, the 7B Oracle answering ~a trace each.
    oracle = by_what(works, "02_oracle_refine", "Oracle")
    assert "1,360 requests" in oracle.what and not oracle.elsewhere and oracle.gpus == 1
    assert "0.8M generated tokens" in oracle.detail  # 1,360 x 600

    # 04: 15 runs (5 streams x {nll, dft} + compat_selected x 2 + 3 drift streams x dft) over the kept
    # problems' question + trace, 6 x params FLOPs at 35%, + a launch and the weights read and written.
    assert len(training_runs(p)) == 15
    train = by_what(works, "04_train", "training")
    flops = 6 * slm * kept * (150 + 600) * 15
    assert train.gpu_h == pytest.approx((flops / (peak * 0.35) + 15 * (60 + 2 * load)) / 3600)

    # 05: 16 models (15 runs + the base) on MATH-500, AMC23, AIME24 (570 problems) and 5 mid-training
    # checkpoints on MATH-500, 4 samples of ~800 tokens each; one engine start per model.
    ev = by_what(works, "05_eval", "evaluation")
    generated = (16 * 570 + 5 * 500) * 4 * 800
    busy = generated / 20_000 + 2 * slm * (16 * 570 + 5 * 500) * 150 / (peak * 0.3)
    assert ev.gpu_h == pytest.approx((busy + 21 * (load + 90)) / 3600)

    # 03: the PRM (beside the Oracle's locate prompt, for the agreement table) reads each kept problem's
    # question, trace and chat template once: 2 x 7.07B params per token at 30%, + its weights read once.
    prm = by_what(works, "03_style_align", "PRM Qwen/Qwen2.5-Math-PRM-7B")
    prm_params = n_params(SHAPES["Qwen/Qwen2.5-Math-PRM-7B"])
    tokens = kept * (150 + 600 + 64)
    assert prm.gpus == 1
    assert prm.gpu_h == pytest.approx(
        (2 * prm_params * tokens / (peak * 0.3) + prm_params * 2 / GIB / 2.0) / 3600
    )

    # The run fits the budget: about two hours on one GPU.
    here = sum(w.gpu_h for w in works if w.gpu_h is not None and not w.elsewhere)
    assert 1.5 < here < 2.5
    assert all(w.gpus == 1 and not w.elsewhere for w in works)


def test_plan_prints_the_estimate_with_its_assumptions():
    text = plan.render(load_params("paper-mini", ROOT / "params"))
    assert "GPU hours, estimated (estimates, not measurements; assume h100 GPUs" in text
    assert "680 kept" in text
    total = next(
        line for line in text.splitlines() if line.strip().startswith("total") and "per node" in line
    )
    assert "1.89" in total, total
    for stage in ("01_data", "02_oracle_refine", "03_style_align", "04_train", "05_eval", "07_mechanism"):
        assert any(
            line.strip().startswith(stage) and line.strip().endswith(" 1") for line in text.splitlines()
        )


def test_the_8_gpu_profile_samples_and_evaluates_on_8_gpus():
    p = load_params("paper-qwen2.5-math-1.5b", ROOT / "params")
    assert p.sampling.backend == p.eval_backend == "openai"
    assert p.endpoint.serve is not None and p.endpoint.serve.data_parallel_size == 8
    works = gpu_hours.estimate(p)
    for stage, start in (("01_data", "sampling"), ("05_eval", "evaluation")):
        w = by_what(works, stage, start)
        assert w.gpus == 8
        assert w.wall_h is not None and w.gpu_h is not None and w.wall_h < w.gpu_h / 7  # spread over 8 GPUs
    text = plan.render(p)
    assert text.count("GPUs: 8 of the node's 8 (8 engine(s) of 1 GPU(s) each") == 2
    assert (
        text.count("reserved = endpoint.serve.gpu_memory_utilization 0.9 x 79 GiB x 8 engines = 8 GPUs") == 2
    )
    # The Oracle runs on its own node: its hours are counted apart, on its 8 GPUs.
    oracle = by_what(works, "02_oracle_refine", "Oracle")
    assert oracle.elsewhere and oracle.gpus == 8 and oracle.wall_h == pytest.approx(oracle.gpu_h / 8)


@pytest.mark.parametrize("profile", ["paper-qwen2.5-math-7b", "paper-llama-3.2-3b", "paper-deepseekmath-7b"])
def test_the_other_paper_profiles_inherit_the_spread(profile):
    p = load_params(profile, ROOT / "params")
    works = gpu_hours.estimate(p)
    assert by_what(works, "01_data", "sampling").gpus == by_what(works, "05_eval", "evaluation").gpus == 8


def test_assumptions_are_overridable_and_checked(pdir):
    base = load_params("paper-mini", pdir)
    (pdir / "fast.yaml").write_text(
        "extends: paper-mini\ndescription: x\nhardware:\n  gpu_hours:\n"
        "    decode_tokens_per_s: {Qwen/Qwen2.5-Math-1.5B: 40000}\n    kept_share: 0.5\n"
    )
    fast = load_params("fast", pdir)
    a, b = (by_what(gpu_hours.estimate(x), "01_data", "sampling") for x in (base, fast))
    assert "hardware.gpu_hours.decode_tokens_per_s" in b.detail
    assert b.gpu_h < a.gpu_h  # twice the rate: the decoding half as long
    assert by_what(gpu_hours.estimate(fast), "02_oracle_refine", "Oracle").what.startswith(
        "Oracle Qwen/Qwen2.5-Math-7B-Instruct: 2,000 req"
    )
    (pdir / "typo.yaml").write_text(
        "extends: paper-mini\ndescription: x\nhardware:\n  gpu_hours:\n    mfu: 0.5\n"
    )
    with pytest.raises(ParamsError, match=r"typo\.yaml: unknown key 'hardware.gpu_hours.mfu'"):
        load_params("typo", pdir)


def test_what_the_params_cannot_say_is_not_estimated(pdir):
    p = load_params("paper-mini", pdir)
    assert gpu_hours.check(load_params("toy", pdir)) == ["GPU hours: the toy world runs on a CPU"]
    bare = p.model_copy(update={"hardware": p.hardware.model_copy(update={"gpu": None})})
    assert gpu_hours.check(bare) == ["GPU hours: not estimated (hardware.gpu is not set)"]
    # A dataset of unknown size without a limit.
    (pdir / "all.yaml").write_text(
        "extends: paper-mini\ndescription: x\ndatasets:\n  train:\n    limit: null\n"
    )
    assert (
        "the size of dataset split 'train' (AI-MO/NuminaMath-CoT) is not known here; set its limit"
        in gpu_hours.check(load_params("all", pdir))[0]
    )
    # A hosted Oracle the shape table does not know: its tokens are counted, its GPU hours not guessed.
    (pdir / "api.yaml").write_text(
        "extends: paper-qwen2.5-math-1.5b\ndescription: x\noracle:\n  model: gpt-5.2\n"
    )
    lines = "\n".join(gpu_hours.check(load_params("api", pdir)))
    assert (
        "Oracle gpt-5.2: 68,000 requests" in lines
        and "not estimated (gpt-5.2 is not in paradox.gpu_memory" in lines
    )
    assert "(a total leaves out what is not estimated above)" in lines
    # An Oracle elsewhere without its GPU count: GPU hours, no wall time.
    (pdir / "away.yaml").write_text(
        "extends: paper-qwen2.5-math-1.5b\ndescription: x\nhardware:\n  gpu_hours:\n    oracle_gpus: null\n"
    )
    oracle = by_what(gpu_hours.estimate(load_params("away", pdir)), "02_oracle_refine", "Oracle")
    assert (
        oracle.gpu_h is not None
        and oracle.wall_h is None
        and "set hardware.gpu_hours.oracle_gpus" in oracle.detail
    )


def test_a_72b_reward_model_under_device_map_holds_every_gpu_for_one_gpus_time():
    """transformers runs the layers of a model spread by device_map="auto" one GPU at a time."""
    p = load_params("paper-qwen2.5-math-1.5b", ROOT / "params")
    w = by_what(gpu_hours.estimate(p), "02_oracle_refine", "reward Qwen/Qwen2.5-Math-RM-72B")
    assert w.gpus == 8 and w.gpu_h == pytest.approx(8 * w.wall_h)
    tokens = 4 * 34_000 * (150 + 600)
    params_72b = n_params(SHAPES["Qwen/Qwen2.5-Math-RM-72B"])
    assert w.wall_h == pytest.approx(
        (2 * params_72b * tokens / (989e12 * 0.3) + params_72b * 2 / GIB / 2) / 3600
    )


def test_the_two_node_profile_trains_on_16_gpus():
    from paradox import gpu_memory

    one = load_params("paper-qwen2.5-math-1.5b", ROOT / "params")
    two = load_params("paper-qwen2.5-math-1.5b-2nodes", ROOT / "params")
    assert (two.train.num_processes, two.train.num_machines) == (16, 2)
    assert gpu_memory.check(two)[1] == [] and two.train.split_batch(256) == (4, 4)
    a, b = (by_what(gpu_hours.estimate(x), "04_train", "training") for x in (one, two))
    assert (a.gpus, b.gpus) == (8, 16) and b.wall_h < a.wall_h
    assert (
        by_what(gpu_hours.estimate(two), "01_data", "sampling").gpus == 8
    )  # sampling stays on the main node
