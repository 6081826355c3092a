"""Params: `params/base.yaml` layered with one profile file, validated by a strict schema.

Every mistake is reported before any work starts, naming the file that set the offending key
(or the profile file, for a key that is missing), so a typo in `toy.yaml` never silently falls
back to a default.
"""

from __future__ import annotations

import difflib
import re
import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from annotated_types import Interval
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import Strict as StrictMode
from pydantic_core import ErrorDetails

from paradox.io import stable_hash
from paradox.paths import display, resolve
from paradox.streams import STREAMS, drift_stream

PARAMS_DIR = Path("params")  # relative to the project root (paradox.paths), wherever the kernel starts
BASE_FILE = "base.yaml"


# Strings that look like credentials (OpenAI / Anthropic `sk-`, Hugging Face `hf_`, GitHub, Slack,
# AWS, Google keys), and any long run of token characters mixing upper case, lower case and digits:
# an error message never shows them, whatever key they were written under.
_SECRET = re.compile(
    r"(?:sk-|hf_|ghp_|gho_|ghs_|github_pat_|xox[abprs]-|AKIA|AIza)[A-Za-z0-9_\-]{8,}"
    r"|(?<![A-Za-z0-9+=_-])(?=[A-Za-z0-9+=_-]*[a-z])(?=[A-Za-z0-9+=_-]*[A-Z])"
    r"(?=[A-Za-z0-9+=_-]*[0-9])[A-Za-z0-9+=_-]{32,}"
)
# Keys whose values are never echoed: a name part (split at "_") that names a credential.
_SECRET_KEY_PARTS = {"key", "apikey", "token", "secret", "password", "passwd", "credential", "auth"}
_MAX_LINE, _MAX_LINES = 300, 40  # an error message stays readable whatever the input was


def _redact(text: str) -> str:
    return _SECRET.sub("<hidden: looks like a secret>", text)


def _bounded(text: str) -> str:
    lines = [ln if len(ln) <= _MAX_LINE else ln[: _MAX_LINE - 3] + "..." for ln in text.splitlines()]
    if len(lines) > _MAX_LINES:
        lines = [*lines[: _MAX_LINES - 1], f"... and {len(lines) - _MAX_LINES + 1} more lines"]
    return "\n".join(lines)


class ParamsError(ValueError):
    """A params file is missing, unparseable or fails the schema. The message is safe to print and
    to log: strings that look like secrets are hidden and its size is bounded."""

    def __init__(self, message: str) -> None:
        super().__init__(_bounded(_redact(message)))


