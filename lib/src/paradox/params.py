"""Params: `params/base.yaml` layered with one profile file, validated by a strict schema.

Every mistake is reported before any work starts, naming the file that set the offending key
(or the profile file, for a key that is missing), so a typo in `toy.yaml` never silently falls
back to a default.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from paradox.io import stable_hash
from paradox.paths import display, resolve
from paradox.streams import STREAMS

PARAMS_DIR = Path("params")  # relative to the project root (paradox.paths), wherever the kernel starts
BASE_FILE = "base.yaml"


class ParamsError(ValueError):
    """A params file is missing, unparseable or fails the schema."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToyProblems(Strict):
    n_train: int = Field(gt=0)
    n_test: int = Field(gt=0)
    n_hard: int = Field(gt=0)
    ops: tuple[int, int]  # inclusive range of operations per problem
    max_operand: int = Field(gt=1)
    max_value: int = Field(gt=2)  # every intermediate value stays in [1, max_value]
    hard_ops: tuple[int, int]
    hard_max_operand: int = Field(gt=1)
    hard_max_value: int = Field(gt=2)


class ToySLM(Strict):
    hidden_size: int = Field(gt=0)
    n_layers: int = Field(gt=0)
    n_heads: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    vocab_size: int = Field(gt=32)
    max_position: int = Field(gt=0)
    pretrain_problems: int = Field(gt=0)
    pretrain_epochs: float = Field(gt=0)
    pretrain_lr: float = Field(gt=0)
    pretrain_batch_size: int = Field(gt=0)
    # Share of pretraining solutions written in the Oracle's / dataset's notation: a real SLM
    # has seen some LaTeX and some GSM8K-style text, so those notations are rare, not unseen.
    foreign_style_fraction: float = Field(ge=0, le=1)


class ToyWorld(Strict):
    problems: ToyProblems
    slm: ToySLM


