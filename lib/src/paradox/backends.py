"""Adapters chosen by params: the notebooks ask for a problem source, a generator, an Oracle, a
reward model and a retention scorer (the interfaces of `paradox.protocols`), and never see which
world (toy or real) is behind them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paradox.io import read_json
from paradox.params import Params, RewardModel, ToyWorld
from paradox.paths import RunPaths, local_or_hub, project_root, resolve
from paradox.problems import JsonlProblemSource
from paradox.protocols import Generator, Oracle, ProblemSource, RetentionScorer, RewardScorer

if TYPE_CHECKING:
    from paradox.locators import Locator
    from paradox.serving import ServerGroup

TOY_SLM = "toy"


class NotBuiltYet(NotImplementedError):
    """A real-world adapter this version of the companion does not have yet."""


def _not_built(what: str) -> NotBuiltYet:
    return NotBuiltYet(
        f"{what} is not built yet in this version of the companion; "
        "only the toy world runs end to end (see README, 'Profiles')."
    )


def problem_source(params: Params, paths: RunPaths) -> ProblemSource:
    if params.world == "toy":
        return JsonlProblemSource(paths.world)
    from paradox.hf_sources import HFProblemSource

    return HFProblemSource(params.datasets, params.seed)


def slm_path(params: Params, paths: RunPaths) -> str:
    """The base SLM to load: the toy SLM that notebook 00 built, or a hub id / local path."""
    if params.slm.name_or_path == TOY_SLM:
        pointer = paths.world / "slm.json"
        if not pointer.is_file():
            raise FileNotFoundError(f"{pointer}: no toy SLM recorded; run notebook 00 first")
        return str(resolve(read_json(pointer)["path"]))  # recorded relative to the project root
    return local_or_hub(params.slm.name_or_path)


def load_kwargs(params: Params, model_path: str) -> dict[str, Any]:
    """gguf/revision apply to the base hub model only, never to a fine-tuned local checkpoint."""
    base = params.slm.name_or_path != TOY_SLM and not Path(model_path).is_dir()
    return {
        "dtype": params.slm.dtype,
        "gguf_file": params.slm.gguf_file if base else None,
        "revision": params.slm.revision if base else None,
        "attn_implementation": params.slm.attn_implementation,
    }


def generator(
    params: Params, model_path: str, batch_size: int, paths: RunPaths | None = None, purpose: str = "sampling"
) -> Generator:
    """The SLM's sampler for `purpose` "sampling" (01) or "eval" (05); every backend stops on
    `slm.stop_tokens` / `slm.stop_strings` (and EOS) and encodes prompts the same way."""
    backend = params.sampling.backend if purpose == "sampling" else params.eval_backend
    stops = {"stop_tokens": params.slm.stop_tokens, "stop_strings": params.slm.stop_strings}
    if backend == "hf":
        from paradox.generation import HFGenerator  # here: a stage that samples nothing loads no torch

        return HFGenerator.from_pretrained(model_path, batch_size, **stops, **load_kwargs(params, model_path))
    kw = load_kwargs(params, model_path)
    if kw["gguf_file"]:
        raise _not_built(f"GGUF weights with the {backend} backend (use backend 'hf')")
    if backend == "openai":
        if paths is None:
            raise ValueError("backend 'openai' needs the run's paths (its request cache and server logs)")
        return openai_generator(params, model_path, paths)
    # vllm: the engine batches by itself (batch_size only shapes the shards of sample_sharded).
    from paradox.vllm_backend import VLLMGenerator

    return VLLMGenerator.from_pretrained(
        model_path, params.vllm, dtype=kw["dtype"], revision=kw["revision"], seed=params.seed, **stops
    )


def gpu_lock(paths: RunPaths) -> Path:
    """One lock per machine for managed servers: two stages never hold the GPUs at once."""
    return paths.runs_dir / ".cache" / "gpu.lock"


def openai_generator(params: Params, model_path: str, paths: RunPaths) -> Generator:
    """`OpenAIGenerator` on the servers of `endpoint.base_urls`, or on managed servers of
    `model_path` (`endpoint.serve`), which its `close()` stops."""
    from transformers import GenerationConfig

    from paradox.endpoints import EndpointPool
    from paradox.models import load_tokenizer, model_fingerprint
    from paradox.openai_generator import OpenAIGenerator
    from paradox.serving import ServerGroup, ServeSpec
    from paradox.tokenization import Stops

    e, kw = params.endpoint, load_kwargs(params, model_path)
    tok = load_tokenizer(model_path, kw["revision"])
    try:  # the eos ids of generation_config.json stop generation, as for the offline generators
        generation_eos = GenerationConfig.from_pretrained(model_path, revision=kw["revision"]).eos_token_id
    except OSError:
        generation_eos = None
    stops = Stops.resolve(tok, params.slm.stop_tokens, params.slm.stop_strings, generation_eos)
    fingerprint = model_fingerprint(model_path)
    group = None
    urls: list[str] | Callable[[], list[str]]
    if e.serve is not None:
        sv = e.serve
        spec = ServeSpec(
            model=model_path,
            served_name="slm",
            tensor_parallel_size=sv.tensor_parallel_size,
            data_parallel_size=sv.data_parallel_size,
            gpu_memory_utilization=sv.gpu_memory_utilization,
            max_model_len=sv.max_model_len or params.vllm.max_model_len,
            dtype=params.slm.dtype if sv.dtype == "auto" else sv.dtype,
            seed=params.seed,
            enforce_eager=sv.enforce_eager,
            extra_args=(*sv.extra_args, *(("--revision", kw["revision"]) if kw["revision"] else ())),
            env=sv.env,
            start_timeout_s=sv.start_timeout_s,
        )
        group = ServerGroup(
            spec, sv.replicas, paths.root / "logs", name=f"slm-{fingerprint[:10]}", lock_path=gpu_lock(paths)
        )
        # Started on the first request: a model whose samples are all on disk starts no server.
        urls, served, n = (lambda: group.start().base_urls), "slm", sv.replicas
    else:
        urls, served, n = list(e.base_urls), e.served_model_name or params.slm.name_or_path, len(e.base_urls)
    pool = EndpointPool(
        urls,
        api_key_env=e.api_key_env,
        concurrency=e.concurrency,
        max_retries=e.max_retries,
        timeout_s=e.timeout_s,
        expected_endpoints=n,
    )
    return OpenAIGenerator(
        tok,
        pool,
        served,
        fingerprint,
        paths.root / "cache" / "completions",
        stops,
        servers=[group] if group else [],
    )


def oracle_cache_dir(paths: RunPaths) -> Path:
    """The Oracle's answers, one JSON file per request (see `paradox.oracle_client`)."""
    return paths.root / "cache" / "oracle"


