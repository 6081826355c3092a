"""The vLLM backend is optional: the main environment imports it and gets a clear error on use.
(Its behaviour is tested in tests/vllm_engine/, in the vLLM environment: `make test-vllm`.)"""

from pathlib import Path

import pytest

from paradox import backends
from paradox.params import RewardModel, VLLMEngine, load_params

ROOT = Path(__file__).resolve().parents[1]


def _has_vllm() -> bool:
    # Not find_spec("vllm"): any directory named vllm on sys.path is found as a namespace package.
    try:
        from vllm import LLM  # noqa: F401
    except ImportError:
        return False
    return True


pytestmark = pytest.mark.skipif(_has_vllm(), reason="vLLM is installed: tests/vllm_engine/ covers it")


def test_module_imports_without_vllm_and_says_how_to_get_it():
    from paradox.vllm_backend import VLLMGenerator, VLLMMissing, VLLMReward

    with pytest.raises(VLLMMissing, match="make vllm-env"):
        VLLMGenerator.from_pretrained("some/model")
    rm = VLLMReward(RewardModel(backend="vllm", name_or_path="some/rm"))  # the engine starts on first use
    with pytest.raises(VLLMMissing, match="gpu"):
        rm.load()


def test_params_choose_the_vllm_backends():
    from paradox.vllm_backend import VLLMMissing, VLLMReward

    p = load_params("smoke", ROOT / "params")
    p = p.model_copy(update={"sampling": p.sampling.model_copy(update={"backend": "vllm"})})
    with pytest.raises(VLLMMissing):
        backends.generator(p, "some/model", batch_size=4)
    spec = RewardModel(backend="vllm", name_or_path="some/rm")
    assert isinstance(backends.reward_model(p, spec), VLLMReward)


def test_data_parallel_is_refused_before_vllm_is_needed():
    from paradox.vllm_backend import VLLMGenerator

    with pytest.raises(ValueError, match="data-parallel-size"):
        VLLMGenerator.from_pretrained("some/model", VLLMEngine(data_parallel_size=2))