# Profile names, split names and stream names become path components (params/<profile>.yaml,
# runs/<profile>/, eval/<split>.jsonl): one plain name each, never a path.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def bad_name(name: object) -> str | None:
    """Why `name` cannot be a profile, split or stream name (None: it can)."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        return (
            "must be a plain name (letters, digits, '.', '_', '-'; starting with a letter or digit; "
            "no '..'; at most 64 characters): it becomes part of a path"
        )
    return None


def _safe_name(v: str) -> str:
    if why := bad_name(v):
        raise ValueError(why)
    return v


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _env_name(v: str) -> str:
    if not ENV_NAME.fullmatch(v) or _SECRET.search(v):
        raise ValueError(
            "names an environment variable (e.g. OPENAI_API_KEY); never put the key itself in params"
        )
    return v


def _no_bool(v: Any) -> Any:
    if isinstance(v, bool):  # YAML reads yes/no/on/off as booleans: never a number
        raise ValueError("must be a number, not a boolean (YAML reads yes/no/on/off as true/false)")
    return v


# Integers refuse booleans, floats (1.0e+23) and strings; every one fits a signed 32-bit int (what
# torch, vLLM and the tokenizers take), fields bound themselves further. Floats refuse booleans,
# and inf/nan (model config below).
def _int32(v: int) -> int:
    if not -(2**31) <= v <= 2**31 - 1:
        raise ValueError("must fit a signed 32-bit integer")
    return v


# The 32-bit range is a validator, not an annotated Interval: an Interval's ge/le would replace
# the ge/le a field gives in Field(...) (k's le=MAX_K, grade_workers' ge=0 were silently lost).
Int = Annotated[int, StrictMode(), AfterValidator(_int32)]
Float = Annotated[float, BeforeValidator(_no_bool)]
Seed = Annotated[int, StrictMode(), Interval(ge=0, le=2**32 - 1)]  # numpy / torch seed range
Name = Annotated[str, AfterValidator(_safe_name)]
EnvName = Annotated[str, AfterValidator(_env_name)]  # the NAME of an environment variable
# The toy world's evaluation splits, as notebook 00 names them (its `sizes`; "train" is sampled on).
TOY_EVAL_SPLITS = ("test", "hard")
MAX_K = 1024  # samples per problem (the paper: 8 for RFT, 16 for Avg@16)
MAX_PROBLEMS = 10**7  # toy problems of one split
MAX_TOKENS = 2**20  # a length in tokens (context, generation budget)
MAX_BATCH = 2**16
# The system prompt of the Qwen2.5-Math reward models' model cards (RM-72B, PRM-7B).
QWEN_MATH_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ToyProblems(Strict):
    n_train: Int = Field(gt=0, le=MAX_PROBLEMS)
    n_test: Int = Field(gt=0, le=MAX_PROBLEMS)
    n_hard: Int = Field(gt=0, le=MAX_PROBLEMS)
    ops: tuple[Int, Int]  # inclusive range of operations per problem
    max_operand: Int = Field(gt=1)
    max_value: Int = Field(gt=2)  # every intermediate value stays in [1, max_value]
    hard_ops: tuple[Int, Int]
    hard_max_operand: Int = Field(gt=1)
    hard_max_value: Int = Field(gt=2)


class ToySLM(Strict):
    hidden_size: Int = Field(gt=0)
    n_layers: Int = Field(gt=0)
    n_heads: Int = Field(gt=0)
    intermediate_size: Int = Field(gt=0)
    vocab_size: Int = Field(gt=32)
    max_position: Int = Field(gt=0)
    pretrain_problems: Int = Field(gt=0, le=MAX_PROBLEMS)
    pretrain_epochs: Float = Field(gt=0, le=1000)
    pretrain_lr: Float = Field(gt=0, le=1)
    pretrain_batch_size: Int = Field(gt=0)
    # Share of pretraining solutions written in the Oracle's / dataset's notation: a real SLM
    # has seen some LaTeX and some GSM8K-style text, so those notations are rare, not unseen.
    foreign_style_fraction: Float = Field(ge=0, le=1)


class ToyWorld(Strict):
    problems: ToyProblems
    slm: ToySLM
    # The toy world's stand-in for a process reward model (paradox.toy.prm, docs/prm-locator.md): the
    # exact step checker, whose answer is replaced, for this share of the traces (seeded per problem),
    # by a different step index or "no error". A stated error rate, not a model: it gives the locator
    # agreement table of 03 a PRM column in the toy world, and `oracle.locator: prm` a noisy validator.
    prm_standin_error_rate: Float = Field(0.1, ge=0, le=1)


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
    # The attention kernel transformers runs (attn_implementation when loading): null = its default
    # (sdpa). flash_attention_2 on GPUs with the flash-attn package. eager makes toy-sized models
    # faster on a CPU, but rounds differently from sdpa: the toy's numbers move (bench/RESULTS.md).
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flash_attention_3"] | None = None

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

    tensor_parallel_size: Int = Field(1, gt=0)
    data_parallel_size: Int = Field(1, gt=0)  # engine replicas, each on tensor_parallel_size GPUs
    gpu_memory_utilization: Float = Field(0.9, gt=0, le=1)
    max_model_len: Int | None = Field(None, gt=0)
    enforce_eager: bool = False


GenBackend = Literal["hf", "vllm", "openai"]


class Serve(Strict):
    """A managed `vllm serve` (paradox.serving): the stage that needs the model starts it on
    127.0.0.1 at a free port, waits for it, logs to runs/<profile>/logs/, and stops it when the
    stage ends, fails or is interrupted."""

    replicas: Int = Field(1, gt=0)  # servers on this machine, each at its own port (e.g. one per GPU group)
    tensor_parallel_size: Int = Field(1, gt=0)
    data_parallel_size: Int = Field(1, gt=0)  # vLLM's own data parallelism inside one server
    gpu_memory_utilization: Float = Field(0.9, gt=0, le=1)
    max_model_len: Int | None = Field(None, gt=0)
    dtype: str = "auto"
    enforce_eager: bool = False
    extra_args: tuple[str, ...] = ()  # further `vllm serve` flags, verbatim
    # (name, value) pairs added to the servers' environment, e.g. [[CUDA_VISIBLE_DEVICES, "0"]]
    env: tuple[tuple[str, str], ...] = ()
    start_timeout_s: Float = Field(1800.0, gt=0)


class Endpoint(Strict):
    """The SLM behind OpenAI-compatible completions endpoints (sampling/eval backend `openai`):
    the servers in `base_urls`, or the managed ones of `serve`."""

    base_urls: tuple[str, ...] = ()  # servers you run (one per node); unused when `serve` is set
    served_model_name: str | None = None  # the name those servers serve (default: slm.name_or_path)
    api_key_env: EnvName = "SLM_API_KEY"  # the NAME of the variable holding the key
    concurrency: Int = Field(32, gt=0)  # requests in flight per endpoint
    max_retries: Int = Field(6, ge=0)
    timeout_s: Float = Field(1800.0, gt=0)
    serve: Serve | None = None


class Sampling(Strict):
    # hf: transformers generate; vllm: vLLM's offline engine; openai: completions endpoints (`endpoint`)
    backend: GenBackend = "hf"
    k: Int = Field(gt=0, le=MAX_K)
    temperature: Float = Field(ge=0)
    top_p: Float = Field(gt=0, le=1)
    max_new_tokens: Int = Field(gt=0, le=MAX_TOKENS)
    batch_size: Int = Field(gt=0, le=MAX_BATCH)


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
    max_question_tokens: Int | None = Field(None, gt=0)
    max_trace_tokens: Int | None = Field(None, gt=0)


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

    max_tokens: Int = Field(gt=0)
    min_tokens: Int = Field(gt=0)
    per_source_token: Float = Field(0.0, ge=0)

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
    api_key_env: EnvName = "OPENAI_API_KEY"
    # null = not sent: reasoning models (OpenAI's GPT-5 class) accept only their defaults.
    temperature: Float | None = Field(0.0, ge=0)
    top_p: Float | None = Field(1.0, gt=0, le=1)
    # The most completion tokens any request asks for (with context_length set, each kind asks for
    # its own `answers` budget, capped by this).
    max_tokens: Int = Field(4096, gt=0)
    # The request field carrying max_tokens: OpenAI's reasoning models take max_completion_tokens.
    token_limit_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    seed: Seed | None = None
    concurrency: Int = Field(8, gt=0)  # requests in flight
    max_retries: Int = Field(6, ge=0)  # on 429, 5xx, timeouts and dropped connections, with backoff
    timeout_s: Float = Field(600.0, gt=0)
    prompts: OraclePrompts = OraclePrompts()
    # Style-Aligned Refinement's error locator (docs/prm-locator.md): the Oracle with the `locate` prompt,
    # or a process reward model (PRM): the toy world's stand-in (toy.prm_standin_error_rate) with
    # backend toy, the model `prm` with backend openai.
    locator: Literal["oracle", "prm"] = "oracle"
    prm: str | None = None  # hub id or local path of the PRM, e.g. Qwen/Qwen2.5-Math-PRM-7B
    prm_threshold: Float = Field(0.5, gt=0, lt=1)  # the first step whose PRM score is below this is wrong
    # hf: transformers with the checkpoint's own class (remote code); vllm: vLLM's offline pooling runner
    # (its own Qwen2ForProcessRewardModel, STEP pooling; engine settings from the `vllm` section).
    prm_backend: Literal["hf", "vllm"] = "hf"
    prm_revision: str | None = None
    prm_trust_remote_code: bool = False  # hf: Qwen's PRM head is its own code (modeling_qwen2_rm.py)
    prm_dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"  # the Qwen PRM's torch_dtype
    # The chat the PRM scores (its model card): system prompt, user = question, assistant = the steps,
    # each followed by the step separator, one token of the PRM's vocabulary whose position is scored.
    prm_system_prompt: str | None = QWEN_MATH_SYSTEM_PROMPT
    prm_step_separator: str = "<extra_0>"
    # Tokens of one chat (the Qwen PRM's max_position_embeddings: 4,096); a longer chat loses its end,
    # and the steps cut off are not scored (counted as prm_truncated).
    prm_max_length: Int = Field(4096, gt=0, le=MAX_TOKENS)
    prm_token_budget: Int = Field(16384, gt=0)  # hf: padded tokens per forward pass (chats per batch)
    # 03 also runs the locator not chosen (the Oracle's prompt, or the PRM when `prm` is set or the world
    # is the toy's) for its locator agreement table; false: only the chosen one (e.g. a PRM run that
    # sends no locate request to the Oracle).
    compare_locators: bool = True
    # Fitting every request into the Oracle's context (docs/budgets.md). context_length: the served
    # model's context (vLLM's max_model_len); None: requests are not counted (a hosted API with a
    # large context). tokenizer: hub id or local path of the Oracle's tokenizer with its chat template
    # (None: oracle.model), loaded on the first request to count prompts as the server will.
    context_length: Int | None = Field(None, gt=0)
    tokenizer: str | None = None
    context_margin: Int = Field(16, ge=0)  # tokens of the context never planned for
    # A bound on the tokens the chat template adds around a prompt: `make plan` uses it (nothing is
    # loaded there) and the client checks it against the real template when it loads the tokenizer.
    chat_template_tokens: Int = Field(64, ge=0)
    # `make plan` bounds a prompt template's own text by this many tokens per UTF-8 byte: 1.0 is safe
    # for any byte-level BPE tokenizer; a smaller value is an assumption that notebook 01 checks with
    # the real tokenizer before sampling (English prose takes about 0.25 tokens per byte).
    template_tokens_per_byte: Float = Field(1.0, gt=0, le=1)
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
        if self.backend == "openai" and self.locator == "prm" and not self.prm:
            raise ValueError("oracle.locator 'prm' needs oracle.prm (a process reward model)")
        if self.backend == "toy" and self.prm:
            raise ValueError(
                "oracle.prm is for oracle.backend 'openai': the toy Oracle's PRM is its stand-in "
                "(toy.prm_standin_error_rate), whose step indices are the toy chain's"
            )
        if self.prm and self.prm_backend == "hf" and not self.prm_trust_remote_code:
            # Without it AutoModel falls back to the bare body, whose first output is hidden states.
            raise ValueError(
                f"oracle.prm {self.prm} with prm_backend 'hf' runs the checkpoint's own code (a Qwen "
                "PRM's head is in its modeling_qwen2_rm.py): set oracle.prm_trust_remote_code: true, "
                "or prm_backend: vllm (vLLM's own implementation)"
            )
        if not self.prm_step_separator.strip():
            raise ValueError("oracle.prm_step_separator must be a token, not blank")
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
    batch_size: Int = Field(8, gt=0)  # chats per forward pass (hf), per request (vllm_server)
    max_length: Int = Field(4096, gt=0)
    # backend vllm_server only: the servers you run (one per node), "http://host:port" with or without
    # "/v1", one URL or a list (requests are spread over them and fail over), or `serve`: servers the
    # scoring stage starts (on this machine, under the GPU lock) and stops when it is done.
    base_url: str | tuple[str, ...] | None = None
    serve: Serve | None = None
    served_model_name: str | None = None  # the name the servers serve (default: name_or_path)
    api_key_env: EnvName = "REWARD_API_KEY"  # the NAME of the variable holding the servers' key, if any
    concurrency: Int = Field(8, gt=0)  # requests in flight per server (each of batch_size chats)
    max_retries: Int = Field(6, ge=0)  # on 5xx, timeouts and dropped connections, with backoff
    timeout_s: Float = Field(600.0, gt=0)

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
    max_ppl_ratio: Float = Field(gt=0)
    max_edit_ratio: Float = Field(ge=0, le=1)


class Lora(Strict):
    enabled: bool = False
    r: Int = Field(16, gt=0)
    alpha: Int = Field(32, gt=0)
    dropout: Float = Field(0.0, ge=0, lt=1)


Loss = Literal["nll", "dft"]


class Train(Strict):
    streams: tuple[str, ...] = Field(min_length=1)
    losses: tuple[Loss, ...] = Field(min_length=1)
    seeds: tuple[Seed, ...] = Field((0,), min_length=1)  # fine-tuning and evaluation seeds
    learning_rate: Float = Field(gt=0, le=1)
    batch_size: Int = Field(gt=0, le=MAX_BATCH)  # effective (global) batch size, as papers report it
    # Examples per device per forward pass; the rest of the batch is gradient accumulation.
    # None: the whole batch in one pass on one process.
    per_device_batch_size: Int | None = Field(None, gt=0)
    epochs: Float = Field(gt=0, le=1000)
    max_length: Int = Field(gt=0, le=MAX_TOKENS)
    # inline: TRL in the notebook's process (CPU or one GPU). accelerate: `accelerate launch` of
    # `python -m paradox.training.job` with `accelerate_config` (FSDP/DeepSpeed) on num_processes.
    launcher: Literal["inline", "accelerate"] = "inline"
    accelerate_config: str | None = None
    num_processes: Int = Field(1, gt=0)  # every training process of a run, over all machines
    # Nodes in one training job (accelerate multi-node; every node runs `make train-node`, see
    # README): num_processes is split evenly over them. Rank and main address: environment.
    num_machines: Int = Field(1, gt=0)
    gradient_checkpointing: bool = False
    warmup_ratio: Float = Field(0.0, ge=0, lt=1)
    scheduler: str = "cosine"
    weight_decay: Float = Field(0.0, ge=0)
    bf16: bool = False
    logging_steps: Int = Field(5, gt=0)
    lora: Lora = Lora()

    def split_batch(self, batch_size: Int) -> tuple[Int, Int]:
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
    splits: tuple[Name, ...] = Field(min_length=1)
    k: Int = Field(gt=0, le=MAX_K)
    temperature: Float = Field(ge=0)
    top_p: Float = Field(1.0, gt=0, le=1)
    max_new_tokens: Int = Field(gt=0, le=MAX_TOKENS)
    batch_size: Int = Field(gt=0, le=MAX_BATCH)
    grade_timeout_s: Float = Field(5.0, gt=0)  # wall-time bound of one grade() call, all steps together
    # Processes grading answers (paradox.grading.grade_many); 0 = every core. A few hundred
    # answers or fewer are graded in the notebook's own process whatever this says.
    grade_workers: Int = Field(0, ge=0)
    # Perplexity scoring: padded tokens (prompt + response) per forward pass, whatever batch_size
    # is; the vocabulary-sized logits exist only for slices of positions (metrics.response_nll).
    score_token_budget: Int = Field(16384, gt=0)


class Selection(Strict):
    # Compatibility-aware selection (beyond the paper): per problem, the candidate trace with the
    # largest reward - lam * log PPL under the SLM becomes the `compat_selected` stream.
    enabled: bool = False
    lam: Float = Field(1.0, ge=0)
    candidates: tuple[str, ...] = ("slm_rft", "oracle_refined", "oracle_synthesized", "style_aligned")


class Drift(Strict):
    # The drift dial (beyond the paper): the same logical repair with a fraction f of each trace
    # in the Oracle's notation; one stream `drift_<100 f>` per fraction.
    fractions: tuple[Float, ...] = ()
    losses: tuple[Loss, ...] = ("dft",)


class LearningCurve(Strict):
    checkpoints: Int = Field(0, ge=0)  # evenly spaced checkpoints kept per main run (first seed)
    streams: tuple[str, ...] = STREAMS
    losses: tuple[Loss, ...] = ("dft",)
    splits: tuple[Name, ...] = ("test",)


class Grid(Strict):
    # Robustness grid: learning rate x batch size for these streams (first seed).
    streams: tuple[str, ...] = ()
    learning_rates: tuple[Float, ...] = ()
    batch_sizes: tuple[Int, ...] = ()
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
    limit: Int | None = Field(None, gt=0)  # a seeded sample of this many problems

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

    layers: Int = Field(gt=0)  # num_hidden_layers
    hidden: Int = Field(gt=0)  # hidden_size
    heads: Int = Field(gt=0)  # num_attention_heads
    kv_heads: Int = Field(gt=0)  # num_key_value_heads
    head_dim: Int | None = Field(None, gt=0)  # None: hidden / heads
    intermediate: Int = Field(gt=0)  # intermediate_size (a gated MLP: gate, up, down)
    vocab: Int = Field(gt=0)  # vocab_size
    max_position: Int = Field(gt=0)  # max_position_embeddings
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
    decode_tokens_per_s: dict[str, Float] = Field(default_factory=dict)
    peak_tflops: Float | None = Field(
        None, gt=0
    )  # dense bf16 TFLOP/s per GPU; None: the GPU's datasheet figure
    # Model FLOPs utilisation: training counts 6 x params x tokens (gradient checkpointing's recompute
    # and padding are inside it); forward passes (prefill, rewards, perplexity) 2 x params x tokens.
    train_mfu: Float = Field(0.35, gt=0, le=1)
    forward_mfu: Float = Field(0.3, gt=0, le=1)
    mean_question_tokens: Int = Field(150, gt=0)  # a problem statement (with the chat template)
    mean_trace_tokens: Int = Field(600, gt=0)  # a sampled trace, and a trace in every stream
    mean_eval_tokens: Int = Field(800, gt=0)  # an answer to a benchmark problem (harder: longer)
    kept_share: Float = Field(0.34, gt=0, le=1)  # problems kept by rejection sampling (paper: ~34K of 100K)
    load_gib_per_s: Float = Field(2.0, gt=0)  # reading (or writing) weights on local disk
    engine_start_s: Float = Field(
        90.0, ge=0
    )  # a vLLM engine's start beyond its weights (CUDA graphs, compile)
    train_run_s: Float = Field(60.0, ge=0)  # a training run's launch beyond loading and saving weights
    # GPUs of an Oracle that runs elsewhere (oracle.base_url): its wall time; None: its GPU hours only.
    oracle_gpus: Int | None = Field(None, gt=0)


class Hardware(Strict):
    """The GPUs a profile runs on: `make plan` checks each stage's estimated peak memory against them
    and estimates each stage's GPU hours on them."""

    gpu_memory_gib: Float | None = Field(None, gt=0)  # per GPU, as CUDA reports it; None: no estimate
    gpus_per_node: Int = Field(1, gt=0)
    # The kind of GPU (a row of paradox.gpu_hours.GPUS: peak FLOP/s, decode throughputs); None: GPU
    # hours are not estimated.
    gpu: Literal["h100", "h200", "a100"] | None = None
    gpu_hours: GPUHours = GPUHours()
    # Shapes of models that paradox.gpu_memory's table lacks (hub id or path -> shape); a model in
    # neither is "not estimated" in the plan, never guessed.
    models: dict[str, ModelShape] = Field(default_factory=dict)


