import re
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
    shutil.copy(ROOT / "params" / "smoke.yaml", tmp_path / "smoke.yaml")
    return tmp_path


def over_smoke(pdir: Path, name: str, yaml_text: str) -> str:
    """A profile `name` that extends smoke and sets `yaml_text` (appending to smoke.yaml's text
    would write its sections twice: an error of its own now)."""
    (pdir / f"{name}.yaml").write_text("extends: smoke\n" + yaml_text)
    return name


@pytest.mark.parametrize("profile", ["toy", "smoke", "toy-full"])
def test_shipped_profiles_validate(profile):
    p = load_params(profile, ROOT / "params")
    assert p.profile == profile and p.world == "toy"
    assert p.hash() == load_params(profile, ROOT / "params").hash()


def test_unknown_nested_key_names_file_key_and_suggests(pdir):
    with pytest.raises(ParamsError) as err:
        load_params(over_smoke(pdir, "bad", "train:\n  learnig_rate: 0.1\n"), pdir)
    msg = str(err.value)
    assert str(pdir / "bad.yaml") in msg and "train.learnig_rate" in msg and "train.learning_rate" in msg


def test_wrong_type_names_the_file_that_set_it(pdir):
    with pytest.raises(ParamsError, match=r"bad\.yaml: key 'eval\.k'"):
        load_params(over_smoke(pdir, "bad", "eval:\n  k: many\n"), pdir)


def test_error_in_base_is_blamed_on_base(pdir):
    (pdir / "base.yaml").write_text((pdir / "base.yaml").read_text() + "\nsampling_typo: 1\n")
    with pytest.raises(ParamsError, match=r"base\.yaml: unknown key 'sampling_typo'"):
        load_params("smoke", pdir)


def test_missing_profile_file(pdir):
    with pytest.raises(ParamsError, match=r"nope\.yaml: params file not found"):
        load_params("nope", pdir)


def test_missing_toy_section_and_unknown_stream(pdir):
    (pdir / "bad.yaml").write_text("description: x\nworld: toy\n")
    with pytest.raises(ParamsError, match="missing key 'toy'|'toy' section is missing"):
        load_params("bad", pdir)
    over_smoke(pdir, "bad2", "train:\n  streams: [slm_rft, oracle_refind]\n")
    with pytest.raises(ParamsError, match="oracle_refind"):
        load_params("bad2", pdir)


def test_experiment_sections_are_checked(pdir):
    (pdir / "prompts").mkdir()
    over_smoke(pdir, "b1", "grid:\n  streams: [slm_rtf]\n")
    with pytest.raises(ParamsError, match="grid.streams: unknown stream"):
        load_params("b1", pdir)
    over_smoke(pdir, "b2", "drift:\n  fractions: [0.5, 1.5]\n")
    with pytest.raises(ParamsError, match=r"drift.fractions must lie in \[0, 1\]"):
        load_params("b2", pdir)
    over_smoke(pdir, "b3", "analysis:\n  retention_prompt: params/prompts/nope.txt\n")
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


# --- issue 11, item 4: params that are wrong fail at check time, safely, naming the file ---

SECRET = "sk-proj-Q7aZ0xkP3mN8rT2vW5yB9cD1eF4gH6jK"  # made up, shaped like an OpenAI key


def test_toy_params_hash_is_unchanged():
    assert load_params("toy", ROOT / "params").hash() == "0d18faea89e2"


def test_invalid_utf8_names_the_file(pdir):
    (pdir / "bad.yaml").write_bytes(b"extends: smoke\ndescription: caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(ParamsError, match=r"bad\.yaml: not UTF-8 text \(byte 0xe9 on line 2\)"):
        load_params("bad", pdir)


def test_duplicate_key_names_file_key_and_both_lines(pdir):
    """PyYAML keeps the last of two equal keys: the first `train:` section vanished silently."""
    over_smoke(pdir, "bad", "train:\n  epochs: 3\neval:\n  k: 2\ntrain:\n  learning_rate: 0.1\n")
    with pytest.raises(ParamsError, match=r"bad\.yaml: .*key 'train' is set twice .* line 2 and line 6"):
        load_params("bad", pdir)


@pytest.mark.parametrize("section", ["oracle", "endpoint", "reward"])
@pytest.mark.parametrize("value", [SECRET, "hf_Q7aZ0xkP3mN8rT2vW5yB9cD1eF4gH6jKLm"])
def test_a_key_in_params_is_never_echoed_and_is_blamed_on_the_profile(pdir, section, value):
    over_smoke(pdir, "bad", f"{section}:\n  api_key_env: {value}\n")
    with pytest.raises(ParamsError) as err:
        load_params("bad", pdir)
    msg = str(err.value)
    assert value[:8] not in msg and "base.yaml" not in msg
    assert f"bad.yaml: key '{section}.api_key_env'" in msg


def test_secret_looking_strings_are_hidden_under_any_key(pdir):
    over_smoke(pdir, "bad", f"description: [{SECRET}]\nslm:\n  revision: [x, '{SECRET[3:]}']\n")
    with pytest.raises(ParamsError) as err:
        load_params("bad", pdir)
    assert "key 'description'" in str(err.value) and SECRET[8:20] not in str(err.value)


def test_alias_bomb_is_refused_and_messages_are_bounded(pdir):
    bomb = "x0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 6)
    )
    over_smoke(pdir, "bomb", bomb + "description: *a5\n")  # ~400 bytes, 9**6 strings
    with pytest.raises(ParamsError, match=r"bomb\.yaml: not valid YAML: line 2, .*anchors and aliases"):
        load_params("bomb", pdir)
    over_smoke(pdir, "long", "description: [" + ", ".join(["word"] * 20000) + "]\n")
    with pytest.raises(ParamsError, match=r"long\.yaml: key 'description'") as err:
        load_params("long", pdir)
    assert len(str(err.value)) < 600


