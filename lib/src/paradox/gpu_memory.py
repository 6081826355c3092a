"""Peak GPU memory per stage, estimated from params alone (for `make plan`; nothing is loaded).

Estimates, not measurements: each formula (docs/budgets.md) counts the big terms - weights, KV
cache, activations, logits, optimizer state - in GiB per GPU, and a stage whose estimate cannot fit
the profile's GPUs (`hardware`) is refused with the key to change. Model shapes come from the
published configs in `SHAPES` (sources named) or from `hardware.models`; any other model is "not
estimated", never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from paradox.params import ModelShape, Params, RewardModel, Serve

GIB = 2**30
BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
# Per-GPU memory the formulas do not itemize: CUDA context and allocator slack (torch), plus CUDA
# graphs and the profiling forward pass's activations (vLLM). Rough, stated, on the safe side.
TORCH_OVERHEAD_GIB = 2.0
VLLM_OVERHEAD_GIB = 4.0
# Perplexity scoring (metrics.response_nll) scores micro-batches of at most eval.score_token_budget
# tokens and computes float32 logits over slices of positions of at most this many bytes (the same
# constant as metrics.LOGIT_CHUNK_BYTES, kept here so that `make plan` need not import torch; a test
# keeps them equal); log-softmax needs a second buffer of that size.
LOGIT_CHUNK_BYTES = 1 << 28

_QWEN_CFG = "config.json of {} on the Hugging Face hub (read via mirrors that copy it unchanged)"
SHAPES: dict[str, ModelShape] = {
    "Qwen/Qwen2.5-Math-1.5B": ModelShape(
        layers=28,
        hidden=1536,
        heads=12,
        kv_heads=2,
        intermediate=8960,
        vocab=151936,
        max_position=4096,
        tied_embeddings=True,
        qkv_bias=True,
        source=_QWEN_CFG.format("Qwen/Qwen2.5-Math-1.5B"),
    ),
    "Qwen/Qwen2.5-Math-7B": ModelShape(
        layers=28,
        hidden=3584,
        heads=28,
        kv_heads=4,
        intermediate=18944,
        vocab=152064,
        max_position=4096,
        qkv_bias=True,
        source=_QWEN_CFG.format("Qwen/Qwen2.5-Math-7B"),
    ),
    # The 72B Oracle and reward model: Qwen2.5-72B's architecture (config.json of Qwen/Qwen2.5-72B-Instruct
    # and its copies) with the 4,096-position context of the Qwen2.5-Math family's configs.
    "Qwen/Qwen2.5-Math-72B-Instruct": ModelShape(
        layers=80,
        hidden=8192,
        heads=64,
        kv_heads=8,
        intermediate=29568,
        vocab=152064,
        max_position=4096,
        qkv_bias=True,
        source="Qwen2.5-72B architecture; context of the Qwen2.5-Math configs",
    ),
    "Qwen/Qwen2.5-Math-RM-72B": ModelShape(
        layers=80,
        hidden=8192,
        heads=64,
        kv_heads=8,
        intermediate=29568,
        vocab=152064,
        max_position=4096,
        qkv_bias=True,
        lm_head=False,
        source="Qwen2.5-Math-72B-Instruct's body with a scalar head (model card)",
    ),
    "meta-llama/Llama-3.2-3B": ModelShape(
        layers=28,
        hidden=3072,
        heads=24,
        kv_heads=8,
        head_dim=128,
        intermediate=8192,
        vocab=128256,
        max_position=131072,
        tied_embeddings=True,
        source="config.json of meta-llama/Llama-3.2-3B (via mirrors)",
    ),
    "deepseek-ai/deepseek-math-7b-base": ModelShape(
        layers=30,
        hidden=4096,
        heads=32,
        kv_heads=32,
        intermediate=11008,
        vocab=102400,
        max_position=4096,
        source="config.json of deepseek-ai/deepseek-math-7b-base",
    ),
    # The paper-mini Oracle: the 7B's architecture with the chat model's eos; config.json of
    # Qwen/Qwen2.5-Math-7B-Instruct as copied by models built from it (PRIME-RL/EurusPRM-Stage1's names it
    # as _name_or_path): 28 layers, 3,584 hidden, 28 heads, 4 KV heads, 4,096 positions, untied.
    "Qwen/Qwen2.5-Math-7B-Instruct": ModelShape(
        layers=28,
        hidden=3584,
        heads=28,
        kv_heads=4,
        intermediate=18944,
        vocab=152064,
        max_position=4096,
        qkv_bias=True,
        source="config.json of Qwen/Qwen2.5-Math-7B-Instruct (as copied by models built on it)",
    ),
    # The error locator of `oracle.locator: prm`: config.json of Qwen/Qwen2.5-Math-PRM-7B (read on the hub's
    # page): Qwen2.5-Math-7B-Instruct's body (28 layers, 3,584 hidden, 28 heads, 4 KV heads, 4,096
    # positions) with a 2-logit head per token instead of the LM head.
    "Qwen/Qwen2.5-Math-PRM-7B": ModelShape(
        layers=28,
        hidden=3584,
        heads=28,
        kv_heads=4,
        intermediate=18944,
        vocab=152064,
        max_position=4096,
        qkv_bias=True,
        lm_head=False,
        source=_QWEN_CFG.format("Qwen/Qwen2.5-Math-PRM-7B"),
    ),
    # The paper-mini reward model: its model card names meta-llama/Llama-3.2-3B-Instruct as the base, a
    # LlamaForSequenceClassification with one label (the checkpoint's own config.json was not read: the
    # body is Llama-3.2-3B's, the score head a 3,072 x 1 matrix, no LM head).
    "Skywork/Skywork-Reward-V2-Llama-3.2-3B": ModelShape(
        layers=28,
        hidden=3072,
        heads=24,
        kv_heads=8,
        head_dim=128,
        intermediate=8192,
        vocab=128256,
        max_position=131072,
        lm_head=False,
        source="Llama-3.2-3B architecture (config.json of meta-llama/Llama-3.2-3B), as its model card's base",
    ),
    "Skywork/Skywork-Reward-V2-Llama-3.1-8B": ModelShape(
        layers=32,
        hidden=4096,
        heads=32,
        kv_heads=8,
        head_dim=128,
        intermediate=14336,
        vocab=128256,
        max_position=131072,
        lm_head=False,
        source="Llama-3.1-8B architecture, as in Skywork-Reward-Llama-3.1-8B's config.json",
    ),
}


def n_params(m: ModelShape) -> int:
    """Parameters of a Llama/Qwen2-style decoder: embeddings, attention (q, k, v, o; Qwen2's q/k/v
    biases), gated MLP, RMSNorms, and an untied LM head (a reward head is negligible)."""
    d = m.head_dim or m.hidden // m.heads
    attn = m.hidden * m.heads * d * 2 + m.hidden * m.kv_heads * d * 2
    bias = (m.heads + 2 * m.kv_heads) * d if m.qkv_bias else 0
    layer = attn + bias + 3 * m.hidden * m.intermediate + 2 * m.hidden
    head = m.vocab * m.hidden if m.lm_head and not m.tied_embeddings else 0
    return m.vocab * m.hidden + m.layers * layer + m.hidden + head


def kv_bytes_per_token(m: ModelShape, dtype_bytes: int, tp: int = 1) -> int:
    """K and V of every layer for one token, on one of `tp` tensor-parallel GPUs (vLLM replicates a
    KV head when there are fewer KV heads than GPUs)."""
    d = m.head_dim or m.hidden // m.heads
    return 2 * m.layers * math.ceil(m.kv_heads / tp) * d * dtype_bytes


def shape_of(params: Params, name: str) -> ModelShape | None:
    return params.hardware.models.get(name) or SHAPES.get(name)


@dataclass(frozen=True)
class Estimate:
    stage: str
    what: str
    gib: float | None  # peak per GPU; None: not estimated
    limit_gib: float | None  # what it must fit in, per GPU
    detail: str
    fix: str = ""  # the keys to change when it does not fit
    reserved: bool = False  # vLLM: limit_gib is what the engine reserves, gib what must fit in it

    @property
    def fits(self) -> bool:
        return self.gib is None or self.limit_gib is None or self.gib <= self.limit_gib

    def line(self) -> str:
        if self.gib is None:
            return f"  {self.stage:<16} {self.what}: not estimated ({self.detail})"
        verdict = "fits" if self.fits else "DOES NOT FIT"
        of = (
            f"of the {self.limit_gib:.1f} GiB per GPU it reserves"
            if self.reserved
            else (f"per GPU of {self.limit_gib:.1f}")
        )
        return f"  {self.stage:<16} {self.what}: needs ~{self.gib:.1f} GiB {of} ({verdict}); {self.detail}"

    def error(self) -> str:
        return (
            f"stage {self.stage}, {self.what}: an estimated {self.gib:.1f} GiB per GPU does not fit "
            f"{self.limit_gib:.1f} GiB; {self.fix}"
        )


def _unknown(stage: str, what: str, name: str) -> Estimate:
    return Estimate(
        stage,
        what,
        None,
        None,
        f"{name} is not in paradox.gpu_memory.SHAPES; describe it under hardware.models to estimate it",
    )


def engine(
    params: Params,
    stage: str,
    what: str,
    name: str,
    dtype: str,
    tp: int,
    util: float,
    max_len: int | None,
    keys: str,
    engines: int = 1,
) -> Estimate:
    """A vLLM engine (offline, or one engine of a `vllm serve`) reserves util x the GPU on each of its
    GPUs; the weights (split over tensor-parallel GPUs) and its overhead come first, the KV cache gets
    the rest and must hold one max_model_len sequence. `keys`: the params section that sets tp, util
    and max_model_len (vllm, endpoint.serve, oracle.serve); `engines`: data-parallel engines, one per
    group of tp GPUs (each holds the same per GPU)."""
    m, mem = shape_of(params, name), params.hardware.gpu_memory_gib
    if m is None:
        return _unknown(stage, what, name)
    assert mem is not None
    b = BYTES.get(dtype, 2)
    seq = max_len or m.max_position
    weights = n_params(m) * b / tp / GIB
    budget = util * mem
    room = budget - weights - VLLM_OVERHEAD_GIB
    per_token = kv_bytes_per_token(m, b, tp)
    n_seqs = room * GIB / (seq * per_token) if room > 0 else 0.0
    spread = (
        f" x {engines} engines = {engines * tp} GPUs" if engines > 1 else (f" ({tp} GPUs)" if tp > 1 else "")
    )
    detail = (
        f"{n_params(m) / 1e9:.2f}B params: weights {weights:.1f}{f' (over {tp} GPUs)' if tp > 1 else ''} + "
        f"overhead {VLLM_OVERHEAD_GIB:g} + one {seq:,}-token sequence's KV cache; reserved = "
        f"{keys}.gpu_memory_utilization {util:g} x {mem:g} GiB{spread}; KV cache "
        f"{per_token / 1024:.0f} KiB/token: room for ~{max(room, 0) * GIB / per_token / 1e6:.2f}M tokens "
        f"= ~{n_seqs:.0f} sequences of {seq:,} at once" + (" per engine" if engines > 1 else "")
    )
    need = weights + VLLM_OVERHEAD_GIB + seq * per_token / GIB  # at least one full-length sequence
    return Estimate(
        stage,
        what,
        need,
        budget,
        detail,
        f"raise {keys}.tensor_parallel_size or {keys}.gpu_memory_utilization, or lower {keys}.max_model_len",
        reserved=True,
    )


def vllm_engine(
    params: Params, stage: str, what: str, name: str, dtype: str, max_len: int | None
) -> Estimate:
    """vLLM's offline engine with the `vllm` section's settings."""
    v = params.vllm
    return engine(
        params, stage, what, name, dtype, v.tensor_parallel_size, v.gpu_memory_utilization, max_len, "vllm"
    )


def served_engine(
    params: Params, stage: str, what: str, name: str, dtype: str, sv: Serve, keys: str, max_len: int | None
) -> Estimate:
    """One GPU of a managed `vllm serve` (`endpoint.serve`, `oracle.serve`): every engine of its
    replicas x data_parallel_size holds the same per GPU."""
    return engine(
        params,
        stage,
        what,
        name,
        sv.dtype if sv.dtype in BYTES else dtype,
        sv.tensor_parallel_size,
        sv.gpu_memory_utilization,
        sv.max_model_len or max_len,
        keys,
        sv.replicas * sv.data_parallel_size,
    )


def hf_inference(
    params: Params,
    stage: str,
    what: str,
    name: str,
    dtype: str,
    n_gpus: int,
    tokens: int,
    logits: bool,
    fix: str,
) -> Estimate:
    """transformers forward passes without grad: weights (device_map "auto" spreads them over
    `n_gpus`) + one layer's activations for `tokens` tokens (SDPA attention: no seq x seq matrix) +,
    for an LM, float32 log-probabilities over a chunk of positions."""
    m, mem = shape_of(params, name), params.hardware.gpu_memory_gib
    if m is None:
        return _unknown(stage, what, name)
    assert mem is not None
    b = BYTES[dtype]
    weights = n_params(m) * b / n_gpus / GIB
    acts = tokens * (4 * m.hidden + 3 * m.intermediate) * b / GIB
    chunk = 2 * min(tokens * m.vocab * 4, LOGIT_CHUNK_BYTES) / GIB if logits else 0.0
    total = weights + acts + chunk + TORCH_OVERHEAD_GIB
    detail = (
        f"weights {weights:.1f}{f' (over {n_gpus} GPUs)' if n_gpus > 1 else ''} + activations of {tokens:,} "
        f"tokens {acts:.1f}"
        + (f" + logits chunk {chunk:.1f}" if logits else "")
        + f" + overhead {TORCH_OVERHEAD_GIB:g} GiB"
    )
    return Estimate(stage, what, total, mem, detail, fix)


def training(params: Params, stage: str, name: str) -> Estimate:
    """Full fine-tuning under FSDP FULL_SHARD (params/accelerate/fsdp.yaml) with bf16 mixed precision:
    accelerate keeps float32 parameters, so parameters, gradients and AdamW's two moments take
    16 bytes/param, sharded over the processes; the largest FSDP unit (embeddings + LM head) is
    gathered in bf16 with its gradients; activations of one device batch of max_length tokens:
    each layer's input (gradient checkpointing) + one layer recomputed with its gradients, and the
    logits with their float32 copies (~16 bytes per token x vocabulary)."""
    t, m, mem = params.train, shape_of(params, name), params.hardware.gpu_memory_gib
    what = f"training {name}"
    if m is None:
        return _unknown(stage, what, name)
    assert mem is not None
    n, per_device = t.num_processes, t.split_batch(t.batch_size)[0]
    per_device = max([per_device, *(t.split_batch(bs)[0] for bs in params.grid.batch_sizes)])
    p = n_params(m)
    if t.lora.enabled:
        states = p * BYTES[params.slm.dtype] / GIB  # frozen base weights; the adapters are small
    elif t.launcher == "accelerate":
        states = p * 16 / n / GIB
    else:  # one process, no sharding: weights, grads and AdamW moments in the load dtype
        states = p * 4 * BYTES[params.slm.dtype] / GIB
    units = (1 if m.tied_embeddings or not m.lm_head else 2) * m.vocab * m.hidden * 2 * 2 / GIB
    tokens = per_device * t.max_length
    layer_acts = tokens * (10 * m.hidden + 4 * m.intermediate)
    acts = (
        (m.layers * tokens * m.hidden * 2 + layer_acts * 4)
        if t.gradient_checkpointing
        else m.layers * layer_acts * 2
    ) / GIB
    logits = tokens * m.vocab * 16 / GIB
    total = states + units + acts + logits + TORCH_OVERHEAD_GIB
    detail = (
        f"{p / 1e9:.2f}B params: states {states:.1f} (over {n} process(es)) + gathered embeddings {units:.1f} "
        f"+ activations {acts:.1f} + logits {logits:.1f} ({per_device} x {t.max_length:,} tokens per device) "
        f"+ overhead {TORCH_OVERHEAD_GIB:g} GiB"
    )
    return Estimate(
        stage,
        what,
        total,
        mem,
        detail,
        "lower train.per_device_batch_size (more accumulation steps) or train.max_length, raise "
        "train.num_processes, or set train.gradient_checkpointing",
    )


def _reward(params: Params, stage: str, spec: RewardModel, key: str = "reward") -> Estimate:
    assert spec.name_or_path is not None
    what = f"reward {spec.name_or_path} ({spec.backend})"
    if spec.backend == "vllm_server":
        sv = spec.serve
        if sv is None:
            return Estimate(stage, what, None, None, f"servers you run at {', '.join(spec.base_urls)}")
        # Every server (each data-parallel rank) holds the whole model on tensor_parallel_size GPUs.
        return served_engine(
            params,
            stage,
            what,
            spec.name_or_path,
            spec.dtype,
            sv,
            f"{key}.serve",
            sv.max_model_len or spec.max_length,
        )
    if spec.backend == "vllm":
        return vllm_engine(
            params, stage, what, spec.name_or_path, spec.dtype, params.vllm.max_model_len or spec.max_length
        )
    return hf_inference(
        params,
        stage,
        what,
        spec.name_or_path,
        spec.dtype,
        params.hardware.gpus_per_node,
        spec.batch_size * spec.max_length,
        logits=False,
        fix="lower reward.batch_size or reward.max_length (or hardware.gpus_per_node is too small)",
    )


def prm_runs(params: Params) -> bool:
    """Whether notebook 03 runs a process reward model: `oracle.prm`, as the locator or beside it."""
    o = params.oracle
    return o.backend == "openai" and o.prm is not None and (o.locator == "prm" or o.compare_locators)


def prm(params: Params, stage: str = "03_style_align") -> Estimate:
    """The PRM of `oracle.prm` (notebook 03, before the SLM and the reward model load)."""
    o = params.oracle
    assert o.prm is not None
    what = f"PRM {o.prm} ({o.prm_backend})"
    if o.prm_backend == "vllm":
        return vllm_engine(
            params, stage, what, o.prm, o.prm_dtype, params.vllm.max_model_len or o.prm_max_length
        )
    return hf_inference(
        params,
        stage,
        what,
        o.prm,
        o.prm_dtype,
        params.hardware.gpus_per_node,
        o.prm_token_budget,
        logits=False,
        fix="lower oracle.prm_token_budget (or hardware.gpus_per_node is too small)",
    )


def reward_specs(params: Params) -> list[tuple[str, RewardModel]]:
    """(params key, spec) of the main reward model and each cross-check model."""
    return [
        ("reward", params.reward),
        *((f"reward.cross_check[{i}]", spec) for i, spec in enumerate(params.reward.cross_check)),
    ]


def reward_server_errors(params: Params) -> list[str]:
    """Managed reward servers (`reward.serve`) that cannot start as set, whatever the GPUs' memory."""
    h, errors = params.hardware, []
    for key, spec in reward_specs(params):
        sv = spec.serve
        if spec.backend != "vllm_server" or sv is None:
            continue
        k = f"{key}.serve"
        if sv.data_parallel_size * sv.tensor_parallel_size > h.gpus_per_node:
            errors.append(
                f"{k}: data_parallel_size x tensor_parallel_size = "
                f"{sv.data_parallel_size * sv.tensor_parallel_size} GPUs, more than hardware.gpus_per_node "
                f"({h.gpus_per_node})"
            )
        if h.gpu_memory_gib is not None and sv.replicas * sv.gpu_memory_utilization > 1:
            # paradox.serving starts every replica with the same environment: the same GPUs.
            errors.append(
                f"{k}: {sv.replicas} replicas x gpu_memory_utilization {sv.gpu_memory_utilization:g} claim "
                "more than the whole of the GPUs they share (every replica sees the same GPUs); spread a "
                "model over GPUs with data_parallel_size (vLLM gives each rank its own GPUs)"
            )
        m = shape_of(params, spec.name_or_path or "")
        max_len = sv.max_model_len or spec.max_length
        if m is not None and max_len > m.max_position:
            errors.append(
                f"{k}: max_model_len {max_len:,} (serve.max_model_len, else max_length) is above "
                f"{spec.name_or_path}'s max_position_embeddings ({m.max_position:,}): vLLM refuses it"
            )
        if m is not None and m.heads % sv.tensor_parallel_size:
            errors.append(
                f"{k}.tensor_parallel_size ({sv.tensor_parallel_size}) does not divide the {m.heads} "
                f"attention heads of {spec.name_or_path}: vLLM refuses it"
            )
        if key == "reward" and params.oracle.backend == "openai" and params.oracle.serve is not None:
            # Notebook 03 scores the Style-Aligned and drift-dial streams with the main model while the
            # Oracle's servers still run (the drift dial alternates the two), and managed servers share
            # one GPU lock. (Cross-check models score after the Oracle has stopped, in 02 and 03.)
            errors.append(
                f"{k} and oracle.serve are both managed servers, but notebook 03 scores rewards while "
                "the Oracle's servers run and only one managed server group may hold the GPUs: give one "
                "of them base_url (servers you run on other GPUs or nodes)"
            )
    return errors