class Analysis(Strict):
    top_tokens: Int = Field(12, gt=0)
    retention_prompt: str = "params/prompts/retention_judge.txt"


class Params(Strict):
    profile: str
    description: str
    world: Literal["toy", "real"]
    seed: Seed
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
    datasets: dict[Name, DatasetSpec] = Field(default_factory=dict)  # world "real": split name -> dataset

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
        # A drift run is named drift_<percent> and reported at that percent (streams.drift_fraction):
        # a fraction between whole percents would run at one f and be reported at another, and two
        # such fractions (0.001, 0.002) would share one run directory.
        if unround := [f for f in self.drift.fractions if abs(f * 100 - round(f * 100)) > 1e-9]:
            raise ValueError(
                f"drift.fractions {unround} are not whole percents (e.g. 0.25, not 0.253): each run is "
                "named and reported as drift_<percent>"
            )
        if self.drift.fractions and not self.drift.losses:
            raise ValueError("drift.losses is empty but drift.fractions is set: no drift run would train")
        if self.world == "toy" and (off := [s for s in self.eval.splits if s not in TOY_EVAL_SPLITS]):
            raise ValueError(
                f"eval.splits {off}: the toy world has the evaluation splits {list(TOY_EVAL_SPLITS)} "
                "(notebook 00 writes them)"
            )
        for key, values in (
            ("train.streams", self.train.streams),
            ("train.losses", self.train.losses),
            ("train.seeds", self.train.seeds),
            ("eval.splits", self.eval.splits),
            ("drift.fractions", tuple(drift_stream(f) for f in self.drift.fractions)),
            ("grid.streams", self.grid.streams),
            ("grid.learning_rates", self.grid.learning_rates),
            ("grid.batch_sizes", self.grid.batch_sizes),
            ("learning_curve.splits", self.learning_curve.splits),
            ("selection.candidates", self.selection.candidates),
        ):
            if twice := sorted({str(v) for v in values if values.count(v) > 1}):
                raise ValueError(f"{key} lists {twice} more than once (each names one run or file)")
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
        """Stable hash of the validated params (the profile's identity in sidecars). A key added
        after profiles were published counts only when set: unset, the old hash (and every
        committed sidecar) stays valid."""
        dump = self.model_dump(mode="json")
        for path, default in ADDED_KEYS.items():
            *sections, key = path
            where: Any = dump
            for section in sections:
                where = where.get(section) if isinstance(where, dict) else None
            if isinstance(where, dict) and key in where and where[key] == default:
                del where[key]
        return stable_hash(dump)