class SLM(Strict):
    # "toy" means the SLM that notebook 00 builds; anything else is a hub id or a local path.
    name_or_path: str
    gguf_file: str | None = None
    revision: str | None = None
    use_chat_template: bool = False
    # The user turn (chat template) or the whole prompt (raw): "{question}" is replaced by the
    # question (other braces, as in \boxed{}, stay as they are). A raw prompt ends on a newline:
    # completions are stored stripped and appended to it, so they must start on a token boundary.
    prompt_template: str
    # Generation stops at the tokenizer's EOS, at the eos ids of the model's generation_config.json,
    # at these special tokens (each one token of the vocabulary, e.g. "<|im_end|>" ending a chat
    # turn) and at these strings (e.g. "Question:" where a base model starts a new problem). The
    # returned text excludes them. See docs/model-families.md.
    stop_tokens: tuple[str, ...] = ()
    stop_strings: tuple[str, ...] = ()
    # The token that ends every training completion: "eos" (the tokenizer's EOS) or one of
    # stop_tokens, so that a fine-tuned model stops where generation stops.
    completion_end: str = "eos"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    # Field validators (fields are validated in order), so an error names the offending key.
    @field_validator("prompt_template")
    @classmethod
    def _template(cls, v: str, info: ValidationInfo) -> str:
        if v.count("{question}") != 1:
            raise ValueError("must contain {question} exactly once")
        if not info.data.get("use_chat_template") and not v.endswith("\n"):
            raise ValueError(
                "a raw prompt (use_chat_template false) must end with a newline: completions are "
                "stored without leading whitespace and appended to the prompt"
            )
        return v

    @field_validator("stop_tokens", "stop_strings")
    @classmethod
    def _no_empty(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(not t for t in v):
            raise ValueError("an empty entry would stop every completion at once")
        return v

    @field_validator("completion_end")
    @classmethod
    def _end(cls, v: str, info: ValidationInfo) -> str:
        stops = info.data.get("stop_tokens", ())
        if v != "eos" and v not in stops:
            raise ValueError(
                f"must be 'eos' or one of slm.stop_tokens {list(stops)}: a model fine-tuned to end "
                "its completions with it must stop there"
            )
        return v


class VLLMEngine(Strict):
    """vLLM engine settings, used wherever a backend is `vllm` (sampling, evaluation, reward)."""

    tensor_parallel_size: int = Field(1, gt=0)
    data_parallel_size: int = Field(1, gt=0)  # engine replicas, each on tensor_parallel_size GPUs
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_model_len: int | None = Field(None, gt=0)
    enforce_eager: bool = False


GenBackend = Literal["hf", "vllm", "openai"]


class Serve(Strict):
    """A managed `vllm serve` (paradox.serving): the stage that needs the model starts it on
    127.0.0.1 at a free port, waits for it, logs to runs/<profile>/logs/, and stops it when the
    stage ends, fails or is interrupted."""

    replicas: int = Field(1, gt=0)  # servers on this machine, each at its own port (e.g. one per GPU group)
    tensor_parallel_size: int = Field(1, gt=0)
    data_parallel_size: int = Field(1, gt=0)  # vLLM's own data parallelism inside one server
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_model_len: int | None = Field(None, gt=0)
    dtype: str = "auto"
    enforce_eager: bool = False
    extra_args: tuple[str, ...] = ()  # further `vllm serve` flags, verbatim
    # (name, value) pairs added to the servers' environment, e.g. [[CUDA_VISIBLE_DEVICES, "0"]]
    env: tuple[tuple[str, str], ...] = ()
    start_timeout_s: float = Field(1800.0, gt=0)


class Endpoint(Strict):
    """The SLM behind OpenAI-compatible completions endpoints (sampling/eval backend `openai`):
    the servers in `base_urls`, or the managed ones of `serve`."""

    base_urls: tuple[str, ...] = ()  # servers you run (one per node); unused when `serve` is set
    served_model_name: str | None = None  # the name those servers serve (default: slm.name_or_path)
    api_key_env: str = "SLM_API_KEY"  # the NAME of the variable holding the key
    concurrency: int = Field(32, gt=0)  # requests in flight per endpoint
    max_retries: int = Field(6, ge=0)
    timeout_s: float = Field(1800.0, gt=0)
    serve: Serve | None = None

    @model_validator(mode="after")
    def _key_name(self) -> Endpoint:
        if not self.api_key_env.replace("_", "").isalnum() or self.api_key_env.startswith("sk-"):
            raise ValueError(
                "endpoint.api_key_env names an environment variable (e.g. SLM_API_KEY); "
                "never put the key itself in params"
            )
        return self


class Sampling(Strict):
    # hf: transformers generate; vllm: vLLM's offline engine; openai: completions endpoints (`endpoint`)
    backend: GenBackend = "hf"
    k: int = Field(gt=0)
    temperature: float = Field(ge=0)
    top_p: float = Field(gt=0, le=1)
    max_new_tokens: int = Field(gt=0)
    batch_size: int = Field(gt=0)


class RFT(Strict):
    # Which correct trace a solvable problem keeps: the paper does not say, so it is a choice.
    choose: Literal["first", "shortest", "random"] = "first"
    # Light cleaning (paradox.streams.rft): "layout" keeps the SLM's own layout (blank lines, indentation,
    # code) and drops only noise after the conclusion; "lines" is for an SLM that writes one step
    # per line (the toy one): each line stripped, blank lines dropped, cut after the first answer
    # line. true = the world's own: "lines" in a toy world, "layout" in a real one; false = none.
    clean: bool | Literal["layout", "lines"] = True
    # Bounds that make every Oracle request fit the Oracle's context (docs/budgets.md), in the
    # Oracle's tokens (oracle.tokenizer): notebook 01 drops, and counts, a problem whose question is
    # longer (before sampling) or whose kept trace is longer (the larger of the plain trace and its
    # step-tagged form, as the locate and style-align prompts show it). None: no bound.
    max_question_tokens: int | None = Field(None, gt=0)
    max_trace_tokens: int | None = Field(None, gt=0)


class OraclePrompts(Strict):
    """Prompt files (paths from the repository root); each names its placeholders in braces."""

    refine: str = "params/prompts/oracle_refine.txt"
    synthesize: str = "params/prompts/oracle_synthesize.txt"
    locate: str = "params/prompts/oracle_locate_error.txt"
    style_align: str = "params/prompts/style_align.txt"
    drift: str = "params/prompts/oracle_drift.txt"


class AnswerTokens(Strict):
    """Completion tokens for one kind of Oracle request. An answer that rewrites a text (refine: the
    trace; style_align: the steps from the wrong one on; drift: the steps it restyles) needs about as
    many tokens as that text, so both numbers grow with it: a request asks for
    `per_source_token x source tokens + max_tokens` (capped by oracle.max_tokens and by what the
    context leaves), and is not sent when less than `per_source_token x source tokens + min_tokens`
    is left. Applied only when oracle.context_length is set (requests are counted)."""

    max_tokens: int = Field(gt=0)
    min_tokens: int = Field(gt=0)
    per_source_token: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _order(self) -> AnswerTokens:
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens {self.min_tokens} is above max_tokens {self.max_tokens}")
        return self


class OracleAnswers(Strict):
    """Per kind of request (docs/budgets.md): a retention judgement is a line, a refine a trace."""

    refine: AnswerTokens = AnswerTokens(max_tokens=256, min_tokens=32, per_source_token=1.0)
    synthesize: AnswerTokens = AnswerTokens(max_tokens=1536, min_tokens=256)
    locate: AnswerTokens = AnswerTokens(max_tokens=1536, min_tokens=256)  # a critique, then \boxed{index}
    style_align: AnswerTokens = AnswerTokens(max_tokens=128, min_tokens=32, per_source_token=1.0)
    drift: AnswerTokens = AnswerTokens(max_tokens=128, min_tokens=32, per_source_token=1.0)
    retention_judge: AnswerTokens = AnswerTokens(max_tokens=256, min_tokens=16)


class Oracle(Strict):
    backend: Literal["toy", "openai"] = "toy"
    # openai: any OpenAI-compatible endpoint (a hosted API or a `vllm serve`d model); a list of URLs
    # spreads the requests over several servers (one per node), and a run survives one going down.
    base_url: str | tuple[str, ...] | None = None
    model: str | None = None
    # A managed `vllm serve` of `model` (paradox.serving), started by each stage that asks the Oracle
    # and stopped when it ends (e.g. a 7B Oracle on the SLM's GPU, between SLM stages); base_url is
    # then not needed.
    serve: Serve | None = None
    # The NAME of the environment variable holding the API key; the key itself never enters params.
    api_key_env: str = "OPENAI_API_KEY"
    # null = not sent: reasoning models (OpenAI's GPT-5 class) accept only their defaults.
    temperature: float | None = Field(0.0, ge=0)
    top_p: float | None = Field(1.0, gt=0, le=1)
    # The most completion tokens any request asks for (with context_length set, each kind asks for
    # its own `answers` budget, capped by this).
    max_tokens: int = Field(4096, gt=0)
    # The request field carrying max_tokens: OpenAI's reasoning models take max_completion_tokens.
    token_limit_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    seed: int | None = None
    concurrency: int = Field(8, gt=0)  # requests in flight
    max_retries: int = Field(6, ge=0)  # on 429, 5xx, timeouts and dropped connections, with backoff
    timeout_s: float = Field(600.0, gt=0)
    prompts: OraclePrompts = OraclePrompts()
    # Style-Aligned Refinement's error locator: the Oracle with the `locate` prompt, or a PRM.
    locator: Literal["oracle", "prm"] = "oracle"
    prm: str | None = None  # e.g. Qwen/Qwen2.5-Math-PRM-7B (locator: prm)
    prm_threshold: float = Field(0.5, gt=0, lt=1)  # first step whose PRM score is below this is wrong
    # Fitting every request into the Oracle's context (docs/budgets.md). context_length: the served
    # model's context (vLLM's max_model_len); None: requests are not counted (a hosted API with a
    # large context). tokenizer: hub id or local path of the Oracle's tokenizer with its chat template
    # (None: oracle.model), loaded on the first request to count prompts as the server will.
    context_length: int | None = Field(None, gt=0)
    tokenizer: str | None = None
    context_margin: int = Field(16, ge=0)  # tokens of the context never planned for
    # A bound on the tokens the chat template adds around a prompt: `make plan` uses it (nothing is
    # loaded there) and the client checks it against the real template when it loads the tokenizer.
    chat_template_tokens: int = Field(64, ge=0)
    # `make plan` bounds a prompt template's own text by this many tokens per UTF-8 byte: 1.0 is safe
    # for any byte-level BPE tokenizer; a smaller value is an assumption that notebook 01 checks with
    # the real tokenizer before sampling (English prose takes about 0.25 tokens per byte).
    template_tokens_per_byte: float = Field(1.0, gt=0, le=1)
    answers: OracleAnswers = OracleAnswers()

    @property
    def tokenizer_name(self) -> str | None:
        return self.tokenizer or self.model

    @property
    def base_urls(self) -> tuple[str, ...]:
        if self.base_url is None:
            return ()
        return (self.base_url,) if isinstance(self.base_url, str) else self.base_url

    @model_validator(mode="after")
    def _endpoint(self) -> Oracle:
        if self.backend == "openai" and not ((self.base_urls or self.serve) and self.model):
            raise ValueError(
                "oracle.backend 'openai' needs oracle.model and oracle.base_url (or oracle.serve)"
            )
        if self.locator == "prm" and not self.prm:
            raise ValueError("oracle.locator 'prm' needs oracle.prm (a process reward model)")
        if not self.api_key_env.replace("_", "").isalnum() or self.api_key_env.startswith("sk-"):
            raise ValueError(
                "oracle.api_key_env names an environment variable (e.g. OPENAI_API_KEY); "
                "never put the key itself in params"
            )
        return self


class RewardModel(Strict):
    # toy: the toy rubric; hf: transformers in this process (device_map over its GPUs); vllm: vLLM's
    # offline pooling engine in this process; vllm_server: vLLM pooling servers (`vllm serve MODEL
    # --runner pooling`), managed (`serve`) or yours (`base_url`), see paradox.reward_server.
    backend: Literal["toy", "hf", "vllm", "vllm_server"] = "toy"
    name_or_path: str | None = None
    revision: str | None = None
    # seq_cls: one logit per sequence, AutoModelForSequenceClassification (Skywork-Reward class);
    # remote_code: a per-token reward head read at the last token (Qwen2.5-Math-RM-72B): with backend
    # hf the checkpoint's own AutoModel class (trust_remote_code), with vllm / vllm_server vLLM's own
    # implementation.
    head: Literal["seq_cls", "remote_code"] = "seq_cls"
    trust_remote_code: bool = False
    system_prompt: str | None = None  # chat: system (optional), user = question, assistant = trace
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = Field(8, gt=0)  # chats per forward pass (hf), per request (vllm_server)
    max_length: int = Field(4096, gt=0)
    # backend vllm_server only: the servers you run (one per node), "http://host:port" with or without
    # "/v1", one URL or a list (requests are spread over them and fail over), or `serve`: servers the
    # scoring stage starts (on this machine, under the GPU lock) and stops when it is done.
    base_url: str | tuple[str, ...] | None = None
    serve: Serve | None = None
    served_model_name: str | None = None  # the name the servers serve (default: name_or_path)
    api_key_env: str = "REWARD_API_KEY"  # the NAME of the variable holding the servers' key, if any
    concurrency: int = Field(8, gt=0)  # requests in flight per server (each of batch_size chats)
    max_retries: int = Field(6, ge=0)  # on 5xx, timeouts and dropped connections, with backoff
    timeout_s: float = Field(600.0, gt=0)

    @property
    def base_urls(self) -> tuple[str, ...]:
        if self.base_url is None:
            return ()
        return (self.base_url,) if isinstance(self.base_url, str) else self.base_url

    # Field validators (fields are validated in order, backend first), so an error names the key.
    @field_validator("base_url", "serve", "served_model_name")
    @classmethod
    def _served_only(cls, v: Any, info: ValidationInfo) -> Any:
        backend = info.data.get("backend")
        if v is not None and backend != "vllm_server":
            raise ValueError(
                f"is for backend 'vllm_server' (vLLM pooling servers); backend '{backend}' scores "
                "in this process"
            )
        if info.field_name == "base_url" and v is not None:
            urls = (v,) if isinstance(v, str) else v
            if not urls or any(not u.startswith(("http://", "https://")) for u in urls):
                raise ValueError("needs one http(s) URL or a list of them")
        return v

    @field_validator("api_key_env")
    @classmethod
    def _key_name(cls, v: str) -> str:
        if not v.replace("_", "").isalnum() or v.startswith("sk-"):
            raise ValueError(
                "names an environment variable (e.g. REWARD_API_KEY); never put the key itself in params"
            )
        return v

    @model_validator(mode="after")
    def _model(self) -> RewardModel:
        if self.backend != "toy" and not self.name_or_path:
            raise ValueError(f"reward backend '{self.backend}' needs name_or_path")
        if self.backend == "hf" and self.head == "remote_code" and not self.trust_remote_code:
            # Without it AutoModel falls back to the bare base model, whose first output is hidden states.
            raise ValueError(
                f"reward model {self.name_or_path}: head 'remote_code' with backend 'hf' runs the "
                "checkpoint's own code; set trust_remote_code: true for it"
            )
        if self.backend == "vllm_server" and (self.serve is None) == (not self.base_urls):
            raise ValueError(
                f"reward model {self.name_or_path}: backend 'vllm_server' needs exactly one of serve "
                "(servers the stage starts) and base_url (servers you run)"
                + ("; both are set" if self.serve is not None else "")
            )
        return self


class Reward(RewardModel):
    # More reward models scored beside the main one, as the paper's cross-check (Skywork, Nemotron).
    cross_check: tuple[RewardModel, ...] = ()


class StyleAlign(Strict):
    # A rewrite is kept only if its perplexity under the SLM is at most this multiple of the
    # original trace's, and its character edit distance at most this fraction of its length.
    max_ppl_ratio: float = Field(gt=0)
    max_edit_ratio: float = Field(ge=0, le=1)


class Lora(Strict):
    enabled: bool = False
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)