def estimates(params: Params) -> list[Estimate]:
    """Every GPU stage's peak per GPU (real world; the toy world runs on a CPU)."""
    slm, p = params.slm.name_or_path, params
    score_budget = p.eval.score_token_budget

    def perplexity(stage: str) -> Estimate:
        what = f"perplexity {slm}"
        return hf_inference(
            p,
            stage,
            what,
            slm,
            p.slm.dtype,
            1,
            score_budget,
            logits=True,
            fix="lower eval.score_token_budget",
        )

    def generation(stage: str, backend: str) -> Estimate:
        what = f"{'sampling' if stage == '01_data' else 'evaluation'} {slm}"
        if backend == "vllm":
            return vllm_engine(p, stage, f"{what} (vLLM)", slm, p.slm.dtype, p.vllm.max_model_len)
        if backend == "openai" and p.endpoint.serve is not None:
            return served_engine(
                p,
                stage,
                f"{what} (vllm serve)",
                slm,
                p.slm.dtype,
                p.endpoint.serve,
                "endpoint.serve",
                p.vllm.max_model_len,
            )
        if backend == "openai":
            return Estimate(stage, what, None, None, "the servers of endpoint.base_urls, which you run")
        return Estimate(stage, what, None, None, "transformers generate")

    out = [generation("01_data", p.sampling.backend)]
    out += [
        _reward(p, "02_oracle_refine", spec, key) for key, spec in reward_specs(p) if spec.backend != "toy"
    ]
    out += [prm(p)] if prm_runs(p) else []
    out += [
        perplexity("03_style_align"),
        training(p, "04_train", slm),
        generation("05_eval", p.eval_backend),
        perplexity("05_eval"),
        perplexity("07_mechanism"),
    ]
    out += oracle_beside(p, perplexity)
    return sorted(out, key=lambda e: e.stage)  # stable: each stage's own order stays