def prm_locator(params: Params) -> Locator | None:
    """The profile's process reward model as an error locator: the toy world's stand-in (the exact step
    checker at `toy.prm_standin_error_rate`), or `oracle.prm` on transformers or vLLM; None in a real
    world without `oracle.prm`. Nothing loads before its first `locate_many`."""
    o = params.oracle
    if o.backend == "toy":
        from paradox.toy.prm import StandInPRM

        # (a real world with the toy Oracle has no toy section: the schema's default rate)
        default = ToyWorld.model_fields["prm_standin_error_rate"].default
        return StandInPRM(params.toy.prm_standin_error_rate if params.toy else default, params.seed)
    if o.prm is None:
        return None
    if o.prm_backend == "hf":
        from paradox.prm import HFProcessReward

        return HFProcessReward(o)
    from paradox.vllm_backend import VLLMProcessReward

    return VLLMProcessReward(o, params.vllm, seed=params.seed)  # the engine starts on first use


def oracle(params: Params, paths: RunPaths) -> Oracle:
    """ToyOracle, or PromptOracle on an OpenAI-compatible endpoint (cached under the run dir). With
    `oracle.locator: prm` the Oracle's first wrong steps come from `prm_locator` (docs/prm-locator.md)."""
    locator = prm_locator(params) if params.oracle.locator == "prm" else None
    if params.oracle.backend == "toy":
        from paradox.toy.oracle import ToyOracle

        return ToyOracle(locator)
    from paradox.oracle_client import OracleClient
    from paradox.prompt_oracle import PromptOracle, load_prompts

    # Prompt files are named from the repository root, the parent of params/ (as load_params checks).
    prompts = load_prompts(params.oracle.prompts.model_dump(), root=project_root())
    # Managed servers (oracle.serve) start on the first request that is not in the cache, and
    # PromptOracle.close() stops them.
    servers = oracle_servers(params, paths)
    client = OracleClient.from_params(
        params.oracle,
        oracle_cache_dir(paths),
        base_urls=(lambda: servers.start().base_urls) if servers else (),
    )
    return PromptOracle(
        client,
        prompts,
        name=f"{params.oracle.model} ({client.endpoint})",
        servers=[servers] if servers else [],
        locator=locator,
    )