Loss = Literal["nll", "dft"]


class Train(Strict):
    streams: tuple[str, ...]
    losses: tuple[Loss, ...]
    seeds: tuple[int, ...] = Field((0,), min_length=1)  # fine-tuning and evaluation seeds
    learning_rate: float = Field(gt=0)
    batch_size: int = Field(gt=0)  # effective (global) batch size, as papers report it
    # Examples per device per forward pass; the rest of the batch is gradient accumulation.
    # None: the whole batch in one pass on one process.
    per_device_batch_size: int | None = Field(None, gt=0)
    epochs: float = Field(gt=0)
    max_length: int = Field(gt=0)
    # inline: TRL in the notebook's process (CPU or one GPU). accelerate: `accelerate launch` of
    # `python -m paradox.training.job` with `accelerate_config` (FSDP/DeepSpeed) on num_processes.
    launcher: Literal["inline", "accelerate"] = "inline"
    accelerate_config: str | None = None
    num_processes: int = Field(1, gt=0)  # every training process of a run, over all machines
    # Nodes in one training job (accelerate multi-node; every node runs `make train-node`, see
    # README): num_processes is split evenly over them. Rank and main address: environment.
    num_machines: int = Field(1, gt=0)
    gradient_checkpointing: bool = False
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    scheduler: str = "cosine"
    weight_decay: float = Field(0.0, ge=0)
    bf16: bool = False
    logging_steps: int = Field(5, gt=0)
    lora: Lora = Lora()

    def split_batch(self, batch_size: int) -> tuple[int, int]:
        """(per-device batch, gradient-accumulation steps) giving the effective `batch_size`."""
        per_device = self.per_device_batch_size or batch_size // self.num_processes
        accum, rest = divmod(batch_size, per_device * self.num_processes)
        if rest or accum == 0:
            raise ValueError(
                f"batch size {batch_size} is not a multiple of per_device_batch_size "
                f"{per_device} x num_processes {self.num_processes}"
            )
        return per_device, accum