def held(e: Estimate) -> float:
    """GiB an estimate holds on its GPU: what a vLLM engine reserves, or what a process needs."""
    return (e.limit_gib if e.reserved else e.gib) or 0.0


def oracle_beside(params: Params, perplexity: Callable[[str], Estimate]) -> list[Estimate]:
    """A managed Oracle server (oracle.serve) runs on this machine's GPUs while its stage goes on:
    in 03 the SLM's perplexity pass and the reward model load beside it (after it started), and 07
    starts it with the SLM already loaded (vLLM refuses to start unless gpu_memory_utilization x the
    GPU is free). Its reservation plus what runs beside it must fit one GPU (the first: the SLM and the
    Oracle's first tensor-parallel rank both sit there)."""
    o, mem = params.oracle, params.hardware.gpu_memory_gib
    if o.backend != "openai" or o.serve is None or o.model is None:
        return []
    assert mem is not None
    server = served_engine(
        params,
        "02_oracle_refine",
        f"Oracle {o.model} (vllm serve; also in 03, 07)",
        o.model,
        "bfloat16",
        o.serve,
        "oracle.serve",
        o.context_length,
    )
    if server.gib is None:
        return [server]
    rewards = [] if params.reward.backend == "toy" else [_reward(params, "03_style_align", params.reward)]
    out = [server]
    # In 03 the PRM locates first and is freed before the SLM and the reward model load.
    for stage, beside in (
        *((("03_style_align", [prm(params)]),) if prm_runs(params) else ()),
        ("03_style_align", [perplexity("03_style_align"), *rewards]),
        ("07_mechanism", [perplexity("07_mechanism")]),
    ):
        if any(e.gib is None for e in beside):
            continue
        parts = [("the Oracle's reservation", held(server)), *((e.what, held(e)) for e in beside)]
        out.append(
            Estimate(
                stage,
                "Oracle server beside " + " and ".join(e.what for e in beside),
                sum(g for _, g in parts),
                mem,
                " + ".join(f"{w} {g:.1f}" for w, g in parts) + " GiB",
                "lower oracle.serve.gpu_memory_utilization (its KV cache), eval.score_token_budget or "
                "reward.batch_size",
            )
        )
    return out