def locators(params: Params, oracle: Oracle) -> dict[str, Locator]:
    """The error locators notebook 03 runs, by role: "oracle" (the Oracle's own: its `locate` prompt,
    the toy's rule), "prm" (the PRM, or the toy's stand-in) and, with the toy Oracle, "exact" (the step
    checker, the truth, indexing the toy chain as the toy Oracle does). The one `oracle.locator` names is always there; the other only with
    `oracle.compare_locators` (and, in a real world, `oracle.prm`). The PRM is the Oracle's own
    instance when it was handed one (one model, one memory of answers)."""
    from paradox.locators import ExactLocator, OwnOracleLocator

    o = params.oracle
    out: dict[str, Locator] = {}
    if o.locator == "oracle" or o.compare_locators:
        own = (
            "the toy Oracle's rule (the exact step checker)"
            if o.backend == "toy"
            else f"{o.model} (locate prompt)"
        )
        out["oracle"] = OwnOracleLocator(oracle, own)
    if o.locator == "prm" or o.compare_locators:
        prm = getattr(oracle, "locator", None) or prm_locator(params)
        if prm is not None:
            out["prm"] = prm
    if o.backend == "toy":  # (a real Oracle's steps are paragraphs or lines, not the toy chain's)
        out["exact"] = ExactLocator()
    return out


def oracle_servers(params: Params, paths: RunPaths) -> ServerGroup | None:
    """The Oracle's managed `vllm serve` replicas (`oracle.serve`), not started yet; None without it."""
    sv, o = params.oracle.serve, params.oracle
    if sv is None:
        return None
    from paradox.serving import ServerGroup, ServeSpec

    assert o.model is not None
    spec = ServeSpec(
        model=local_or_hub(o.model),
        served_name=o.model,
        tensor_parallel_size=sv.tensor_parallel_size,
        data_parallel_size=sv.data_parallel_size,
        gpu_memory_utilization=sv.gpu_memory_utilization,
        max_model_len=sv.max_model_len or o.context_length,
        dtype=sv.dtype,
        seed=params.seed,
        enforce_eager=sv.enforce_eager,
        extra_args=sv.extra_args,
        env=sv.env,
        start_timeout_s=sv.start_timeout_s,
    )
    return ServerGroup(spec, sv.replicas, paths.root / "logs", name="oracle", lock_path=gpu_lock(paths))


def reward_model(
    params: Params, spec: RewardModel | None = None, paths: RunPaths | None = None
) -> RewardScorer:
    """The reward model `spec` describes: by default the main one (`params.reward`); a cross-check
    model passes its own spec (see `cross_check_rewards`). Each has `name` and `score_many`; none
    loads weights or starts servers before its first `score_many`. `paths`: where managed reward
    servers log and the GPU lock they take (default: the profile's run under runs/)."""
    spec = params.reward if spec is None else spec
    if spec.backend == "toy":
        from paradox.toy.reward import RubricReward

        return RubricReward()
    if spec.backend == "hf":
        from paradox.reward_models import HFReward

        return HFReward(spec)
    if spec.backend == "vllm":
        from paradox.vllm_backend import VLLMReward

        return VLLMReward(spec, params.vllm, seed=params.seed)  # the engine starts on first use
    if spec.backend == "vllm_server":
        from paradox.reward_server import ServedReward

        paths = paths or RunPaths(params.profile)
        return ServedReward(spec, log_dir=paths.root / "logs", lock_path=gpu_lock(paths), seed=params.seed)
    raise _not_built(f"the '{spec.backend}' reward backend")