# Keys added after published runs, with their defaults (as model_dump(mode="json") writes them): left
# out of Params.hash() while they have them, so every published profile keeps its hash.
ADDED_KEYS: dict[tuple[str, ...], Any] = {
    ("slm", "attn_implementation"): None,
    ("toy", "prm_standin_error_rate"): 0.1,
    ("oracle", "prm_backend"): "hf",
    ("oracle", "prm_revision"): None,
    ("oracle", "prm_trust_remote_code"): False,
    ("oracle", "prm_dtype"): "bfloat16",
    ("oracle", "prm_system_prompt"): QWEN_MATH_SYSTEM_PROMPT,
    ("oracle", "prm_step_separator"): "<extra_0>",
    ("oracle", "prm_max_length"): 4096,
    ("oracle", "prm_token_budget"): 16384,
    ("oracle", "compare_locators"): True,
}


# Which params file set each key, by its path of keys (for error messages).
_Origin = dict[tuple[object, ...], str]


class _ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter where a params file would otherwise be silently wrong: a key
    written twice in one mapping is an error (PyYAML keeps the last, replacing a whole section), and
    so are anchors and aliases (`&a`, `*a`): params never need them, and a few hundred bytes of
    nested aliases expand to gigabytes."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.MarkedYAMLError(
                problem="anchors and aliases (&name, *name) are not allowed in params files; "
                "write the value out",
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = lines.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: the base loader says so
                continue
            if first != key_node.start_mark.line + 1:
                raise yaml.MarkedYAMLError(
                    problem=f"key {key!r} is set twice in one mapping, on line {first} and line "
                    f"{key_node.start_mark.line + 1} (YAML would silently keep only the last)",
                    problem_mark=key_node.start_mark,
                )
        return super().construct_mapping(node, deep)