def _engine_errors(
    params: Params, keys: str, model: str, tp: int, gpus: int, max_len: int | None
) -> list[str]:
    """An engine's layout: its GPUs on one node, its context within the model's, tp dividing the heads."""
    h, m, errors = params.hardware, shape_of(params, model), []
    if gpus > h.gpus_per_node:
        errors.append(
            f"{keys} asks for {gpus} GPUs on one node, more than hardware.gpus_per_node ({h.gpus_per_node})"
        )
    if m is not None and max_len is not None and max_len > m.max_position:
        errors.append(
            f"{keys}.max_model_len ({max_len:,}) is above {model}'s max_position_embeddings "
            f"({m.max_position:,}): vLLM refuses it"
        )
    if m is not None and m.heads % tp:
        errors.append(
            f"{keys}.tensor_parallel_size ({tp}) does not divide the {m.heads} attention heads of {model}: "
            "vLLM refuses it"
        )
    return errors


def layout_errors(params: Params) -> list[str]:
    """Settings that ask for more GPUs than a node has, or that vLLM refuses outright."""
    h, v, t, slm = params.hardware, params.vllm, params.train, params.slm.name_or_path
    errors = []
    if v.tensor_parallel_size * v.data_parallel_size > h.gpus_per_node:
        errors.append(
            f"vllm.tensor_parallel_size x data_parallel_size = {v.tensor_parallel_size * v.data_parallel_size} "
            f"GPUs, more than hardware.gpus_per_node ({h.gpus_per_node})"
        )
    per_node = t.num_processes // t.num_machines
    if t.launcher == "accelerate" and per_node > h.gpus_per_node:
        over = f" over train.num_machines ({t.num_machines})" if t.num_machines > 1 else ""
        errors.append(
            f"train.num_processes ({t.num_processes}){over} is more than hardware.gpus_per_node "
            f"({h.gpus_per_node}) per node: one process per GPU"
        )
    m = shape_of(params, slm)
    if m is not None and v.max_model_len is not None and v.max_model_len > m.max_position:
        errors.append(
            f"vllm.max_model_len ({v.max_model_len:,}) is above {slm}'s "
            f"max_position_embeddings ({m.max_position:,}): vLLM refuses it"
        )
    if m is not None and m.heads % v.tensor_parallel_size:
        errors.append(
            f"vllm.tensor_parallel_size ({v.tensor_parallel_size}) does not divide the "
            f"{m.heads} attention heads of {slm}: vLLM refuses it"
        )
    sv = params.endpoint.serve
    if sv is not None and "openai" in (params.sampling.backend, params.eval_backend):
        gpus = sv.replicas * sv.tensor_parallel_size * sv.data_parallel_size
        errors += _engine_errors(
            params,
            "endpoint.serve (replicas x tensor_parallel_size x data_parallel_size)"
            if gpus > h.gpus_per_node
            else "endpoint.serve",
            slm,
            sv.tensor_parallel_size,
            gpus,
            sv.max_model_len,
        )
    o = params.oracle
    if o.backend == "openai" and o.serve is not None and o.model is not None:
        gpus = o.serve.replicas * o.serve.tensor_parallel_size * o.serve.data_parallel_size
        errors += _engine_errors(
            params,
            "oracle.serve (replicas x tensor_parallel_size x data_parallel_size)"
            if gpus > h.gpus_per_node
            else "oracle.serve",
            o.model,
            o.serve.tensor_parallel_size,
            gpus,
            o.serve.max_model_len or o.context_length,
        )
    return errors


def check(params: Params) -> tuple[list[str], list[str]]:
    """(lines to print, errors naming the stage and the keys) for a profile's GPU memory."""
    h = params.hardware
    if params.world == "toy":
        return ["GPU memory: the toy world runs on a CPU"], []
    served = reward_server_errors(params)
    if h.gpu_memory_gib is None:
        return ["GPU memory: not estimated (hardware.gpu_memory_gib is not set)"], served
    found = estimates(params)
    lines = [
        f"GPU memory, estimated per GPU ({h.gpus_per_node} x {h.gpu_memory_gib:g} GiB per node; "
        "formulas in docs/budgets.md):",
        *[e.line() for e in found],
    ]
    known = [e for e in found if e.gib is not None]
    if known:
        top = max(known, key=held)
        lines.append(
            f"  peak: ~{held(top):.1f} GiB of {h.gpu_memory_gib:g} on a GPU, in {top.stage} ({top.what}; "
            "a vLLM engine holds all it reserves)"
        )
    return lines, [*layout_errors(params), *served, *[e.error() for e in found if not e.fits]]
