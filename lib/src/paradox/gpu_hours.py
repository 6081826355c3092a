"""GPU hours per stage, estimated from params alone (for `make plan`; nothing is loaded or timed).

Estimates, not measurements. Each stage's work is counted from the params (problems x samples x
an assumed mean trace length, capped by the token limits; Oracle requests and their tokens;
reward-scored tokens; training tokens; evaluation samples) and divided by throughputs that are
stated assumptions: the GPU table `GPUS` below (model size x GPU kind) and `hardware.gpu_hours`
(every number there can be overridden in a profile). The formulas are in docs/budgets.md.

- Generation (sampling, evaluation, the Oracle's answers) is bound by decoding: generated tokens /
  (tokens/s per GPU for the model's size), + the prompts' prefill as forward FLOPs, + one engine
  start (weights read + `engine_start_s`) per model served.
- Forward passes (rewards, perplexity, prefill): 2 x params x tokens FLOPs at `forward_mfu` of the
  GPU's peak. transformers' `device_map="auto"` runs a model's layers one GPU at a time, so a model
  spread over n GPUs holds n GPUs for the time one GPU needs.
- Training: 6 x params x tokens FLOPs at `train_mfu`, over `train.num_processes` GPUs, + per run a
  launch (`train_run_s`) and reading and writing the weights.
- GPU hours are GPU-seconds / 3600 (a GPU held while it waits for its engine counts); wall hours are
  a stage's work divided by the GPUs it runs on. An Oracle served elsewhere (oracle.base_url) is
  counted on its own GPUs, apart from this node's.
"""

from __future__ import annotations

from dataclasses import dataclass

from paradox.gpu_memory import BYTES, GIB, n_params, shape_of
from paradox.params import Params
from paradox.streams import all_streams, drift_stream
from paradox.training.runs import keeps_checkpoints, training_runs

# Dense bf16 peak of one GPU (NVIDIA's datasheets: H100 SXM 989 TFLOP/s without sparsity, H200 SXM the
# same chip, A100 312) and generated tokens/s per GPU of one vLLM engine with hundreds of sequences in
# flight, by model size (up to N billion parameters). The decode rates are ASSUMPTIONS, not measured
# here: round figures of the order vLLM's throughput benchmarks report for dense models of these sizes
# on an H100; decoding is bound by memory bandwidth, so an A100 (2.0 TB/s against the H100's 3.35) gets
# about half and an H200 (4.8 TB/s) about 1.3x. A 72B model spread over 8 GPUs (tensor parallel) gets
# the per-GPU rate of the last row. Set hardware.gpu_hours.decode_tokens_per_s from your own run.
_H100_DECODE = ((2.0, 20_000.0), (4.0, 12_000.0), (9.0, 6_000.0), (80.0, 600.0))


@dataclass(frozen=True)
class GPU:
    peak_tflops: float
    decode: tuple[tuple[float, float], ...]  # (up to N billion params, generated tokens/s per GPU)


GPUS = {
    "h100": GPU(989.0, _H100_DECODE),
    "h200": GPU(989.0, tuple((b, r * 1.3) for b, r in _H100_DECODE)),
    "a100": GPU(312.0, tuple((b, r * 0.5) for b, r in _H100_DECODE)),
}

# Rows of the published datasets the profiles name (dataset cards / viewers), for a split without
# `limit`. A dataset not here, or read from a local file, needs `limit` to be estimated.
DATASET_ROWS = {
    ("HuggingFaceH4/MATH-500", "test"): 500,
    ("math-ai/minervamath", "test"): 272,
    ("HuggingFaceH4/aime_2024", "train"): 30,
    ("math-ai/amc23", "test"): 40,
    ("math-ai/olympiadbench", "test"): 675,
    ("openai/gsm8k", "test"): 1_319,
}
# Mean Oracle answer per kind, as a share of a trace's length (a refine or a synthesized solution is
# about a trace; a critique before \boxed{index} about half; style_align and drift rewrite part of
# one); the retention judge answers a line. Assumptions, capped by the kind's completion limit.
ORACLE_ANSWER_SHARE = {"refine": 1.0, "synthesize": 1.0, "locate": 0.5, "style_align": 0.5, "drift": 0.5}
JUDGE_ANSWER_TOKENS = 32
# A prompt template's own text, in tokens per UTF-8 byte: English prose (~4 bytes a token).
PROSE_TOKENS_PER_BYTE = 0.25