def _yaml_error(err: yaml.YAMLError) -> str:
    """Line, column and problem, without PyYAML's own file name or source snippet."""
    if not isinstance(err, yaml.MarkedYAMLError):
        return str(err)
    mark = err.problem_mark or err.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return where + "; ".join(str(x) for x in (err.context, err.problem) if x)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ParamsError(f"{display(path)}: params file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ParamsError(
            f"{display(path)}: not UTF-8 text (byte 0x{raw[err.start]:02x} on line {line}); "
            "save the file as UTF-8"
        ) from None
    try:
        data = yaml.load(text, Loader=_ParamsLoader) or {}  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise ParamsError(f"{display(path)}: not valid YAML: {_yaml_error(err)}") from None
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


def _blame(loc: tuple[object, ...], origin: _Origin, files: list[str]) -> str | None:
    """The file that set `loc`: for a section, the most specific file (latest in `files`) that set
    anything in it, so a rule broken by a profile's override is blamed on the profile."""
    under = [src for path, src in origin.items() if path[: len(loc)] == loc]
    if under:
        return max(under, key=files.index)
    for n in range(len(loc) - 1, 0, -1):
        if loc[:n] in origin:
            return origin[loc[:n]]
    return None


_ECHO = reprlib.Repr()  # a short repr, however large or deep the value
_ECHO.maxlevel, _ECHO.maxtuple, _ECHO.maxlist, _ECHO.maxdict, _ECHO.maxstring = 3, 6, 6, 6, 160
_MAX_ECHO = 200  # characters of a bad value shown in its error


