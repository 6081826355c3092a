"""`make plan`'s GPU-memory estimates: the model table against the models' published sizes, the
formulas' pieces by hand, the paper profiles fitting their 8 x 80 GB node, and settings that cannot
fit refused with the stage and the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from paradox import gpu_memory, plan
from paradox.gpu_memory import GIB, SHAPES, kv_bytes_per_token, n_params
from paradox.params import ModelShape, load_params

ROOT = Path(__file__).resolve().parents[1]
PAPER = ["paper-qwen2.5-math-1.5b", "paper-qwen2.5-math-7b", "paper-llama-3.2-3b", "paper-deepseekmath-7b"]

# Parameter counts as the model cards state them (Qwen2.5 cards: 1.54B, 7.61B, 72.7B; Llama 3.2: 3.21B;
# DeepSeekMath-7B's safetensors: 6.91B).
PUBLISHED = {
    "Qwen/Qwen2.5-Math-1.5B": 1.54e9,
    "Qwen/Qwen2.5-Math-7B": 7.61e9,
    "Qwen/Qwen2.5-Math-72B-Instruct": 72.7e9,
    "meta-llama/Llama-3.2-3B": 3.21e9,
    "deepseek-ai/deepseek-math-7b-base": 6.91e9,
    # paper-mini's Oracle (the 7B's architecture) and reward model (Llama-3.2-3B's body, no LM head)
    "Qwen/Qwen2.5-Math-7B-Instruct": 7.61e9,
    "Skywork/Skywork-Reward-V2-Llama-3.2-3B": 3.21e9,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_the_published_sizes(name):
    assert n_params(SHAPES[name]) == pytest.approx(PUBLISHED[name], rel=0.01)


def test_kv_cache_per_token_by_hand():
    # 2 (K, V) x 28 layers x 2 KV heads x 128 dims x 2 bytes (bf16)
    assert kv_bytes_per_token(SHAPES["Qwen/Qwen2.5-Math-1.5B"], 2) == 2 * 28 * 2 * 128 * 2 == 28_672
    # the 72B over 8 GPUs: one of its 8 KV heads each
    assert kv_bytes_per_token(SHAPES["Qwen/Qwen2.5-Math-72B-Instruct"], 2, tp=8) == 2 * 80 * 1 * 128 * 2
    # fewer KV heads than GPUs: vLLM replicates them, one per GPU
    assert kv_bytes_per_token(SHAPES["Qwen/Qwen2.5-Math-1.5B"], 2, tp=4) == 2 * 28 * 1 * 128 * 2


@pytest.mark.parametrize("profile", PAPER)
def test_paper_profiles_fit_their_gpus(profile):
    p = load_params(profile, ROOT / "params")
    assert (p.hardware.gpu_memory_gib, p.hardware.gpus_per_node) == (79, 8)
    lines, errors = gpu_memory.check(p)
    assert errors == []
    text = "\n".join(lines)
    for stage in ("01_data", "02_oracle_refine", "04_train", "05_eval"):
        assert f"  {stage}" in text and "(fits)" in text


def test_training_estimate_by_hand():
    p = load_params("paper-qwen2.5-math-1.5b", ROOT / "params")
    e = gpu_memory.training(p, "04_train", "Qwen/Qwen2.5-Math-1.5B")
    n = n_params(SHAPES["Qwen/Qwen2.5-Math-1.5B"])
    states = n * 16 / 8 / GIB  # fp32 params, grads, AdamW m and v over 8 processes
    logits = 4 * 4096 * 151_936 * 16 / GIB  # 4 sequences of 4,096 tokens per device
    assert e.gib is not None and states + logits < e.gib < states + logits + 10
    assert f"states {states:.1f}" in e.detail and f"logits {logits:.1f}" in e.detail


@pytest.fixture
def pdir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "params", tmp_path / "params")
    return tmp_path / "params"


@pytest.mark.parametrize(
    "body,message",
    [
        (
            "train:\n  per_device_batch_size: 16\n",
            "stage 04_train, training Qwen/Qwen2.5-Math-1.5B: an estimated",
        ),
        (
            "reward:\n  backend: vllm\n",  # the 72B reward model on one GPU (vllm.tensor_parallel_size 1)
            "stage 02_oracle_refine, reward Qwen/Qwen2.5-Math-RM-72B (vllm): an estimated",
        ),
        ("hardware:\n  gpu_memory_gib: 24\n", "stage 04_train"),
        (
            "train:\n  num_processes: 16\n  per_device_batch_size: 2\n",
            "train.num_processes (16) is more than hardware.gpus_per_node (8)",
        ),
        (
            "vllm:\n  tensor_parallel_size: 4\n  data_parallel_size: 4\n",
            "= 16 GPUs, more than hardware.gpus_per_node",
        ),
        (
            "vllm:\n  max_model_len: 8192\n",
            "vllm.max_model_len (8,192) is above Qwen/Qwen2.5-Math-1.5B's "
            "max_position_embeddings (4,096): vLLM refuses it",
        ),
        ("vllm:\n  tensor_parallel_size: 8\n", "does not divide the 12 attention heads"),
    ],
)
def test_settings_that_cannot_fit_are_refused_naming_stage_and_key(pdir, monkeypatch, capsys, body, message):
    (pdir / "bad.yaml").write_text(f"extends: paper-qwen2.5-math-1.5b\ndescription: x\n{body}")
    monkeypatch.setattr(plan, "load_params", lambda profile: load_params(profile, pdir))
    assert plan.main(["bad"]) == 1
    err = capsys.readouterr().err
    assert message in err, err


def test_the_failure_names_the_keys_to_change(pdir):
    (pdir / "bad.yaml").write_text(
        "extends: paper-qwen2.5-math-1.5b\ndescription: x\ntrain:\n  per_device_batch_size: 16\n"
    )
    _, errors = gpu_memory.check(load_params("bad", pdir))
    assert len(errors) == 1 and "lower train.per_device_batch_size" in errors[0]


def test_an_unknown_model_is_not_estimated_until_described(pdir):
    (pdir / "other.yaml").write_text(
        "extends: paper-qwen2.5-math-1.5b\ndescription: x\nslm:\n  name_or_path: my/slm\n"
    )
    lines, errors = gpu_memory.check(load_params("other", pdir))
    assert (
        errors == []
        and "training my/slm: not estimated (my/slm is not in paradox.gpu_memory.SHAPES" in "\n".join(lines)
    )
    (pdir / "described.yaml").write_text(
        "extends: other\ndescription: x\nhardware:\n  models:\n    my/slm: {layers: 28, hidden: 1536, heads: 12, "
        "kv_heads: 2, intermediate: 8960, vocab: 151936, max_position: 4096, tied_embeddings: true}\n"
    )
    lines, _ = gpu_memory.check(load_params("described", pdir))
    assert "training my/slm: needs ~" in "\n".join(lines)


def test_perplexity_scoring_is_estimated_from_the_scoring_token_budget():
    """eval.score_token_budget bounds metrics.response_nll's micro-batches; the logits slice is the
    one metrics uses."""
    from paradox.metrics import LOGIT_CHUNK_BYTES

    assert gpu_memory.LOGIT_CHUNK_BYTES == LOGIT_CHUNK_BYTES
    p = load_params("paper-qwen2.5-math-1.5b", ROOT / "params")
    lines, _ = gpu_memory.check(p)
    assert "perplexity Qwen/Qwen2.5-Math-1.5B: needs ~" in "\n".join(lines)
    for budget, fits in ((65_536, True), (2_000_000, False)):
        with_budget = p.model_copy(update={"eval": p.eval.model_copy(update={"score_token_budget": budget})})
        found = [e for e in gpu_memory.estimates(with_budget) if e.what.startswith("perplexity")]
        assert len(found) == 3 and all(e.fits is fits for e in found)
        assert fits or "lower eval.score_token_budget" in found[0].error()


def test_toy_and_undeclared_hardware_are_not_estimated():
    assert gpu_memory.check(load_params("toy", ROOT / "params")) == (
        ["GPU memory: the toy world runs on a CPU"],
        [],
    )
    p = load_params("paper-qwen2.5-math-1.5b", ROOT / "params")
    bare = p.model_copy(update={"hardware": p.hardware.model_copy(update={"gpu_memory_gib": None})})
    assert gpu_memory.check(bare)[0] == ["GPU memory: not estimated (hardware.gpu_memory_gib is not set)"]
    assert (
        isinstance(SHAPES["Qwen/Qwen2.5-Math-RM-72B"], ModelShape)
        and SHAPES["Qwen/Qwen2.5-Math-RM-72B"].source
    )


# --- served engines, one GPU, and more GPUs than the node has ---------------------------------------


def test_paper_mini_passes_the_check_that_make_paper_runs(capsys):
    assert plan.main(["--check", "paper-mini"]) == 0
    assert capsys.readouterr() == ("", "")
    p = load_params("paper-mini", ROOT / "params")
    assert (p.hardware.gpu_memory_gib, p.hardware.gpus_per_node) == (79, 1)
    lines = "\n".join(gpu_memory.check(p)[0])
    assert "peak: ~71.1 GiB of 79 on a GPU, in 01_data" in lines


def test_served_engines_are_estimated_per_gpu():
    """The `openai` backend with endpoint.serve: each of the replicas x data_parallel_size engines holds
    gpu_memory_utilization of its GPU; the Oracle's managed server (oracle.serve) likewise."""
    p = load_params("paper-qwen2.5-math-1.5b", ROOT / "params")
    served = [e for e in gpu_memory.estimates(p) if "(vllm serve)" in e.what]
    assert [e.stage for e in served] == ["01_data", "05_eval"]
    for e in served:
        assert e.reserved and e.limit_gib == pytest.approx(0.9 * 79) and e.gib == pytest.approx(7.0, abs=0.1)
        assert "x 8 engines = 8 GPUs" in e.detail and "endpoint.serve.gpu_memory_utilization" in e.detail
    mini = load_params("paper-mini", ROOT / "params")
    oracle = next(
        e for e in gpu_memory.estimates(mini) if e.what.startswith("Oracle Qwen/Qwen2.5-Math-7B-Instruct")
    )
    weights = n_params(SHAPES["Qwen/Qwen2.5-Math-7B-Instruct"]) * 2 / GIB
    kv = kv_bytes_per_token(SHAPES["Qwen/Qwen2.5-Math-7B-Instruct"], 2) * 4096 / GIB
    assert oracle.limit_gib == pytest.approx(0.6 * 79) and oracle.gib == pytest.approx(weights + 4 + kv)