class NotEstimated(ValueError):
    """A quantity the params do not determine (an unknown model or dataset size)."""


@dataclass(frozen=True)
class Work:
    """One piece of a stage's work: GPU hours (all the GPUs it holds) and wall hours."""

    stage: str
    what: str
    gpu_h: float | None  # None: not estimated (`detail` says why)
    wall_h: float | None
    gpus: int
    detail: str
    elsewhere: bool = False  # on the Oracle's own GPUs (not this node's)

    def line(self) -> str:
        if self.gpu_h is None:
            return f"  {self.stage:<16} {self.what}: not estimated ({self.detail})"
        on = (
            (f"the Oracle's {self.gpus} GPU(s)" if self.gpus else "the Oracle's GPUs")
            if self.elsewhere
            else (f"{self.gpus} GPU(s)")
        )
        wall = f"{self.wall_h:.2f} h wall" if self.wall_h is not None else "wall not estimated"
        return f"  {self.stage:<16} {self.what}: {self.gpu_h:.2f} GPU-h on {on}, {wall}; {self.detail}"


class Model:
    """A model's size and the rates the estimate uses for it."""

    def __init__(self, params: Params, name: str, dtype: str = "bfloat16") -> None:
        shape = shape_of(params, name)
        if shape is None:
            raise NotEstimated(
                f"{name} is not in paradox.gpu_memory.SHAPES; describe it under hardware.models"
            )
        h = params.hardware
        assert h.gpu is not None
        g, a = GPUS[h.gpu], h.gpu_hours
        self.name, self.params = name, n_params(shape)
        self.weights_gib = self.params * BYTES.get(dtype, 2) / GIB
        self.peak = (a.peak_tflops or g.peak_tflops) * 1e12
        row = next(((b, r) for b, r in g.decode if self.params / 1e9 <= b), None)  # the model's size class
        self.decode_rate = a.decode_tokens_per_s.get(name, row[1] if row else None)
        self.rate_from = (
            "hardware.gpu_hours.decode_tokens_per_s"
            if name in a.decode_tokens_per_s
            else f"{h.gpu} table, <= {row[0]:g}B"
            if row
            else ""
        )
        self.a = a

    def load_s(self) -> float:
        return self.weights_gib / self.a.load_gib_per_s

    def forward_gpu_s(self, tokens: float) -> float:
        return 2 * self.params * tokens / (self.peak * self.a.forward_mfu)

    def decode_gpu_s(self, tokens: float) -> float:
        if self.decode_rate is None:
            raise NotEstimated(
                f"{self.name} ({self.params / 1e9:.0f}B) is larger than the decode table; set "
                "hardware.gpu_hours.decode_tokens_per_s for it"
            )
        return tokens / self.decode_rate


def _m(tokens: float) -> str:
    return f"{tokens / 1e6:.1f}M" if tokens >= 1e5 else f"{tokens / 1e3:.0f}K"


def generation(
    stage: str,
    what: str,
    m: Model,
    gpus: int,
    generated: float,
    prompt: float,
    starts: int,
    elsewhere: bool = False,
) -> Work:
    """Decoding `generated` tokens (+ the prefill of `prompt` tokens) on `gpus` GPUs, `starts` engine starts."""
    busy = m.decode_gpu_s(generated) + m.forward_gpu_s(prompt)  # GPU-seconds of work, spread over the GPUs
    start = starts * (m.load_s() + m.a.engine_start_s)  # wall seconds, every GPU held
    gpu_h = (busy + start * gpus) / 3600
    detail = (
        f"{_m(generated)} generated tokens at ~{m.decode_rate:,.0f}/s per GPU ({m.rate_from}) + prefill of "
        f"{_m(prompt)} + {starts} engine start(s)"
    )
    return Work(stage, what, gpu_h, (busy / gpus + start) / 3600, gpus, detail, elsewhere)


