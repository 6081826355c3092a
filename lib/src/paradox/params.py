"""Params: `params/base.yaml` layered with one profile file, validated by a strict schema.

Every mistake is reported before any work starts, naming the file that set the offending key
(or the profile file, for a key that is missing), so a typo in `toy.yaml` never silently falls
back to a default.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from paradox.paths import display, resolve

PARAMS_DIR = Path("params")  # relative to the project root (paradox.paths), wherever the kernel starts
BASE_FILE = "base.yaml"


STREAMS = ("slm_rft", "ground_truth", "oracle_refined", "oracle_synthesized", "style_aligned")


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
    prompt_template: str  # formatted with {question}
    use_chat_template: bool = False
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


class VLLMEngine(Strict):
    """vLLM engine settings, used wherever a backend is `vllm` (sampling, evaluation, reward)."""
    tensor_parallel_size: int = Field(1, gt=0)
    data_parallel_size: int = Field(1, gt=0)  # engine replicas, each on tensor_parallel_size GPUs
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_model_len: int | None = Field(None, gt=0)
    enforce_eager: bool = False


class Sampling(Strict):
    backend: Literal["hf", "vllm"] = "hf"
    k: int = Field(gt=0)
    temperature: float = Field(ge=0)
    top_p: float = Field(gt=0, le=1)
    max_new_tokens: int = Field(gt=0)
    batch_size: int = Field(gt=0)


class RFT(Strict):
    # Which correct trace a solvable problem keeps: the paper does not say, so it is a choice.
    choose: Literal["first", "shortest", "random"] = "first"
    # Light cleaning (paradox.rft): "layout" keeps the SLM's own layout (blank lines, indentation,
    # code) and drops only noise after the conclusion; "lines" is for an SLM that writes one step
    # per line (the toy one): each line stripped, blank lines dropped, cut after the first answer
    # line. true = the world's own: "lines" in a toy world, "layout" in a real one; false = none.
    clean: bool | Literal["layout", "lines"] = True


class OraclePrompts(Strict):
    """Prompt files (paths from the repository root); each names its placeholders in braces."""
    refine: str = "params/prompts/oracle_refine.txt"
    synthesize: str = "params/prompts/oracle_synthesize.txt"
    locate: str = "params/prompts/oracle_locate_error.txt"
    style_align: str = "params/prompts/style_align.txt"
    drift: str = "params/prompts/oracle_drift.txt"


class Oracle(Strict):
    backend: Literal["toy", "openai"] = "toy"
    # openai: any OpenAI-compatible endpoint (a hosted API or a `vllm serve`d model).
    base_url: str | None = None
    model: str | None = None
    # The NAME of the environment variable holding the API key; the key itself never enters params.
    api_key_env: str = "OPENAI_API_KEY"
    # null = not sent: reasoning models (OpenAI's GPT-5 class) accept only their defaults.
    temperature: float | None = Field(0.0, ge=0)
    top_p: float | None = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(4096, gt=0)
    # The request field carrying max_tokens: OpenAI's reasoning models take max_completion_tokens.
    token_limit_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    seed: int | None = None
    concurrency: int = Field(8, gt=0)   # requests in flight
    max_retries: int = Field(6, ge=0)   # on 429, 5xx, timeouts and dropped connections, with backoff
    timeout_s: float = Field(600.0, gt=0)
    prompts: OraclePrompts = OraclePrompts()
    # Style-Aligned Refinement's error locator: the Oracle with the `locate` prompt, or a PRM.
    locator: Literal["oracle", "prm"] = "oracle"
    prm: str | None = None              # e.g. Qwen/Qwen2.5-Math-PRM-7B (locator: prm)
    prm_threshold: float = Field(0.5, gt=0, lt=1)  # first step whose PRM score is below this is wrong

    @model_validator(mode="after")
    def _endpoint(self) -> Oracle:
        if self.backend == "openai" and not (self.base_url and self.model):
            raise ValueError("oracle.backend 'openai' needs oracle.base_url and oracle.model")
        if self.locator == "prm" and not self.prm:
            raise ValueError("oracle.locator 'prm' needs oracle.prm (a process reward model)")
        if not self.api_key_env.replace("_", "").isalnum() or self.api_key_env.startswith("sk-"):
            raise ValueError("oracle.api_key_env names an environment variable (e.g. OPENAI_API_KEY); "
                             "never put the key itself in params")
        return self


class RewardModel(Strict):
    backend: Literal["toy", "hf", "vllm"] = "toy"
    name_or_path: str | None = None
    revision: str | None = None
    # seq_cls: one logit per sequence, AutoModelForSequenceClassification (Skywork-Reward class);
    # remote_code: a per-token reward head read at the last token (Qwen2.5-Math-RM-72B): with backend
    # hf the checkpoint's own AutoModel class (trust_remote_code), with vllm vLLM's own implementation.
    head: Literal["seq_cls", "remote_code"] = "seq_cls"
    trust_remote_code: bool = False
    system_prompt: str | None = None    # chat: system (optional), user = question, assistant = trace
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = Field(8, gt=0)
    max_length: int = Field(4096, gt=0)

    @model_validator(mode="after")
    def _model(self) -> RewardModel:
        if self.backend != "toy" and not self.name_or_path:
            raise ValueError(f"reward backend '{self.backend}' needs name_or_path")
        if self.backend == "hf" and self.head == "remote_code" and not self.trust_remote_code:
            # Without it AutoModel falls back to the bare base model, whose first output is hidden states.
            raise ValueError(f"reward model {self.name_or_path}: head 'remote_code' with backend 'hf' runs the "
                             "checkpoint's own code; set trust_remote_code: true for it")
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
    # `python -m paradox.train_run` with `accelerate_config` (FSDP/DeepSpeed) on num_processes.
    launcher: Literal["inline", "accelerate"] = "inline"
    accelerate_config: str | None = None
    num_processes: int = Field(1, gt=0)
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
            raise ValueError(f"batch size {batch_size} is not a multiple of per_device_batch_size "
                             f"{per_device} x num_processes {self.num_processes}")
        return per_device, accum


class Eval(Strict):
    splits: tuple[str, ...]
    k: int = Field(gt=0)
    temperature: float = Field(ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    grade_timeout_s: float = Field(5.0, gt=0)


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
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict)  # world "real": split name -> dataset

    @model_validator(mode="after")
    def _consistent(self) -> Params:
        if self.rft.clean is True:  # the world's own cleaning (see RFT.clean)
            object.__setattr__(self, "rft", self.rft.model_copy(
                update={"clean": "lines" if self.world == "toy" else "layout"}))
        if self.world == "toy" and self.toy is None:
            raise ValueError("world is 'toy' but the 'toy' section is missing")
        if self.world == "real":
            needed = ["train", *self.eval.splits]
            missing = [s for s in needed if s not in self.datasets]
            if missing:
                raise ValueError(f"world is 'real' but datasets has no entry for split(s) {missing}")
        for key, names in (("train.streams", self.train.streams), ("grid.streams", self.grid.streams),
                           ("selection.candidates", self.selection.candidates),
                           ("learning_curve.streams", self.learning_curve.streams)):
            unknown = [s for s in names if s not in STREAMS]
            if unknown:
                raise ValueError(f"{key}: unknown stream(s) {unknown}; known: {list(STREAMS)}")
        if any(not 0 <= f <= 1 for f in self.drift.fractions):
            raise ValueError(f"drift.fractions must lie in [0, 1], got {list(self.drift.fractions)}")
        if self.grid.streams and not (self.grid.learning_rates and self.grid.batch_sizes):
            raise ValueError("grid.streams is set but grid.learning_rates or grid.batch_sizes is empty")
        for bs in (self.train.batch_size, *self.grid.batch_sizes):
            self.train.split_batch(bs)
        if self.train.launcher == "accelerate" and not self.train.accelerate_config:
            raise ValueError("train.launcher 'accelerate' needs train.accelerate_config (a file under params/accelerate/)")
        missing_splits = [s for s in self.learning_curve.splits if s not in self.eval.splits]
        if self.learning_curve.checkpoints and missing_splits:
            raise ValueError(f"learning_curve.splits {missing_splits} are not evaluation splits (eval.splits)")
        return self

    def hash(self) -> str:
        """Stable hash of the validated params (the profile's identity in sidecars)."""
        return stable_hash(self.model_dump(mode="json"))


def stable_hash(obj: Any, n: int = 12) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


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


def _merge(base: dict, over: dict, origin: dict, src: str, prefix: tuple = ()) -> dict:
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


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
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


def _describe(err: dict, origin: dict, profile_file: str) -> str:
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
            raise ParamsError(f"{display(chain[-1][0])}: key 'extends': profiles extend each other in a cycle ({name})")
        data = _read_yaml(path)
        parent = data.pop("extends", None)
        if parent is not None and (not isinstance(parent, str) or parent == BASE_FILE.removesuffix(".yaml")):
            raise ParamsError(f"{display(path)}: key 'extends' must name another profile (base.yaml is always first)")
        chain.append((path, data))
        name = parent
    return chain[::-1]


def load_params(profile: str, params_dir: Path | str = PARAMS_DIR) -> Params:
    """Load `base.yaml` + `<profile>.yaml` (after the profiles it `extends`, if any) and validate;
    raise ParamsError naming the file and the key. A relative `params_dir` is taken from the
    project root (`paradox.paths`), so this works from `notebooks/` as from the root."""
    params_dir = resolve(params_dir)
    base_path, prof_path = params_dir / BASE_FILE, params_dir / f"{profile}.yaml"
    origin: dict[tuple, str] = {}
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
    files = {("analysis", "retention_prompt"): params.analysis.retention_prompt,
             ("train", "accelerate_config"): params.train.accelerate_config}
    if params.oracle.backend == "openai":
        files |= {("oracle", "prompts", k): v for k, v in params.oracle.prompts.model_dump().items()}
    for key, rel in files.items():
        if rel is not None and not (params_dir.parent / rel).is_file():
            src = origin.get(key, origin.get(key[:2], display(base_path)))
            raise ParamsError(f"{src}: key '{'.'.join(key)}': file not found: {display(params_dir.parent / rel)}")
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