def _echo(loc: tuple[object, ...], value: object) -> str:
    """The bad value, as far as it is safe to show: never under a credential-like key name, never
    a string that looks like a secret, never more than _MAX_ECHO characters."""
    parts = {p for part in loc for p in re.split(r"[_\W]+", str(part).lower())}
    if parts & _SECRET_KEY_PARTS:
        return "(value not shown: the key may hold a secret)"
    text = _redact(_ECHO.repr(value))
    return f"(got {text if len(text) <= _MAX_ECHO else text[: _MAX_ECHO - 3] + '...'})"


_KEY_IN_MESSAGE = re.compile(r"[a-z_]+(?:\.[a-z_]+)+")  # "eval.splits ..." opens a cross-key rule


def _describe(err: ErrorDetails, origin: _Origin, files: list[str]) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = ".".join(str(p) for p in loc) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if not loc and (m := _KEY_IN_MESSAGE.match(msg)):  # a rule across keys that names its key
        loc_named: tuple[object, ...] = tuple(m.group().split("."))
        src = _blame(loc_named, origin, files) or files[-1]
        return f"{src}: {msg}"
    src = _blame(loc, origin, files) or files[-1]
    if err["type"] == "extra_forbidden":
        hint = difflib.get_close_matches(str(loc[-1]), _known_keys(Params, loc[:-1]), n=1)
        more = f" (did you mean '{'.'.join(map(str, loc[:-1] + (hint[0],)))}'?)" if hint else ""
        return f"{src}: unknown key '{key}'{more}"
    if err["type"] == "missing":
        return f"{src}: missing key '{key}'"
    if not loc:  # a rule across keys: the input is the whole profile, too long to echo
        return f"{src}: {msg}"
    return f"{src}: key '{key}': {err['msg']} {_echo(loc, err.get('input'))}"


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
        if parent is not None and (why := bad_name(parent)):
            raise ParamsError(f"{display(path)}: key 'extends': {why}")
        chain.append((path, data))
        name = parent
    return chain[::-1]