def forward(stage: str, what: str, m: Model, tokens: float, gpus: int = 1, loads: int = 1) -> Work:
    """Forward passes over `tokens` tokens in transformers; over several GPUs (device_map "auto") the
    layers run one GPU at a time, so every GPU is held for one GPU's time."""
    wall = m.forward_gpu_s(tokens) + loads * m.load_s()
    return Work(
        stage,
        what,
        wall * gpus / 3600,
        wall / 3600,
        gpus,
        f"{_m(tokens)} tokens x 2 x {m.params / 1e9:.2f}B params at {m.a.forward_mfu:.0%} of "
        f"{m.peak / 1e12:,.0f} TFLOP/s" + (f", one GPU at a time of {gpus}" if gpus > 1 else ""),
    )


def training(stage: str, what: str, m: Model, tokens_per_run: float, runs: int, gpus: int) -> Work:
    busy = 6 * m.params * tokens_per_run * runs / (m.peak * m.a.train_mfu)  # GPU-seconds over all the GPUs
    fixed = runs * (m.a.train_run_s + 2 * m.load_s())  # wall seconds: launch, load the base, save the result
    return Work(
        stage,
        what,
        (busy + fixed * gpus) / 3600,
        (busy / gpus + fixed) / 3600,
        gpus,
        f"{runs} run(s) x {_m(tokens_per_run)} tokens x 6 x {m.params / 1e9:.2f}B params at "
        f"{m.a.train_mfu:.0%} MFU + {m.a.train_run_s:g} s launch and weights read/written per run",
    )


# --- what the params ask for -----------------------------------------------------------------------


def split_rows(params: Params, split: str) -> int:
    d = params.datasets[split]
    known = None if d.local_path else DATASET_ROWS.get((d.hub_id, d.split))
    if d.limit is not None:
        return min(d.limit, known) if known else d.limit
    if known is None:
        raise NotEstimated(
            f"the size of dataset split '{split}' ({d.hub_id}) is not known here; set its limit"
        )
    return known


def sampling_gpus(params: Params, backend: str) -> int:
    """GPUs one sampling/evaluation engine spreads over (all replicas of a managed server)."""
    if backend == "vllm":
        return params.vllm.tensor_parallel_size * params.vllm.data_parallel_size
    if backend == "openai":
        e = params.endpoint
        if e.serve is not None:
            return e.serve.replicas * e.serve.tensor_parallel_size * e.serve.data_parallel_size
        return len(e.base_urls) * params.hardware.gpus_per_node  # each URL a node's server on all its GPUs
    return 1


def oracle_gpus(params: Params) -> tuple[int | None, bool]:
    """(GPUs the Oracle runs on, whether they are elsewhere)."""
    sv = params.oracle.serve
    if sv is not None:
        return sv.replicas * sv.tensor_parallel_size * sv.data_parallel_size, False
    return params.hardware.gpu_hours.oracle_gpus, True


@dataclass(frozen=True)
class Sizes:
    problems: int
    kept: int
    question: int
    trace: int  # a sampled trace
    kept_trace: int  # a trace in the streams (bounded by rft.max_trace_tokens)
    answer: int  # a benchmark answer


def sizes(params: Params) -> Sizes:
    a, r = params.hardware.gpu_hours, params.rft
    n = split_rows(params, "train")
    trace = min(a.mean_trace_tokens, params.sampling.max_new_tokens)
    return Sizes(
        n,
        round(n * a.kept_share),
        a.mean_question_tokens,
        trace,
        min(trace, r.max_trace_tokens or trace),
        min(a.mean_eval_tokens, params.eval.max_new_tokens),
    )


