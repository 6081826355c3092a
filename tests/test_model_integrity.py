"""Damaged or missing model directories (issue 11 item 3): rebuilt when a stage would reuse one,
a clear error naming the path and the stage that makes it when a stage would load one."""

import os
import shutil

import pytest

from paradox.models import check_local_model, load_model, model_dir_problems, reusable_model_dir
from paradox.paths import local_or_hub


@pytest.fixture
def model_copy(tiny_lm, tmp_path):
    d = tmp_path / "runs" / "toy" / "models" / "rft-nll-s0"
    shutil.copytree(tiny_lm, d)
    return d


def test_a_whole_model_is_reused(model_copy):
    assert model_dir_problems(model_copy) == [] and reusable_model_dir(model_copy)


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (
            lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:-100]),
            "bytes",
        ),
        (lambda d: (d / "model.safetensors").write_bytes(b"\x05"), "unreadable safetensors header"),
        (lambda d: (d / "model.safetensors").unlink(), "no weight files"),
        (lambda d: (d / "config.json").write_text('{"model_type": '), "config.json"),
    ],
    ids=["weights-cut", "header-cut", "weights-deleted", "config-cut"],
)
def test_a_damaged_model_is_rebuilt_not_reused_and_refused_by_the_loader(model_copy, caplog, damage, says):
    damage(model_copy)
    with caplog.at_level("WARNING", logger="paradox.models"):
        assert not reusable_model_dir(model_copy)
    assert "rft-nll-s0" in caplog.text and says in caplog.text
    with pytest.raises(
        FileNotFoundError, match=rf"rft-nll-s0: not a usable model directory \(.*{says}.*notebook 04"
    ):
        load_model(str(model_copy))


def test_weights_overwritten_in_place_at_the_same_size_are_caught_by_the_runs_marker(model_copy, caplog):
    """Sizes and safetensors headers were all the old check read: bytes changed inside the weights
    were loaded (05 then sampled the damaged model: rc 0, other numbers)."""
    from paradox.io import DoneMarker

    marker = DoneMarker(model_copy, "k")
    marker.mark()
    weights = model_copy / "model.safetensors"
    os.utime(weights, ns=(0, 0))  # another modification time, the same bytes: nothing to report
    assert marker.is_done() and marker.content_problems() == []
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of a weight, in place: same size, header intact
    weights.write_bytes(bytes(data))
    assert model_dir_problems(model_copy) == []  # the structural check cannot see it
    with caplog.at_level("WARNING", logger="paradox.io"):
        assert not marker.is_done()
    assert "model.safetensors changed" in caplog.text
    with pytest.raises(FileNotFoundError, match=r"rft-nll-s0: .*model\.safetensors changed.*notebook 04"):
        load_model(str(model_copy))


def test_a_deleted_run_is_named_with_its_stage_not_taken_for_a_hub_id(model_copy):
    shutil.rmtree(model_copy)
    assert not reusable_model_dir(model_copy)  # absent: simply built
    with pytest.raises(
        FileNotFoundError, match=r"rft-nll-s0: not a usable model directory \(missing\).*notebook 04"
    ):
        load_model(str(model_copy))
    with pytest.raises(FileNotFoundError, match=r"slm/abc.*notebook 00"):
        check_local_model("runs/.cache/slm/abc")


def test_local_or_hub_refuses_a_missing_path_but_keeps_hub_ids():
    for name in ("runs/toy/models/nope", "./nope", "../nope", "/nope/model", "~/nope"):
        with pytest.raises(FileNotFoundError, match="no such local path"):
            local_or_hub(name)
    assert local_or_hub("Qwen/Qwen2.5-Math-1.5B") == "Qwen/Qwen2.5-Math-1.5B"
    check_local_model("Qwen/Qwen2.5-Math-1.5B")  # a hub id is the hub's to resolve


def test_toy_slm_cache_decision_is_the_library_check():
    """Notebook 00 decides reuse of runs/.cache/slm/<key>/ with reusable_model_dir (tested above),
    not by config.json alone (a cut weights file kept failing every later stage)."""
    from pathlib import Path

    text = Path(__file__).parents[1].joinpath("notebooks", "00_toy_world.py").read_text()
    assert "if reusable_model_dir(slm_dir):" in text and '(slm_dir / "config.json").is_file()' not in text


def test_04_retrains_a_run_whose_weights_were_cut_and_keeps_the_others(tiny_lm, tmp_path, monkeypatch):
    from paradox.io import atomic_dir, write_json, write_jsonl
    from paradox.params import load_params
    from paradox.paths import RunPaths
    from paradox.training import fine_tune
    from paradox.training.runs import training_runs

    params = load_params("toy")
    paths = RunPaths("toy", tmp_path / "runs")
    write_json(paths.world / "slm.json", {"path": str(tiny_lm)})
    runs = training_runs(params)
    for s in {r.stream for r in runs}:
        write_jsonl(paths.stream(s), [{"prompt": "Q: 1+1\nA:\n", "completion": "2"}])
    trained = []

    def fake_sft_train(model, tok, rows, out, settings, **kw):  # the weights themselves do not matter here
        trained.append(out.name)
        with atomic_dir(out) as tmp:
            shutil.copytree(tiny_lm, tmp, dirs_exist_ok=True)
            write_json(tmp / "train_info.json", {"max_steps": 1, "n_rows": 1, "seconds": 0.0})

    monkeypatch.setattr(fine_tune, "load_model", lambda *a, **kw: (None, None))
    monkeypatch.setattr(fine_tune, "sft_train", fake_sft_train)
    fine_tune.fine_tune_all(params, paths)
    n_trained = len(trained)
    assert n_trained >= 1
    victim = paths.models / trained[0] / "model.safetensors"
    victim.write_bytes(victim.read_bytes()[:-64])  # as a full disk or a killed copy leaves it
    fine_tune.fine_tune_all(params, paths)
    assert trained[n_trained:] == [trained[0]] and model_dir_problems(victim.parent) == []
