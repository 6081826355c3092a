"""Adapters chosen by params: the notebooks ask for a problem source, a generator, an Oracle and a
reward model, and never see which world (toy or real) is behind them."""

from __future__ import annotations

from pathlib import Path

from paradox.generation import Generator, HFGenerator
from paradox.io import read_json
from paradox.params import Params, RewardModel
from paradox.paths import RunPaths, local_or_hub, project_root, resolve
from paradox.problems import JsonlProblemSource, ProblemSource

TOY_SLM = "toy"


class NotBuiltYet(NotImplementedError):
    """A real-world adapter this version of the companion does not have yet."""


def _not_built(what: str) -> NotBuiltYet:
    return NotBuiltYet(f"{what} is not built yet in this version of the companion; "
                       "only the toy world runs end to end (see README, 'Profiles').")


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


def load_kwargs(params: Params, model_path: str) -> dict:
    """gguf/revision apply to the base hub model only, never to a fine-tuned local checkpoint."""
    base = params.slm.name_or_path != TOY_SLM and not Path(model_path).is_dir()
    return {"dtype": params.slm.dtype,
            "gguf_file": params.slm.gguf_file if base else None,
            "revision": params.slm.revision if base else None}


def generator(params: Params, model_path: str, batch_size: int) -> Generator:
    """The SLM's sampler; both backends stop on `slm.stop_tokens` / `slm.stop_strings` (and EOS)."""
    stops = {"stop_tokens": params.slm.stop_tokens, "stop_strings": params.slm.stop_strings}
    if params.sampling.backend == "hf":
        return HFGenerator.from_pretrained(model_path, batch_size, **stops, **load_kwargs(params, model_path))
    # vllm: the engine batches by itself (batch_size only shapes the shards of sample_sharded).
    kw = load_kwargs(params, model_path)
    if kw["gguf_file"]:
        raise _not_built("GGUF weights with the vLLM backend (use sampling.backend 'hf')")
    from paradox.vllm_backend import VLLMGenerator

    return VLLMGenerator.from_pretrained(model_path, params.vllm, dtype=kw["dtype"], revision=kw["revision"],
                                         seed=params.seed, **stops)


def oracle_cache_dir(paths: RunPaths) -> Path:
    """The Oracle's answers, one JSON file per request (see `paradox.oracle_client`)."""
    return paths.root / "cache" / "oracle"


def oracle(params: Params, paths: RunPaths):
    """ToyOracle, or PromptOracle on an OpenAI-compatible endpoint (cached under the run dir)."""
    if params.oracle.backend == "toy":
        from paradox.toy.oracle import ToyOracle

        return ToyOracle()
    if params.oracle.locator == "prm":
        raise _not_built("the process-reward-model error locator (oracle.locator 'prm'; use 'oracle')")
    from paradox.oracle_client import OracleClient
    from paradox.real_oracle import PromptOracle, load_prompts

    client = OracleClient.from_params(params.oracle, oracle_cache_dir(paths))
    # Prompt files are named from the repository root, the parent of params/ (as load_params checks).
    prompts = load_prompts(params.oracle.prompts.model_dump(), root=project_root())
    return PromptOracle(client, prompts, name=f"{params.oracle.model} ({client.endpoint})")


def reward_model(params: Params, spec: RewardModel | None = None):
    """The reward model `spec` describes: by default the main one (`params.reward`); a cross-check
    model passes its own spec (see `cross_check_rewards`). Each has `name` and `score_many`."""
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
    raise _not_built(f"the '{spec.backend}' reward backend")


def cross_check_rewards(params: Params) -> list:
    """The reward models scored beside the main one (`reward.cross_check`), in params order.

    Hugging Face models load their weights on first use and free them with `close()`, so the list
    can be built at once and scored one model at a time."""
    return [reward_model(params, spec) for spec in params.reward.cross_check]


def fill_template(template: str, question: str) -> str:
    """`template` with its one "{question}" replaced; other braces (\\boxed{}) are left alone,
    which str.format would not do."""
    return template.replace("{question}", question)


def format_prompt(params: Params, question: str, tokenizer=None) -> str:
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
        raise ValueError(f"slm.use_chat_template is true but {params.slm.name_or_path} has no chat template; "
                         "set it to false and give slm.prompt_template the whole prompt")
    _check_chat_rendering(params.slm.prompt_template, tokenizer)
    return _render(tokenizer, text)


def _render(tokenizer, text: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True)


_checked: set[tuple[int, str, str]] = set()


def _check_chat_rendering(template: str, tokenizer) -> None:
    """Checked once per (tokenizer, template), on a neutral question (a real one may quote anything)."""
    key = (id(tokenizer), template, tokenizer.chat_template)
    if key in _checked:
        return
    rendered = _render(tokenizer, fill_template(template, "QUESTION"))
    for line in fill_template(template, "").splitlines():
        line = line.strip()
        if len(line.split()) >= 3 and rendered.count(line) > 1:  # an instruction, not a "Answer:" label
            raise ValueError(f"slm.prompt_template: {line!r} appears {rendered.count(line)} times in the chat "
                             f"prompt of {tokenizer.name_or_path}: the chat template already adds it (a default "
                             f"system prompt?). Rendered prompt:\n{rendered}")
    if not rendered.endswith("\n"):
        raise ValueError(f"the chat prompt of {tokenizer.name_or_path} ends with {rendered[-20:]!r}, not a newline: "
                         "completions are stored without leading whitespace and appended to the prompt")
    _checked.add(key)