def oracle_requests(params: Params, s: Sizes) -> dict[str, dict[str, float]]:
    """Per stage, the Oracle's requests: {stage: {"requests", "prompt", "answer"}} (tokens summed).
    Upper bounds where results decide: every kept trace is taken to need a style-aligned rewrite;
    requests repeated across streams (the drift dial's f = 0 and 1, the selected stream) come from
    the cache and are not counted."""
    from paradox.oracle_budget import PLACEHOLDER, load_templates

    o = params.oracle
    templates = load_templates(params)
    fills = {
        "question": s.question,
        "trace": s.kept_trace,
        "steps": s.kept_trace,
        "original": s.kept_trace,
        "rewrite": s.kept_trace,
    }

    def prompt(kind: str) -> float:
        text = templates[kind]
        own = len(PLACEHOLDER.sub("", text).encode()) * PROSE_TOKENS_PER_BYTE + o.chat_template_tokens
        return own + sum(fills.get(name, 2) for name in PLACEHOLDER.findall(text))

    def answer(kind: str) -> float:
        if kind == "retention_judge":
            return JUDGE_ANSWER_TOKENS
        return min(o.max_tokens, ORACLE_ANSWER_SHARE[kind] * s.kept_trace)

    fractions = [f for f in params.drift.fractions if 0 < f < 1]
    judged = [x for x in params.train.streams if x != "slm_rft"] + [
        drift_stream(f) for f in params.drift.fractions if f < 1
    ]  # f = 1 is oracle_refined's pairs
    per_stage = {
        "02_oracle_refine": {"refine": 1, "synthesize": 1},
        # locate: the Oracle's prompt, unless a PRM locates alone (oracle.locator prm, no comparison)
        "03_style_align": {
            "locate": int(o.locator == "oracle" or o.compare_locators),
            "style_align": 1,
            "drift": len(fractions),
        },
        "07_mechanism": {"retention_judge": len(judged)},
    }
    out = {}
    for stage, kinds in per_stage.items():
        n = {k: c * s.kept for k, c in kinds.items() if c}
        out[stage] = {
            "requests": sum(n.values()),
            "prompt": sum(c * prompt(k) for k, c in n.items()),
            "answer": sum(c * answer(k) for k, c in n.items()),
        }
    return out


def _reward_works(params: Params, stage: str, streams: int, tokens_each: float) -> list[Work]:
    out = []
    for spec in (params.reward, *params.reward.cross_check):
        if spec.backend == "toy" or spec.name_or_path is None:
            continue
        tokens = streams * tokens_each
        what = f"reward {spec.name_or_path} ({spec.backend})"
        try:
            m = Model(params, spec.name_or_path, spec.dtype)
        except NotEstimated as err:
            out.append(Work(stage, what, None, None, 0, str(err)))
            continue
        if spec.backend == "vllm":  # the pooling runner: prefill only, one engine
            work = m.forward_gpu_s(tokens)
            start = m.load_s() + m.a.engine_start_s
            tp = params.vllm.tensor_parallel_size
            out.append(
                Work(
                    stage,
                    what,
                    (work + start * tp) / 3600,
                    (work / tp + start) / 3600,
                    tp,
                    f"{_m(tokens)} tokens scored (vLLM pooling) + 1 engine start",
                )
            )
        elif (
            spec.backend == "vllm_server" and spec.serve is not None
        ):  # managed pooling servers, all GPUs busy
            sv = spec.serve
            gpus = sv.replicas * sv.data_parallel_size * sv.tensor_parallel_size
            work = m.forward_gpu_s(tokens)
            start = m.load_s() + m.a.engine_start_s
            out.append(
                Work(
                    stage,
                    what,
                    (work + start * gpus) / 3600,
                    (work / gpus + start) / 3600,
                    gpus,
                    f"{_m(tokens)} tokens scored (vLLM pooling servers, {gpus} GPU(s) at once) "
                    "+ 1 server start",
                )
            )
        elif spec.backend == "vllm_server":  # servers you run elsewhere
            out.append(Work(stage, what, None, None, 0, "servers you run (reward.base_url): not estimated"))
        else:
            # device_map "auto" balances any model over every GPU of the node (reward_models.HFReward)
            out.append(forward(stage, what, m, tokens, params.hardware.gpus_per_node))
    return out