def cross_check_rewards(params: Params, paths: RunPaths | None = None) -> list[RewardScorer]:
    """The reward models scored beside the main one (`reward.cross_check`), in params order.

    Each loads its weights (or starts its servers) on first use and frees them with `close()`, so
    the list can be built at once and scored one model at a time."""
    return [reward_model(params, spec, paths) for spec in params.reward.cross_check]


def fill_template(template: str, question: str) -> str:
    """`template` with its one "{question}" replaced; other braces (\\boxed{}) are left alone,
    which str.format would not do."""
    return template.replace("{question}", question)


def format_prompt(params: Params, question: str, tokenizer: Any = None) -> str:
    """The SLM's prompt for a question: the params template, optionally as the user turn of the
    tokenizer's chat template (no system message: a template's default system prompt applies, as
    Qwen2.5-Math's does). A rendering that repeats a line of the template (an instruction sent
    twice) or does not end on a newline is an error, found on the first prompt."""
    text = fill_template(params.slm.prompt_template, question)
    if not params.slm.use_chat_template:
        return text
    if tokenizer is None:
        raise ValueError("slm.use_chat_template needs the tokenizer")
    if tokenizer.chat_template is None:
        raise ValueError(
            f"slm.use_chat_template is true but {params.slm.name_or_path} has no chat template; "
            "set it to false and give slm.prompt_template the whole prompt"
        )
    _check_chat_rendering(params.slm.prompt_template, tokenizer)
    return _render(tokenizer, text)


def _render(tokenizer: Any, text: str) -> str:
    rendered: str = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )
    return rendered


_checked: set[tuple[int, str, str]] = set()


def _check_chat_rendering(template: str, tokenizer: Any) -> None:
    """Checked once per (tokenizer, template), on a neutral question (a real one may quote anything)."""
    key = (id(tokenizer), template, tokenizer.chat_template)
    if key in _checked:
        return
    rendered = _render(tokenizer, fill_template(template, "QUESTION"))
    for line in fill_template(template, "").splitlines():
        line = line.strip()
        if len(line.split()) >= 3 and rendered.count(line) > 1:  # an instruction, not a "Answer:" label
            raise ValueError(
                f"slm.prompt_template: {line!r} appears {rendered.count(line)} times in the chat "
                f"prompt of {tokenizer.name_or_path}: the chat template already adds it (a default "
                f"system prompt?). Rendered prompt:\n{rendered}"
            )
    if not rendered.endswith("\n"):
        raise ValueError(
            f"the chat prompt of {tokenizer.name_or_path} ends with {rendered[-20:]!r}, not a newline: "
            "completions are stored without leading whitespace and appended to the prompt"
        )
    _checked.add(key)


def retention_scorer(params: Params, paths: RunPaths) -> RetentionScorer:
    """How much of an SLM trace a rewrite keeps (1-5): exact in the toy world, the Oracle as an LLM
    judge (`analysis.retention_prompt`) elsewhere. `close()` it when done (a managed Oracle stops)."""
    if params.world == "toy":
        from paradox.toy.retention import ExactRetention

        return ExactRetention()
    if params.oracle.backend != "openai":
        raise ValueError("retention in a real world needs the LLM judge: set oracle.backend 'openai'")
    from paradox.retention import JudgeRetention

    return JudgeRetention(
        oracle(params, paths),
        params.analysis.retention_prompt,
        name=f"{params.oracle.model} with {params.analysis.retention_prompt}",
    )