def load_params(profile: str, params_dir: Path | str = PARAMS_DIR) -> Params:
    """Load `base.yaml` + `<profile>.yaml` (after the profiles it `extends`, if any) and validate;
    raise ParamsError naming the file and the key. A relative `params_dir` is taken from the
    project root (`paradox.paths`), so this works from `notebooks/` as from the root."""
    if why := bad_name(profile):  # before any file is opened: the name becomes a path
        raise ParamsError(f"profile {_ECHO.repr(profile)}: {why}")
    params_dir = resolve(params_dir)
    base_path, prof_path = params_dir / BASE_FILE, params_dir / f"{profile}.yaml"
    origin: _Origin = {}
    merged = _merge({}, _read_yaml(base_path), origin, display(base_path))
    layers = [display(base_path)]
    for path, data in _profile_chain(params_dir, profile):
        merged = _merge(merged, data, origin, display(path))
        layers.append(display(path))
    merged.setdefault("profile", profile)
    origin.setdefault(("profile",), display(prof_path))
    if merged["profile"] != profile:
        raise ParamsError(
            f"{display(prof_path)}: key 'profile' is {_ECHO.repr(merged['profile'])}, expected {profile!r} "
            "(the file's name)"
        )
    try:
        params = Params.model_validate(merged)
    except ValidationError as err:
        lines = [_describe(e, origin, layers) for e in err.errors()]
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