def _prm_work(params: Params, s: Sizes) -> list[Work]:
    """Notebook 03's PRM (`oracle.prm`, as the locator or beside it): one forward pass per kept trace,
    a chat of the question and the trace (+ the template, bounded by oracle.chat_template_tokens)."""
    from paradox.gpu_memory import prm_runs

    o = params.oracle
    if not prm_runs(params):
        return []
    assert o.prm is not None
    stage, what = "03_style_align", f"PRM {o.prm} ({o.prm_backend}), locating"
    tokens = s.kept * (s.question + s.kept_trace + o.chat_template_tokens)
    try:
        m = Model(params, o.prm, o.prm_dtype)
    except NotEstimated as err:
        return [Work(stage, what, None, None, 0, str(err))]
    if o.prm_backend == "vllm":  # the pooling runner: prefill only, one engine
        work, start, tp = (
            m.forward_gpu_s(tokens),
            m.load_s() + m.a.engine_start_s,
            params.vllm.tensor_parallel_size,
        )
        detail = f"{_m(tokens)} tokens scored (vLLM pooling) + 1 engine start"
        return [Work(stage, what, (work + start * tp) / 3600, (work / tp + start) / 3600, tp, detail)]
    return [forward(stage, what, m, tokens, params.hardware.gpus_per_node)]


def estimate(params: Params) -> list[Work]:
    """Every stage's work on a real-world profile (raises NotEstimated when the params cannot say)."""
    p, s = params, sizes(params)
    slm = Model(p, p.slm.name_or_path, p.slm.dtype)
    runs = training_runs(p)
    streams = all_streams(p)
    seq = s.question + s.kept_trace  # one training / scoring sequence
    works: list[Work] = []

    # 01: k samples per problem.
    g = sampling_gpus(p, p.sampling.backend)
    works.append(
        generation(
            "01_data",
            f"sampling {p.slm.name_or_path}",
            slm,
            g,
            s.problems * p.sampling.k * s.trace,
            s.problems * s.question,
            1,
        )
    )

    # 02, 03, 07: the Oracle's requests; rewards; perplexity.
    requests = oracle_requests(p, s) if p.oracle.backend == "openai" else {}
    n_oracle, elsewhere = oracle_gpus(p)
    for stage, r in requests.items():
        if not r["requests"]:
            continue
        what = (
            f"Oracle {p.oracle.model}: {r['requests']:,.0f} requests ({_m(r['prompt'])} prompt, "
            f"{_m(r['answer'])} answer tokens)"
        )
        try:
            om = Model(p, p.oracle.model or "", "bfloat16")
        except NotEstimated as err:
            works.append(Work(stage, what, None, None, 0, f"{err} (a hosted API bills these tokens)"))
            continue
        if n_oracle is None:
            gpu_h = (om.decode_gpu_s(r["answer"]) + om.forward_gpu_s(r["prompt"])) / 3600
            works.append(
                Work(
                    stage,
                    what,
                    gpu_h,
                    None,
                    0,
                    f"{om.params / 1e9:.0f}B at ~{om.decode_rate:,.0f} "
                    "generated tokens/s per GPU; set hardware.gpu_hours.oracle_gpus for its wall time",
                    elsewhere=True,
                )
            )
        else:
            works.append(
                generation(
                    stage,
                    what,
                    om,
                    n_oracle,
                    r["answer"],
                    r["prompt"],
                    0 if elsewhere else 1,
                    elsewhere=elsewhere,
                )
            )
    works += _reward_works(p, "02_oracle_refine", 4 * s.kept, seq)
    works += _prm_work(p, s)
    works += _reward_works(p, "03_style_align", (1 + len(p.drift.fractions)) * s.kept, seq)
    candidates = len(p.selection.candidates) if p.selection.enabled else 0
    works.append(
        forward("03_style_align", f"perplexity {p.slm.name_or_path}", slm, (2 + candidates) * s.kept * seq)
    )

    # 04: every run over the kept problems.
    t = p.train
    works.append(
        training(
            "04_train",
            f"training {p.slm.name_or_path}",
            slm,
            s.kept * t.epochs * seq,
            len(runs),
            t.num_processes,
        )
    )

    # 05: every model on every split, the learning-curve checkpoints on theirs.
    e = p.eval
    rows = sum(split_rows(p, x) for x in e.splits)
    lc = p.learning_curve
    ckpts = sum(lc.checkpoints for r in runs if keeps_checkpoints(p, r))
    lc_rows = sum(split_rows(p, x) for x in lc.splits) if ckpts else 0
    models = len(runs) + 1
    generated = (models * rows + ckpts * lc_rows) * e.k * s.answer
    works.append(
        generation(
            "05_eval",
            f"evaluation: {models} models" + (f" + {ckpts} checkpoints" if ckpts else ""),
            slm,
            sampling_gpus(p, p.eval_backend),
            generated,
            (models * rows + ckpts * lc_rows) * s.question,
            models + ckpts,
        )
    )
    works.append(forward("05_eval", f"perplexity {p.slm.name_or_path}", slm, len(streams) * s.kept * seq))
    works.append(
        forward("07_mechanism", f"perplexity {p.slm.name_or_path}", slm, len(streams) * s.kept * seq)
    )
    order = {
        n: i
        for i, n in enumerate(
            ("01_data", "02_oracle_refine", "03_style_align", "04_train", "05_eval", "07_mechanism")
        )
    }
    return sorted(works, key=lambda w: order[w.stage])