class Eval(Strict):
    backend: GenBackend | None = None  # None: as sampling.backend
    splits: tuple[str, ...]
    k: int = Field(gt=0)
    temperature: float = Field(ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    grade_timeout_s: float = Field(5.0, gt=0)  # wall-time bound of one grade() call, all steps together
    # Processes grading answers (paradox.grading.grade_many); 0 = every core. A few hundred
    # answers or fewer are graded in the notebook's own process whatever this says.
    grade_workers: int = Field(0, ge=0)
    # Perplexity scoring: padded tokens (prompt + response) per forward pass, whatever batch_size
    # is; the vocabulary-sized logits exist only for slices of positions (metrics.response_nll).
    score_token_budget: int = Field(16384, gt=0)


class Selection(Strict):
    # Compatibility-aware selection (beyond the paper): per problem, the candidate trace with the
    # largest reward - lam * log PPL under the SLM becomes the `compat_selected` stream.
    enabled: bool = False
    lam: float = Field(1.0, ge=0)
    candidates: tuple[str, ...] = ("slm_rft", "oracle_refined", "oracle_synthesized", "style_aligned")


class Drift(Strict):
    # The drift dial (beyond the paper): the same logical repair with a fraction f of each trace
    # in the Oracle's notation; one stream `drift_<100 f>` per fraction.
    fractions: tuple[float, ...] = ()
    losses: tuple[Loss, ...] = ("dft",)


class LearningCurve(Strict):
    checkpoints: int = Field(0, ge=0)  # evenly spaced checkpoints kept per main run (first seed)
    streams: tuple[str, ...] = STREAMS
    losses: tuple[Loss, ...] = ("dft",)
    splits: tuple[str, ...] = ("test",)


class Grid(Strict):
    # Robustness grid: learning rate x batch size for these streams (first seed).
    streams: tuple[str, ...] = ()
    learning_rates: tuple[float, ...] = ()
    batch_sizes: tuple[int, ...] = ()
    losses: tuple[Loss, ...] = ("dft",)


class DatasetSpec(Strict):
    """One Hugging Face dataset mapped to the Problem record (see `paradox.hf_sources`)."""

    hub_id: str
    config: str | None = None
    split: str
    revision: str | None = None
    local_path: str | None = None  # offline copy (JSON/JSONL/Parquet file or save_to_disk dir)
    question_field: str
    answer_field: str | None = None
    answer_from: Literal["field", "boxed_in_solution", "gsm8k_hash"] = "field"
    solution_field: str | None = None
    id_field: str | None = None
    limit: int | None = Field(None, gt=0)  # a seeded sample of this many problems

    @model_validator(mode="after")
    def _fields(self) -> DatasetSpec:
        if self.answer_from in ("field", "gsm8k_hash") and not self.answer_field:
            raise ValueError(f"answer_from '{self.answer_from}' needs answer_field")
        if self.answer_from == "boxed_in_solution" and not self.solution_field:
            raise ValueError("answer_from 'boxed_in_solution' needs solution_field")
        return self


class ModelShape(Strict):
    """A transformer's published config (its config.json), as the memory estimates of `make plan`
    need it (paradox.gpu_memory; the paper's models are in its table, with their sources)."""

    layers: int = Field(gt=0)  # num_hidden_layers
    hidden: int = Field(gt=0)  # hidden_size
    heads: int = Field(gt=0)  # num_attention_heads
    kv_heads: int = Field(gt=0)  # num_key_value_heads
    head_dim: int | None = Field(None, gt=0)  # None: hidden / heads
    intermediate: int = Field(gt=0)  # intermediate_size (a gated MLP: gate, up, down)
    vocab: int = Field(gt=0)  # vocab_size
    max_position: int = Field(gt=0)  # max_position_embeddings
    tied_embeddings: bool = False  # tie_word_embeddings
    lm_head: bool = True  # False: a reward model (a scalar head, no vocabulary)
    qkv_bias: bool = False  # Qwen2: biases on the q, k and v projections
    source: str = ""  # where the numbers come from


class GPUHours(Strict):
    """What `make plan`'s GPU-hour estimates assume (paradox.gpu_hours, docs/budgets.md): stated
    guesses, none of them measured. Throughputs per GPU come from the table paradox.gpu_hours.GPUS
    for `hardware.gpu` (model size x GPU kind) unless set here."""

    # Generated tokens/s per GPU of one model in vLLM with hundreds of sequences in flight (hub id or
    # path -> rate); overrides the table's rate for that model's size. Set it from your own run.
    decode_tokens_per_s: dict[str, float] = Field(default_factory=dict)
    peak_tflops: float | None = Field(
        None, gt=0
    )  # dense bf16 TFLOP/s per GPU; None: the GPU's datasheet figure
    # Model FLOPs utilisation: training counts 6 x params x tokens (gradient checkpointing's recompute
    # and padding are inside it); forward passes (prefill, rewards, perplexity) 2 x params x tokens.
    train_mfu: float = Field(0.35, gt=0, le=1)
    forward_mfu: float = Field(0.3, gt=0, le=1)
    mean_question_tokens: int = Field(150, gt=0)  # a problem statement (with the chat template)
    mean_trace_tokens: int = Field(600, gt=0)  # a sampled trace, and a trace in every stream
    mean_eval_tokens: int = Field(800, gt=0)  # an answer to a benchmark problem (harder: longer)
    kept_share: float = Field(0.34, gt=0, le=1)  # problems kept by rejection sampling (paper: ~34K of 100K)
    load_gib_per_s: float = Field(2.0, gt=0)  # reading (or writing) weights on local disk
    engine_start_s: float = Field(
        90.0, ge=0
    )  # a vLLM engine's start beyond its weights (CUDA graphs, compile)
    train_run_s: float = Field(60.0, ge=0)  # a training run's launch beyond loading and saving weights
    # GPUs of an Oracle that runs elsewhere (oracle.base_url): its wall time; None: its GPU hours only.
    oracle_gpus: int | None = Field(None, gt=0)


class Hardware(Strict):
    """The GPUs a profile runs on: `make plan` checks each stage's estimated peak memory against them
    and estimates each stage's GPU hours on them."""

    gpu_memory_gib: float | None = Field(None, gt=0)  # per GPU, as CUDA reports it; None: no estimate
    gpus_per_node: int = Field(1, gt=0)
    # The kind of GPU (a row of paradox.gpu_hours.GPUS: peak FLOP/s, decode throughputs); None: GPU
    # hours are not estimated.
    gpu: Literal["h100", "h200", "a100"] | None = None
    gpu_hours: GPUHours = GPUHours()
    # Shapes of models that paradox.gpu_memory's table lacks (hub id or path -> shape); a model in
    # neither is "not estimated" in the plan, never guessed.
    models: dict[str, ModelShape] = Field(default_factory=dict)


class Analysis(Strict):
    top_tokens: int = Field(12, gt=0)
    retention_prompt: str = "params/prompts/retention_judge.txt"


class Params(Strict):
    profile: str
    description: str
    world: Literal["toy", "real"]
    seed: int
    toy: ToyWorld | None = None
    slm: SLM
    sampling: Sampling
    rft: RFT
    oracle: Oracle
    reward: Reward
    style_align: StyleAlign
    train: Train
    eval: Eval
    selection: Selection = Selection()
    drift: Drift = Drift()
    learning_curve: LearningCurve = LearningCurve()
    grid: Grid = Grid()
    analysis: Analysis = Analysis()
    vllm: VLLMEngine = VLLMEngine()
    endpoint: Endpoint = Endpoint()
    hardware: Hardware = Hardware()
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict)  # world "real": split name -> dataset

    @model_validator(mode="after")
    def _consistent(self) -> Params:
        if self.rft.clean is True:  # the world's own cleaning (see RFT.clean)
            object.__setattr__(
                self,
                "rft",
                self.rft.model_copy(update={"clean": "lines" if self.world == "toy" else "layout"}),
            )
        if self.world == "toy" and self.toy is None:
            raise ValueError("world is 'toy' but the 'toy' section is missing")
        if self.world == "real":
            needed = ["train", *self.eval.splits]
            missing = [s for s in needed if s not in self.datasets]
            if missing:
                raise ValueError(f"world is 'real' but datasets has no entry for split(s) {missing}")
        for key, names in (
            ("train.streams", self.train.streams),
            ("grid.streams", self.grid.streams),
            ("selection.candidates", self.selection.candidates),
            ("learning_curve.streams", self.learning_curve.streams),
        ):
            unknown = [s for s in names if s not in STREAMS]
            if unknown:
                raise ValueError(f"{key}: unknown stream(s) {unknown}; known: {list(STREAMS)}")
        lc = self.learning_curve
        if lc.checkpoints > 0 and (off := [s for s in lc.splits if s not in self.eval.splits]):
            raise ValueError(
                f"learning_curve.splits {off} are not in eval.splits {list(self.eval.splits)}: the learning "
                "curves are evaluated on evaluation splits (or set learning_curve.checkpoints: 0)"
            )
        if any(not 0 <= f <= 1 for f in self.drift.fractions):
            raise ValueError(f"drift.fractions must lie in [0, 1], got {list(self.drift.fractions)}")
        if self.grid.streams and not (self.grid.learning_rates and self.grid.batch_sizes):
            raise ValueError("grid.streams is set but grid.learning_rates or grid.batch_sizes is empty")
        for bs in (self.train.batch_size, *self.grid.batch_sizes):
            self.train.split_batch(bs)
        if self.train.launcher == "accelerate" and not self.train.accelerate_config:
            raise ValueError(
                "train.launcher 'accelerate' needs train.accelerate_config (a file under params/accelerate/)"
            )
        uses_endpoint = "openai" in (self.sampling.backend, self.eval_backend)
        if uses_endpoint and not (self.endpoint.base_urls or self.endpoint.serve):
            raise ValueError(
                "backend 'openai' needs endpoint.base_urls (servers you run) or endpoint.serve "
                "(servers each stage starts)"
            )
        if self.eval_backend == "openai" and not self.endpoint.serve:
            raise ValueError(
                "eval.backend 'openai' needs endpoint.serve: every fine-tuned model is served in turn"
            )
        if self.train.num_machines > 1 and self.train.launcher != "accelerate":
            raise ValueError("train.num_machines > 1 needs train.launcher 'accelerate'")
        if self.train.num_processes % self.train.num_machines:
            raise ValueError(
                f"train.num_processes {self.train.num_processes} is not a multiple of "
                f"train.num_machines {self.train.num_machines}"
            )
        o, r = self.oracle, self.rft
        counted = o.backend == "openai" and o.context_length is not None
        unset = [
            k
            for k, v in (
                ("rft.max_question_tokens", r.max_question_tokens),
                ("rft.max_trace_tokens", r.max_trace_tokens),
            )
            if v is None
        ]
        if counted and unset:
            raise ValueError(
                f"oracle.context_length is set but {unset} not: they bound the question and the trace "
                "every Oracle prompt carries, so that `make plan` can check the budgets (docs/budgets.md)"
            )
        if not counted and len(unset) < 2:
            raise ValueError(
                "rft.max_question_tokens and rft.max_trace_tokens count the Oracle's tokens: they need "
                "oracle.backend 'openai' with oracle.context_length (and oracle.tokenizer)"
            )
        missing_splits = [s for s in self.learning_curve.splits if s not in self.eval.splits]
        if self.learning_curve.checkpoints and missing_splits:
            raise ValueError(
                f"learning_curve.splits {missing_splits} are not evaluation splits (eval.splits)"
            )
        return self

    @property
    def eval_backend(self) -> str:
        return self.eval.backend or self.sampling.backend

    def hash(self) -> str:
        """Stable hash of the validated params (the profile's identity in sidecars)."""
        return stable_hash(self.model_dump(mode="json"))


