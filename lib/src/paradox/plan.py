"""`make plan PROFILE=...`: every stage of a profile with its models, datasets, sizes and outputs,
computed from the params alone. Nothing is loaded, downloaded or run, so it works on a laptop for
a profile meant for eight GPUs, and a bad profile fails here in a second with the params error.

Sizes that depend on results (how many problems survive rejection sampling) are upper bounds and
say so. Two checks follow the stages (docs/budgets.md): every Oracle request of the profile fits
the Oracle's context (`paradox.oracle_budget`), and every GPU stage's estimated peak memory fits
the profile's GPUs (`paradox.gpu_memory`). A profile that fails either exits non-zero with a
message naming the key to change, before anything runs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from paradox import gpu_hours, gpu_memory, oracle_budget, prm
from paradox.params import Params, ParamsError, RewardModel, load_params
from paradox.paths import RunPaths, project_root
from paradox.streams import all_streams, drift_stream
from paradox.training.runs import training_runs


@dataclass
class Stage:
    notebook: str
    does: str
    models: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def _dataset(params: Params, split: str) -> str:
    if params.world == "toy":
        return f"toy '{split}' split (runs/{params.profile}/world/{split}.jsonl)"
    d = params.datasets[split]
    where = (
        f"local {d.local_path}"
        if d.local_path
        else f"hub {d.hub_id}" + (f"@{d.revision}" if d.revision else "")
    )
    cfg = f", config {d.config}" if d.config else ""
    limit = f", sample of {d.limit:,}" if d.limit else ""
    return f"{split}: {where} (split {d.split}{cfg}{limit})"


def _n_train(params: Params) -> tuple[int | None, str]:
    if params.world == "toy":
        assert params.toy is not None
        return params.toy.problems.n_train, ""
    limit = params.datasets["train"].limit
    return limit, "" if limit else "all rows of"


def _reward(r: RewardModel) -> str:
    if r.backend == "toy":
        return "toy rubric reward (paradox.toy.reward)"
    if r.backend == "vllm_server":
        sv = r.serve
        where = (
            f"managed `vllm serve --runner pooling` ({sv.replicas} server(s) x data parallel "
            f"{sv.data_parallel_size} x tensor parallel {sv.tensor_parallel_size}, max_model_len "
            f"{sv.max_model_len or r.max_length:,})"
            if sv is not None
            else f"vLLM pooling servers at {', '.join(r.base_urls)}"
        )
        return (
            f"{r.name_or_path} via {where} ({r.head}, {r.dtype}, {r.batch_size} chats per request, "
            f"{r.concurrency} requests in flight per server)"
        )
    return f"{r.name_or_path} via {r.backend} ({r.head}, {r.dtype}, batch {r.batch_size})"


def _slm(params: Params) -> str:
    if params.slm.name_or_path == "toy":
        return "the toy SLM built by 00 (a small Llama trained from scratch)"
    s = params.slm
    return f"{s.name_or_path} ({s.dtype}{', chat template' if s.use_chat_template else ', raw prompt'})"


def _engine(params: Params, backend: str) -> str:
    if backend == "hf":
        return "transformers generate"
    if backend == "openai":
        e = params.endpoint
        if e.serve is None:
            return f"your OpenAI-compatible servers at {', '.join(e.base_urls)}"
        sv = e.serve
        return (
            f"managed vllm serve ({sv.replicas} server(s) x data parallel {sv.data_parallel_size} x tensor "
            f"parallel {sv.tensor_parallel_size})"
        )
    v = params.vllm
    return f"vLLM (tensor parallel {v.tensor_parallel_size}, data parallel {v.data_parallel_size})"


def _gpus(params: Params, backend: str) -> str:
    """How many GPUs a sampling/evaluation engine spreads over, and how."""
    if backend == "hf":
        return "GPUs: 1 (transformers generate, one process)"
    if backend == "openai" and params.endpoint.serve is None:
        return f"GPUs: those of your servers ({len(params.endpoint.base_urls)} endpoint(s))"
    if backend == "openai":
        sv = params.endpoint.serve
        assert sv is not None
        engines, tp = sv.replicas * sv.data_parallel_size, sv.tensor_parallel_size
    else:
        engines, tp = 1, params.vllm.tensor_parallel_size
    return (
        f"GPUs: {engines * tp} of the node's {params.hardware.gpus_per_node} ({engines} engine(s) of {tp} GPU(s) "
        "each; memory per GPU below)"
    )


def _on_gpus(params: Params) -> bool:
    """A real-world profile that declares its GPUs (`hardware`): the plan says which GPUs each stage uses."""
    return params.world == "real" and (
        params.hardware.gpu_memory_gib is not None or params.hardware.gpu is not None
    )


def _oracle_gpus(params: Params) -> list[str]:
    o = params.oracle
    if o.backend != "openai" or not _on_gpus(params):
        return []
    if o.serve is not None:
        n, _ = gpu_hours.oracle_gpus(params)
        return [
            f"Oracle GPUs: {n} of this node's {params.hardware.gpus_per_node}, served by this stage and stopped when "
            "it is done (the GPU lock keeps the SLM's servers off them meanwhile)"
        ]
    n = params.hardware.gpu_hours.oracle_gpus
    return [
        f"Oracle GPUs: the Oracle's own ({n} GPUs, hardware.gpu_hours.oracle_gpus)"
        if n
        else "Oracle GPUs: the Oracle's own, elsewhere"
    ]


def _oracle(params: Params) -> str:
    o = params.oracle
    if o.backend == "toy":
        return "toy rule Oracle (paradox.toy.oracle)"
    where = (
        f"managed vllm serve (data parallel {o.serve.data_parallel_size}, tensor parallel "
        f"{o.serve.tensor_parallel_size})"
        if o.serve
        else ", ".join(o.base_urls)
    )
    return (
        f"{o.model} at {where} (OpenAI-compatible; key from ${o.api_key_env}; "
        f"{o.concurrency} requests in flight; cached under runs/{params.profile}/cache/oracle)"
    )


def _prm(params: Params) -> str:
    o = params.oracle
    if o.backend == "toy":
        rate = params.toy.prm_standin_error_rate if params.toy else 0.1
        return f"the toy PRM stand-in (paradox.toy.prm: the exact step checker, its answer replaced at rate {rate:.0%})"
    runner = "transformers, the checkpoint's own code" if o.prm_backend == "hf" else "vLLM's pooling runner"
    return (
        f"PRM {o.prm} via {runner} ({o.prm_dtype}; the first step scoring below {o.prm_threshold:g} at "
        f"its {o.prm_step_separator!r} token; at most {o.prm_max_length:,} tokens per chat)"
    )


def _locators(params: Params) -> list[str]:
    """The error locator of 03 (docs/prm-locator.md), and the one run beside it for the agreement table."""
    o = params.oracle
    own = (
        "the toy Oracle's rule (the exact step checker)"
        if o.backend == "toy"
        else f"the Oracle's locate prompt ({o.model})"
    )
    has_prm = o.backend == "toy" or o.prm is not None
    chosen, other = (own, _prm(params) if has_prm else None) if o.locator == "oracle" else (_prm(params), own)
    lines = [f"locator (oracle.locator: {o.locator}): {chosen}"]
    if other and o.compare_locators:
        lines.append(f"beside it, for the locator agreement table: {other}")
    return lines


def _locator_sizes(params: Params) -> list[str]:
    o = params.oracle
    if o.backend == "toy":
        return []
    asks = o.locator == "oracle" or o.compare_locators
    lines = [
        "locate requests to the Oracle: 1 per kept problem"
        if asks
        else "locate requests to the Oracle: none (a PRM locates alone: oracle.compare_locators false)"
    ]
    if gpu_memory.prm_runs(params):
        lines.append(
            "PRM: 1 forward pass per kept problem (no generation), batched by "
            + (f"{o.prm_token_budget:,} padded tokens" if o.prm_backend == "hf" else "vLLM")
            + "; its GPU hours and memory below"
        )
    return lines


def stages(params: Params) -> list[Stage]:
    p, t, e = params, params.train, params.eval
    paths = RunPaths(p.profile)
    root = f"runs/{p.profile}"
    n, qual = _n_train(p)
    n_txt = f"{qual} {n:,}".strip() if n else "all"
    runs = training_runs(p)
    streams = all_streams(p)
    per_device, accum = t.split_batch(t.batch_size)
    out: list[Stage] = []
    if p.world == "toy":
        assert p.toy is not None
        tp, ts = p.toy.problems, p.toy.slm
        out.append(
            Stage(
                "00_toy_world",
                "build the toy world and pretrain its SLM on native-style solutions",
                models=[f"toy Llama: hidden {ts.hidden_size}, {ts.n_layers} layers, vocab {ts.vocab_size}"],
                sizes=[
                    f"problems: train {tp.n_train}, test {tp.n_test}, hard {tp.n_hard}",
                    f"pretraining: {ts.pretrain_problems:,} solutions x {ts.pretrain_epochs:g} epochs",
                ],
                outputs=[f"{paths.world}/", f"{paths.slm_cache}/<key>/"],
            )
        )
    k = p.sampling
    out.append(
        Stage(
            "01_data",
            "rejection sampling: k samples per training problem, keep one correct trace",
            models=[f"{_slm(p)} on {_engine(p, k.backend)}"],
            data=[_dataset(p, "train")],
            sizes=[
                f"problems: {n_txt}",
                *([_gpus(p, k.backend)] if _on_gpus(p) else []),
                f"generations: {k.k} per problem"
                + (f" = {n * k.k:,}" if n else "")
                + f", at most {k.max_new_tokens:,} new tokens each",
                "kept problems: those with a correct sample (known only after sampling"
                + ("; the paper kept ~34K of 100K)" if p.world == "real" else ")"),
            ],
            outputs=[
                f"{paths.data}/samples/",
                f"{paths.data}/kept_problems.jsonl",
                f"{paths.streams}/slm_rft.jsonl",
                f"{paths.streams}/ground_truth.jsonl",
            ],
        )
    )
    out.append(
        Stage(
            "02_oracle_refine",
            "Oracle-Refined and Oracle-Synthesized streams; reward of every stream",
            models=[
                f"Oracle: {_oracle(p)}",
                f"reward: {_reward(p.reward)}",
                *[f"reward cross-check: {_reward(r)}" for r in p.reward.cross_check],
            ],
            sizes=[
                (
                    "Oracle requests: 2 per kept problem (refine, synthesize), "
                    + (
                        f"at most {p.oracle.max_tokens:,} tokens each"
                        if p.oracle.context_length is None
                        else "each fitted to the Oracle's context (budgets below)"
                    )
                )
                if p.oracle.backend == "openai"
                else "Oracle: 2 rule calls per kept problem",
                *_oracle_gpus(p),
                f"reward scores: 4 streams x kept problems x {1 + len(p.reward.cross_check)} model(s)",
            ],
            outputs=[
                f"{paths.streams}/oracle_refined.jsonl",
                f"{paths.streams}/oracle_synthesized.jsonl",
                f"{paths.rewards}/<stream>.jsonl",
            ],
        )
    )
    sa = p.style_align
    out.append(
        Stage(
            "03_style_align",
            "Style-Aligned Refinement (locate the wrong step, fix it in the SLM's wording, "
            "style check); drift dial; compatibility-aware selection",
            models=[
                f"Oracle: {_oracle(p)}",
                *_locators(p),
                f"perplexity: {_slm(p)}",
            ],
            sizes=[
                *_oracle_gpus(p),
                *_locator_sizes(p),
                f"style check: PPL ratio <= {sa.max_ppl_ratio}, edit ratio <= {sa.max_edit_ratio}",
                f"drift dial fractions: {list(p.drift.fractions) or 'none'}",
                f"selection: {'on, lambda ' + str(p.selection.lam) if p.selection.enabled else 'off'}",
            ],
            outputs=[
                f"{paths.streams}/style_aligned.jsonl",
                f"{paths.data}/style_align_decisions.jsonl",
                f"{paths.data}/locator_answers.jsonl",
                f"{paths.figures}/locator_agreement.*",
                *([f"{paths.streams}/compat_selected.jsonl"] if p.selection.enabled else []),
                *[f"{paths.streams}/{drift_stream(f)}.jsonl" for f in p.drift.fractions],
            ],
        )
    )
    launcher = (
        "inline TRL SFTTrainer"
        if t.launcher == "inline"
        else f"accelerate launch ({t.accelerate_config}, {t.num_processes} processes)"
    )
    n_main = sum(r.purpose == "main" for r in runs)
    out.append(
        Stage(
            "04_train",
            "fine-tune the SLM on every stream with SFT (nll) and DFT",
            models=[
                f"base: {_slm(p)}",
                f"trainer: {launcher}; "
                + (f"LoRA r={t.lora.r}" if t.lora.enabled else "full fine-tuning")
                + (", bf16" if t.bf16 else ""),
            ],
            sizes=[
                *(
                    [
                        f"GPUs: {t.num_processes} ({t.num_processes // t.num_machines} per node x {t.num_machines} "
                        "node(s), one process each)"
                    ]
                    if t.launcher == "accelerate" and _on_gpus(p)
                    else []
                ),
                f"runs: {len(runs)} ({n_main} main = {len(streams)} streams x losses x "
                f"{len(t.seeds)} seed(s); {len(runs) - n_main} grid)",
                f"batch {t.batch_size} = {per_device} per device x {t.num_processes} process(es) x "
                f"{accum} accumulation; lr {t.learning_rate:g}; {t.epochs:g} epoch(s); max length "
                f"{t.max_length:,}",
                "steps per run: ceil(epochs x kept problems / batch)"
                + (f" <= {-(-int(t.epochs * n) // t.batch_size):,}" if n else ""),
            ],
            outputs=[f"{paths.models}/<stream>-<loss>-s<seed>/", f"{paths.models}/runs.csv"],
        )
    )
    n_eval_models = len(runs) + 1  # + the base SLM
    out.append(
        Stage(
            "05_eval",
            "Avg@k of every fine-tuned model (and the base SLM); perplexity of every stream",
            models=[f"{n_eval_models} models on {_engine(p, p.eval_backend)}"],
            data=[_dataset(p, s) for s in e.splits],
            sizes=[
                *([_gpus(p, p.eval_backend)] if _on_gpus(p) else []),
                f"k = {e.k} samples per problem at temperature {e.temperature:g}, at most "
                f"{e.max_new_tokens:,} new tokens",
                f"learning-curve checkpoints: {p.learning_curve.checkpoints} per run of "
                f"{list(p.learning_curve.streams)} ({list(p.learning_curve.losses)})",
            ],
            outputs=[
                f"{paths.eval}/accuracy.csv",
                f"{paths.eval}/perplexity.csv",
                f"{paths.eval}/learning_curves.csv",
                f"{paths.eval}/graded/",
            ],
        )
    )
    out.append(
        Stage(
            "06_figures",
            "Table 1, accuracy by split, loss curves (each with a sidecar)",
            outputs=[f"{paths.figures}/table1.*", f"{paths.figures}/*.png + *.json sidecars"],
        )
    )
    out.append(
        Stage(
            "07_mechanism",
            "segmented perplexity, token attribution, retention, learning curves, "
            "drift dial, selection, correlations, REPORT.md",
            models=[
                f"perplexity: {_slm(p)}",
                "retention: exact toy atoms"
                if p.world == "toy"
                else f"retention judge: {_oracle(p)} with {p.analysis.retention_prompt}",
            ],
            outputs=[f"{paths.figures}/mechanism_table.*", f"{root}/REPORT.md"],
        )
    )
    return out


def precision_errors(params: Params) -> list[str]:
    """Full fine-tuning inline (TRL in the notebook) trains the weights in the dtype they were loaded
    in: with a bf16/fp16 SLM, AdamW's weights and state are half precision too, and steps of a few
    1e-5 fall below their resolution and are lost (nothing fails; the models just barely move)."""
    t, dtype = params.train, params.slm.dtype
    if params.world != "real" or t.launcher != "inline" or t.lora.enabled or dtype == "float32":
        return []
    return [
        f"train.launcher 'inline' would fine-tune the {dtype} weights as loaded (slm.dtype): AdamW's steps at "
        f"lr {t.learning_rate:g} fall below {dtype}'s resolution and are lost; use train.launcher 'accelerate' "
        "(FSDP with mixed precision keeps float32 master weights, also on one GPU), slm.dtype float32, or "
        "train.lora"
    ]


def checks(params: Params) -> tuple[list[str], list[str]]:
    """(lines, errors) of the Oracle-budget, GPU-memory, training-precision and PRM-file checks."""
    budget_lines, budget_errors = oracle_budget.check(params)
    memory_lines, memory_errors = gpu_memory.check(params)
    prm_lines, prm_errors = prm.check(params)
    return (
        [*budget_lines, "", *memory_lines, *(["", *prm_lines] if prm_lines else [])],
        [*budget_errors, *memory_errors, *precision_errors(params), *prm_errors],
    )


def render(params: Params) -> str:
    root = f"{project_root()}/"
    lines = [
        f"profile {params.profile}: {params.description}",
        f"params hash {params.hash()}; world {params.world}; seed {params.seed}",
        "",
    ]
    for s in stages(params):
        lines.append(f"{s.notebook}: {s.does}")
        for label, items in (("model", s.models), ("data", s.data), ("size", s.sizes), ("writes", s.outputs)):
            lines += [f"    {label:<7}{item.replace(root, '')}" for item in items]  # paths from the root
        lines.append("")
    check_lines, errors = checks(params)
    lines += [*check_lines, "", *gpu_hours.check(params), ""]
    lines.append(
        f"Nothing was run. `make paper PROFILE={params.profile}` runs these stages in order."
        if not errors
        else f"Nothing was run. {len(errors)} check(s) failed: this profile cannot run as set."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m paradox.plan [--check] PROFILE`: the plan (with --check: only the failed checks,
    silent when every check passes - for `make paper` to run before any stage)."""
    args = sys.argv[1:] if argv is None else argv
    only_check = args[:1] == ["--check"]
    args = args[1:] if only_check else args
    if len(args) != 1:
        print("usage: python -m paradox.plan [--check] PROFILE", file=sys.stderr)
        return 2
    try:
        params = load_params(args[0])
        if not only_check:
            print(render(params))
        _, errors = checks(params)
    except (ParamsError, oracle_budget.BudgetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for e in errors:
        print(f"error: profile {params.profile}: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