def assumptions(params: Params) -> str:
    h = params.hardware
    a, g = h.gpu_hours, GPUS[h.gpu or "h100"]
    s = sizes(params)
    return (
        f"estimates, not measurements; assume {h.gpu} GPUs at {a.peak_tflops or g.peak_tflops:,.0f} dense bf16 "
        f"TFLOP/s, {a.train_mfu:.0%} MFU in training and {a.forward_mfu:.0%} in forward passes, the decode rates of "
        f"paradox.gpu_hours.GPUS; {s.problems:,} problems of which {a.kept_share:.0%} = {s.kept:,} kept; a question "
        f"~{s.question:,} tokens, a sampled trace ~{s.trace:,}, a stream's trace ~{s.kept_trace:,}, a benchmark "
        f"answer ~{s.answer:,}; weights read at {a.load_gib_per_s:g} GiB/s, {a.engine_start_s:g} s per vLLM "
        "start; every kept trace rewritten (an upper bound); all under hardware.gpu_hours"
    )


def check(params: Params) -> list[str]:
    """Lines for `make plan`: each stage's work, the stage totals and the whole run's."""
    h = params.hardware
    if params.world == "toy":
        return ["GPU hours: the toy world runs on a CPU"]
    if h.gpu is None:
        return ["GPU hours: not estimated (hardware.gpu is not set)"]
    try:
        works = estimate(params)
        lines = [f"GPU hours, estimated ({assumptions(params)}):"]
    except NotEstimated as err:
        return [f"GPU hours: not estimated ({err})"]
    lines += [w.line() for w in works]
    lines += ["", f"  {'stage':<16} {'GPU-h':>8} {'Oracle GPU-h':>12} {'wall h':>7}  GPUs"]
    for stage in dict.fromkeys(w.stage for w in works):
        ws = [w for w in works if w.stage == stage]
        lines.append(
            f"  {stage:<16} {_sum(ws, False):>8} {_sum(ws, True):>12} {_wall(ws):>7}  "
            + "+".join(dict.fromkeys(f"{w.gpus}{'*' if w.elsewhere else ''}" for w in ws))
        )
    lines.append(
        f"  {'total':<16} {_sum(works, False):>8} {_sum(works, True):>12} {_wall(works):>7}  "
        f"({h.gpus_per_node} x {h.gpu} per node"
        + ("; *: the Oracle's own GPUs, elsewhere)" if any(w.elsewhere for w in works) else ")")
    )
    if any(w.gpu_h is None or w.wall_h is None for w in works):
        lines.append("  (a total leaves out what is not estimated above)")
    return lines


def _sum(works: list[Work], elsewhere: bool) -> str:
    ws = [w.gpu_h for w in works if w.elsewhere == elsewhere and w.gpu_h is not None]
    return f"{sum(ws):.2f}" if ws else "-"


def _wall(works: list[Work]) -> str:
    ws = [w.wall_h for w in works if w.wall_h is not None]
    return f"{sum(ws):.2f}" if ws else "-"