def test_shipped_params_files_use_no_anchors_or_duplicate_keys():
    for path in sorted((ROOT / "params").glob("*.yaml")):
        from paradox.params import _read_yaml

        assert isinstance(_read_yaml(path), dict), path


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("eval:\n  splits: [test, hardd]\n", "eval.splits"),  # the toy world has test and hard
        ("eval:\n  splits: [test, ../../tmp/x]\n", "eval.splits"),  # a split becomes a path
        ("seed: 1.0e+23\n", "seed"),
        ("seed: 100000000000000000000000\n", "seed"),
        ("seed: -1\n", "seed"),
        ("train:\n  learning_rate: .inf\n", "train.learning_rate"),
        ("eval:\n  temperature: .nan\n", "eval.temperature"),
        ("eval:\n  k: 1.0e+24\n", "eval.k"),
        ("eval:\n  k: 1000000000000000000000000\n", "eval.k"),
        ("eval:\n  k: yes\n", "eval.k"),  # YAML 1.1: a boolean, which pydantic took as 1
        ("sampling:\n  k: 4.0\n", "sampling.k"),
        ("style_align:\n  max_ppl_ratio: true\n", "style_align.max_ppl_ratio"),
        ("train:\n  streams: []\n", "train.streams"),
        ("train:\n  streams: [slm_rft, slm_rft]\n", "train.streams"),
        ("train:\n  seeds: [0, 0]\n", "train.seeds"),
        ("drift:\n  fractions: [0.001, 0.002]\n", "drift.fractions"),  # both were drift_000
        ("drift:\n  fractions: [0.333]\n", "drift.fractions"),  # run at 0.333, reported at 0.33
        ("toy:\n  problems:\n    n_train: 10000000000000\n", "toy.problems.n_train"),
        (
            "datasets:\n  ../x:\n    hub_id: a/b\n    split: test\n    question_field: q\n    answer_field: a\n",
            "datasets",
        ),
    ],
)
def test_values_that_validated_but_failed_late_fail_at_check_time(pdir, yaml_text, key):
    over_smoke(pdir, "bad", yaml_text)
    with pytest.raises(ParamsError, match=rf"bad\.yaml: (key ')?{key.replace('.', '[.]')}"):
        load_params("bad", pdir)


@pytest.mark.parametrize("name", ["../evil", "..", "a/b", ".hidden", "/tmp/evil", "x..y"])
def test_profile_names_that_are_paths_are_refused_before_any_file_is_read(pdir, name):
    (pdir.parent / "evil.yaml").write_text((ROOT / "params" / "smoke.yaml").read_text())
    with pytest.raises(ParamsError, match=r"must be a plain name"):
        load_params(name, pdir)


def test_extends_must_name_a_profile_not_a_path(pdir):
    (pdir.parent / "evil.yaml").write_text((ROOT / "params" / "smoke.yaml").read_text())
    (pdir / "bad.yaml").write_text("extends: ../evil\n")
    with pytest.raises(ParamsError, match=r"bad\.yaml: key 'extends': must be a plain name"):
        load_params("bad", pdir)


def test_toy_eval_splits_are_the_ones_notebook_00_writes():
    from paradox.params import TOY_EVAL_SPLITS

    text = (ROOT / "notebooks" / "00_toy_world.py").read_text()
    sizes = re.search(r"^sizes = \{(.*)\}$", text, re.M)
    assert sizes is not None
    written = set(re.findall(r'"(\w+)":', sizes.group(1)))
    assert set(TOY_EVAL_SPLITS) <= written and set(TOY_EVAL_SPLITS) == written - {"train", "pretrain"}


def test_profile_world_refuses_the_same_names(tmp_path):
    """The Makefile asks profile_world.py (system python3) first: it refuses a path as paradox.params does."""
    from paradox.params import NAME
    from paradox.profile_world import NAME as MAKE_NAME
    from paradox.profile_world import ProfileError, world_and_files

    assert MAKE_NAME.pattern == NAME.pattern
    (tmp_path / "evil.yaml").write_text("world: toy\n")
    (tmp_path / "params").mkdir()
    for name in ("../evil", "..", "a/b"):
        with pytest.raises(ProfileError, match="not a profile name"):
            world_and_files(name, tmp_path / "params")
    (tmp_path / "params" / "bad.yaml").write_text("extends: ../evil\n")
    with pytest.raises(ProfileError, match=r"bad\.yaml: key 'extends': '\.\./evil' is not a profile name"):
        world_and_files("bad", tmp_path / "params")


def test_a_fields_own_bounds_survive_the_32_bit_range():
    """Int's 32-bit range once was an annotated Interval, whose ge/le replaced the field's own:
    k's le=MAX_K and grade_workers' ge=0 were silently lost."""
    from paradox.params import MAX_K, Eval

    base = dict(splits=("test",), temperature=1.0, max_new_tokens=8, batch_size=1)
    for bad, key in (({"k": MAX_K + 1}, "k"), ({"k": 2, "grade_workers": -1}, "grade_workers")):
        with pytest.raises(ValueError, match=key):
            Eval(**base, **bad)
    with pytest.raises(ValueError, match="32-bit"):
        Eval(**base, k=2, grade_workers=2**40)


def test_a_key_added_later_changes_the_hash_only_when_set():
    toy = load_params("toy", ROOT / "params")
    eager = toy.model_copy(update={"slm": toy.slm.model_copy(update={"attn_implementation": "eager"})})
    assert toy.slm.attn_implementation is None and eager.hash() != toy.hash()