# Which params file set each key, by its path of keys (for error messages).
_Origin = dict[tuple[object, ...], str]


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ParamsError(f"{display(path)}: params file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{display(path)}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ParamsError(f"{display(path)}: expected a mapping of keys at the top level")
    return data


def _merge(
    base: dict[str, Any], over: dict[str, Any], origin: _Origin, src: str, prefix: tuple[object, ...] = ()
) -> dict[str, Any]:
    """Deep-merge `over` into `base`, recording which file set each key."""
    out = dict(base)
    for key, value in over.items():
        path = (*prefix, key)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, origin, src, path)
        else:
            out[key] = value
            origin[path] = src
        origin.setdefault(path, src)
    return out


def _known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Field names valid at `loc` (for 'did you mean' hints)."""
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        ann = field.annotation
        candidates = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type)]
        nested = [a for a in candidates if issubclass(a, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def _describe(err: ErrorDetails, origin: _Origin, profile_file: str) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = ".".join(str(p) for p in loc) or "(top level)"
    src = profile_file
    for n in range(len(loc), 0, -1):
        if loc[:n] in origin:
            src = origin[loc[:n]]
            break
    if err["type"] == "extra_forbidden":
        hint = difflib.get_close_matches(str(loc[-1]), _known_keys(Params, loc[:-1]), n=1)
        more = f" (did you mean '{'.'.join(map(str, loc[:-1] + (hint[0],)))}'?)" if hint else ""
        return f"{src}: unknown key '{key}'{more}"
    if err["type"] == "missing":
        return f"{src}: missing key '{key}'"
    if not loc:  # a rule across keys: the input is the whole profile, too long to echo
        return f"{src}: {err['msg'].removeprefix('Value error, ')}"
    return f"{src}: key '{key}': {err['msg']} (got {err.get('input')!r})"


def _profile_chain(params_dir: Path, profile: str) -> list[tuple[Path, dict[str, Any]]]:
    """The profile file and the profiles it `extends`, most general first (base.yaml comes before all)."""
    chain: list[tuple[Path, dict[str, Any]]] = []
    name: str | None = profile
    while name is not None:
        path = params_dir / f"{name}.yaml"
        if any(path == p for p, _ in chain):
            raise ParamsError(
                f"{display(chain[-1][0])}: key 'extends': profiles extend each other in a cycle ({name})"
            )
        data = _read_yaml(path)
        parent = data.pop("extends", None)
        if parent is not None and (not isinstance(parent, str) or parent == BASE_FILE.removesuffix(".yaml")):
            raise ParamsError(
                f"{display(path)}: key 'extends' must name another profile (base.yaml is always first)"
            )
        chain.append((path, data))
        name = parent
    return chain[::-1]


def load_params(profile: str, params_dir: Path | str = PARAMS_DIR) -> Params:
    """Load `base.yaml` + `<profile>.yaml` (after the profiles it `extends`, if any) and validate;
    raise ParamsError naming the file and the key. A relative `params_dir` is taken from the
    project root (`paradox.paths`), so this works from `notebooks/` as from the root."""
    params_dir = resolve(params_dir)
    base_path, prof_path = params_dir / BASE_FILE, params_dir / f"{profile}.yaml"
    origin: _Origin = {}
    merged = _merge({}, _read_yaml(base_path), origin, display(base_path))
    for path, data in _profile_chain(params_dir, profile):
        merged = _merge(merged, data, origin, display(path))
    merged.setdefault("profile", profile)
    origin.setdefault(("profile",), display(prof_path))
    if merged["profile"] != profile:
        raise ParamsError(f"{prof_path}: key 'profile' is {merged['profile']!r}, expected {profile!r}")
    try:
        params = Params.model_validate(merged)
    except ValidationError as err:
        lines = [_describe(e, origin, display(prof_path)) for e in err.errors()]
        raise ParamsError("invalid params:\n  " + "\n  ".join(lines)) from None
    # Files named by params are resolved from the repository root (the parent of params/).
    files: dict[tuple[str, ...], str | None] = {
        ("analysis", "retention_prompt"): params.analysis.retention_prompt,
        ("train", "accelerate_config"): params.train.accelerate_config,
    }
    if params.oracle.backend == "openai":
        files |= {("oracle", "prompts", k): v for k, v in params.oracle.prompts.model_dump().items()}
    for key, rel in files.items():
        if rel is not None and not (params_dir.parent / rel).is_file():
            src = origin.get(key, origin.get(key[:2], display(base_path)))
            raise ParamsError(
                f"{src}: key '{'.'.join(key)}': file not found: {display(params_dir.parent / rel)}"
            )
    return params


def main(argv: list[str] | None = None) -> int:
    """`python -m paradox.params PROFILE`: validate a profile, print a one-line verdict."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    # --world: for the Makefile, the profile's world, then the params files it is made of
    # (a stage depends on all of them, parents included, and a real world has no stage 00).
    for_make = args[:1] == ["--world"]
    args = args[1:] if for_make else args
    if len(args) != 1:
        print("usage: python -m paradox.params [--world] PROFILE", file=sys.stderr)
        return 2
    try:
        p = load_params(args[0])
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if for_make:
        params_dir = resolve(PARAMS_DIR)
        files = [params_dir / BASE_FILE, *(path for path, _ in _profile_chain(params_dir, args[0]))]
        print(" ".join([p.world, *map(display, files)]))
    else:
        print(f"params ok: profile {p.profile} ({p.description}), hash {p.hash()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
