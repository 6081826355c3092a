import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paradox.params import ParamsError, load_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def pdir(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "params" / "base.yaml", tmp_path / "base.yaml")
    return tmp_path


@pytest.mark.parametrize("profile", ["toy", "smoke", "toy-full"])
def test_shipped_profiles_validate(profile):
    p = load_params(profile, ROOT / "params")
    assert p.profile == profile and p.world == "toy"
    assert p.hash() == load_params(profile, ROOT / "params").hash()


def test_unknown_nested_key_names_file_key_and_suggests(pdir):
    (pdir / "bad.yaml").write_text(
        (ROOT / "params" / "smoke.yaml").read_text() + "\ntrain:\n  learnig_rate: 0.1\n"
    )
    with pytest.raises(ParamsError) as err:
        load_params("bad", pdir)
    msg = str(err.value)
    assert str(pdir / "bad.yaml") in msg and "train.learnig_rate" in msg and "train.learning_rate" in msg


def test_wrong_type_names_the_file_that_set_it(pdir):
    (pdir / "bad.yaml").write_text((ROOT / "params" / "smoke.yaml").read_text() + "\neval:\n  k: many\n")
    with pytest.raises(ParamsError, match=r"bad\.yaml: key 'eval\.k'"):
        load_params("bad", pdir)


def test_error_in_base_is_blamed_on_base(pdir):
    (pdir / "base.yaml").write_text((pdir / "base.yaml").read_text() + "\nsampling_typo: 1\n")
    shutil.copy(ROOT / "params" / "smoke.yaml", pdir / "smoke.yaml")
    with pytest.raises(ParamsError, match=r"base\.yaml: unknown key 'sampling_typo'"):
        load_params("smoke", pdir)


def test_missing_profile_file(pdir):
    with pytest.raises(ParamsError, match=r"nope\.yaml: params file not found"):
        load_params("nope", pdir)


def test_missing_toy_section_and_unknown_stream(pdir):
    (pdir / "bad.yaml").write_text("description: x\nworld: toy\n")
    with pytest.raises(ParamsError, match="missing key 'toy'|'toy' section is missing"):
        load_params("bad", pdir)
    (pdir / "bad2.yaml").write_text(
        (ROOT / "params" / "smoke.yaml").read_text() + "\ntrain:\n  streams: [slm_rft, oracle_refind]\n"
    )
    with pytest.raises(ParamsError, match="oracle_refind"):
        load_params("bad2", pdir)


def test_experiment_sections_are_checked(pdir):
    smoke = (ROOT / "params" / "smoke.yaml").read_text()
    (pdir / "prompts").mkdir()
    (pdir / "b1.yaml").write_text(smoke + "\ngrid:\n  streams: [slm_rtf]\n")
    with pytest.raises(ParamsError, match="grid.streams: unknown stream"):
        load_params("b1", pdir)
    (pdir / "b2.yaml").write_text(smoke + "\ndrift:\n  fractions: [0.5, 1.5]\n")
    with pytest.raises(ParamsError, match=r"drift.fractions must lie in \[0, 1\]"):
        load_params("b2", pdir)
    (pdir / "b3.yaml").write_text(smoke + "\nanalysis:\n  retention_prompt: params/prompts/nope.txt\n")
    with pytest.raises(ParamsError, match=r"b3\.yaml: key 'analysis.retention_prompt': file not found"):
        load_params("b3", pdir)


def test_learning_curve_splits_must_be_evaluated(pdir):
    """Checkpoints are evaluated on `learning_curve.splits`: one that is not an evaluation split
    used to crash 05 after every model was evaluated; now the params fail (make plan, first second)."""
    smoke = (ROOT / "params" / "smoke.yaml").read_text()
    (pdir / "lc1.yaml").write_text(
        smoke.replace("learning_curve:\n", "learning_curve:\n  splits: [math500]\n", 1)
    )
    with pytest.raises(ParamsError, match=r"learning_curve.splits \['math500'\] are not in eval.splits"):
        load_params("lc1", pdir)
    from paradox.params import Params

    data = load_params("smoke").model_dump()
    data["learning_curve"].update(splits=["math500"], checkpoints=0)
    assert Params.model_validate(data).learning_curve.checkpoints == 0  # curves off: nothing to evaluate


def test_bad_params_fail_fast_from_the_command_line(pdir):
    (pdir / "bad.yaml").write_text("description: x\nworld: toy\nsed: 3\n")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", f"from paradox.params import load_params; load_params('bad', '{pdir}')"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "unknown key 'sed'" in proc.stderr and "bad.yaml" in proc.stderr
    assert time.perf_counter() - t0 < 5