def test_what_runs_beside_the_oracle_on_one_gpu_must_fit_with_it():
    """03: the Oracle's reservation + the SLM's perplexity pass + the reward model; 07: + the SLM."""
    p = load_params("paper-mini", ROOT / "params")
    found = gpu_memory.estimates(p)
    beside = {e.stage: e for e in found if e.what.startswith("Oracle server beside")}
    assert set(beside) == {"03_style_align", "07_mechanism"}
    part = {e.stage + e.what.split()[0]: e.gib for e in found if e.gib is not None and not e.reserved}
    assert beside["03_style_align"].gib == pytest.approx(
        0.6 * 79 + part["03_style_alignperplexity"] + part["02_oracle_refinereward"]
    )
    assert beside["07_mechanism"].gib == pytest.approx(0.6 * 79 + part["07_mechanismperplexity"])
    assert all(e.fits for e in beside.values())


@pytest.mark.parametrize(
    "profile,body,message",
    [
        (
            "paper-mini",
            "oracle:\n  serve:\n    gpu_memory_utilization: 0.85\n",
            "stage 03_style_align, Oracle server beside perplexity Qwen/Qwen2.5-Math-1.5B and reward "
            "Skywork/Skywork-Reward-V2-Llama-3.2-3B (hf): an estimated",
        ),
        (
            "paper-mini",
            "endpoint:\n  serve:\n    data_parallel_size: 2\n",
            "endpoint.serve (replicas x tensor_parallel_size x data_parallel_size) asks for 2 GPUs on one node, more "
            "than hardware.gpus_per_node (1)",
        ),
        (
            "paper-mini",
            "oracle:\n  serve:\n    tensor_parallel_size: 2\n",
            "oracle.serve (replicas x tensor_parallel_size x data_parallel_size) asks for 2 GPUs on one node",
        ),
        (
            "paper-mini",
            "train:\n  num_processes: 2\n  per_device_batch_size: 4\n",
            "train.num_processes (2) is more than hardware.gpus_per_node (1)",
        ),
        (
            "paper-qwen2.5-math-1.5b",
            "endpoint:\n  serve:\n    replicas: 2\n",
            "endpoint.serve (replicas x tensor_parallel_size x data_parallel_size) asks for 16 GPUs on one node",
        ),
        (
            "paper-qwen2.5-math-1.5b",
            "endpoint:\n  serve:\n    max_model_len: 8192\n",
            "endpoint.serve.max_model_len (8,192) is above Qwen/Qwen2.5-Math-1.5B's max_position_embeddings",
        ),
        (
            "paper-qwen2.5-math-1.5b",
            "train:\n  launcher: inline\n",
            "train.launcher 'inline' would fine-tune the bfloat16 weights as loaded",
        ),
    ],
)
def test_more_gpus_than_the_node_has_or_than_fit_are_refused(
    pdir, monkeypatch, capsys, profile, body, message
):
    (pdir / "bad.yaml").write_text(f"extends: {profile}\ndescription: x\n{body}")
    monkeypatch.setattr(plan, "load_params", lambda name: load_params(name, pdir))
    assert plan.main(["--check", "bad"]) == 1
    err = capsys.readouterr().err
    assert message in err, err


def test_a_training_job_over_two_nodes_counts_processes_per_node(pdir):
    (pdir / "two.yaml").write_text(
        "extends: paper-qwen2.5-math-1.5b\ndescription: x\ntrain:\n  num_processes: 16\n"
        "  num_machines: 2\n  per_device_batch_size: 2\n"
        "  accelerate_config: params/accelerate/fsdp-2x8.yaml\n"
    )
    p = load_params("two", pdir)
    assert gpu_memory.layout_errors(p) == []
    assert "GPUs: 16 (8 per node x 2 node(s), one process each)" in plan.render(p)
