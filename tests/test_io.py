from pathlib import Path

import pandas as pd
import pytest

from paradox.io import (
    DamagedArtifact,
    DoneMarker,
    atomic_dir,
    atomic_path,
    file_hash,
    read_csv,
    read_jsonl,
    seal_path,
    write_csv,
    write_jsonl,
)


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_failed_dir_leaves_previous_version(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "w").write_text("v1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "w").write_text("v2")
        raise RuntimeError("killed")
    assert (target / "w").read_text() == "v1" and len(list(tmp_path.iterdir())) == 1


def test_jsonl_roundtrip_and_bad_record_names_line(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"a": 1}, {"b": 2}])
    assert read_jsonl(p) == [{"a": 1}, {"b": 2}]
    seal_path(p).unlink()  # a file without a seal (by hand, older code) is read as it is
    p.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"a\.jsonl:2"):
        read_jsonl(p)
    p.write_text('{"a": "x\u2028y"}\n')  # a raw line separator inside a record is not a line break
    assert read_jsonl(p) == [{"a": "x\u2028y"}]


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # cut mid-record
        lambda b: b[: b.index(b"\n") + 1],  # cut at a line boundary: valid JSONL, one record fewer
        lambda b: b.replace(b"2", b"3"),  # same length, other numbers
        None,  # deleted
    ],
)
def test_a_sealed_artifact_changed_after_its_stage_is_refused_naming_the_notebook(
    tmp_path, monkeypatch, damage
):
    """Without the seal, the cut at a line boundary and the edit were read silently (fewer or
    other records, no error)."""
    run = tmp_path / "runs" / "p"
    (run / "notebooks").mkdir(parents=True)
    monkeypatch.setenv("PARADOX_STAGE", "03_style_align")
    p = write_jsonl(run / "streams" / "s.jsonl", [{"a": 1}, {"b": 2}])
    c = write_csv(run / "eval" / "acc.csv", pd.DataFrame({"x": [1, 2]}))
    assert read_jsonl(p) == [{"a": 1}, {"b": 2}] and read_csv(c)["x"].tolist() == [1, 2]
    for f in (p, c):
        if damage is None:
            f.unlink()
        else:
            f.write_bytes(damage(f.read_bytes()))
    for f, read in ((p, read_jsonl), (c, read_csv)):
        with pytest.raises(DamagedArtifact, match=rf"{f.name} .*rerun notebook 03_style_align \(make: rm "):
            read(f)


def test_an_unreadable_seal_leaves_the_file_readable(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"a": 1}])
    seal_path(p).write_text("{half")
    assert read_jsonl(p) == [{"a": 1}]


def test_done_marker_tracks_the_key(tmp_path):
    out = tmp_path / "thing"
    out.write_text("x")
    m = DoneMarker(out, "k1")
    assert not m.is_done()
    m.mark()
    assert m.is_done() and not DoneMarker(out, "k2").is_done()
    h = file_hash(out)
    out.write_text("y")
    assert file_hash(out) != h
    twin = tmp_path / "other-name"
    twin.write_text("y")
    assert file_hash(twin) == file_hash(out)  # content, not name: identical streams share a key


def test_model_fingerprint_ignores_logs(tmp_path):
    from paradox.models import model_fingerprint

    for name, secs in (("a", "1.0"), ("b", "2.0")):
        d = tmp_path / name
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"weights")
        (d / "train_info.json").write_text(secs)
    assert model_fingerprint(str(tmp_path / "a")) == model_fingerprint(str(tmp_path / "b"))
    (tmp_path / "b" / "model.safetensors").write_bytes(b"other")
    assert model_fingerprint(str(tmp_path / "a")) != model_fingerprint(str(tmp_path / "b"))
    assert model_fingerprint("Qwen/Qwen2.5-Math-1.5B") == "Qwen/Qwen2.5-Math-1.5B"


def test_finished_files_get_the_usual_mode_not_mkstemps_0600(tmp_path):
    import os
    import stat

    from paradox.io import FILE_MODE, write_text

    old = os.umask(0o022)
    os.umask(old)
    p = write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE(p.stat().st_mode) == FILE_MODE == 0o666 & ~old


def test_clean_stale_removes_what_killed_stages_leave_and_nothing_else(tmp_path):
    import subprocess

    root = Path(__file__).resolve().parents[1]
    leftovers = [
        tmp_path / "runs/toy/eval/.accuracy.csv.k2j3.tmp",
        tmp_path / "runs/.cache/slm/.0231fb.x9.tmp/model.safetensors",
        tmp_path / "runs/toy/notebooks/partial/05_eval.ipynb",
    ]
    kept = [tmp_path / "runs/toy/eval/accuracy.csv", tmp_path / "runs/toy/notebooks/05_eval.ipynb"]
    for f in leftovers + kept:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")
    proc = subprocess.run(
        ["make", "-f", str(root / "Makefile"), "clean-stale"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert not [f for f in leftovers if f.exists()] and all(f.exists() for f in kept)
    assert not (tmp_path / "runs/.cache/slm/.0231fb.x9.tmp").exists()


def _marked(tmp_path, lines=4):
    out = write_jsonl(tmp_path / "shard.jsonl", [{"i": i} for i in range(lines)])
    DoneMarker(out, "k").mark()
    return out


def test_done_marker_records_rows_and_content_hash(tmp_path):
    import hashlib
    import json

    out = _marked(tmp_path)
    rec = json.loads((tmp_path / "shard.jsonl.done").read_text())
    assert rec == {"key": "k", "rows": 4, "sha256": hashlib.sha256(out.read_bytes()).hexdigest()}
    assert DoneMarker(out, "k").is_done()


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_text("".join(p.read_text().splitlines(keepends=True)[:2])),  # whole lines kept
        lambda p: p.write_bytes(p.read_bytes()[:-5]),  # cut mid-line
        lambda p: p.write_text(p.read_text().replace("1", "7")),  # same rows, other content
        lambda p: p.unlink(),
    ],
    ids=["fewer-lines", "cut-mid-line", "edited", "deleted"],
)
def test_a_damaged_artifact_is_not_done_and_says_which_file(tmp_path, caplog, damage):
    out = _marked(tmp_path)
    damage(out)
    with caplog.at_level("WARNING", logger="paradox.io"):
        assert not DoneMarker(out, "k").is_done()
    assert "shard.jsonl" in caplog.text and "rebuilding" in caplog.text


@pytest.mark.parametrize("marker_text", ["k\n", "{not json", ""], ids=["old-key-only", "garbled", "empty"])
def test_an_old_or_unreadable_marker_means_redo(tmp_path, caplog, marker_text):
    out = _marked(tmp_path)
    (tmp_path / "shard.jsonl.done").write_text(marker_text)
    with caplog.at_level("WARNING", logger="paradox.io"):
        assert not DoneMarker(out, "k").is_done()
    assert "shard.jsonl.done" in caplog.text


def test_done_marker_of_a_directory_notices_a_truncated_or_missing_file(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"w" * 100)
    (d / "config.json").write_text("{}")
    DoneMarker(d, "k").mark()
    assert DoneMarker(d, "k").is_done()
    (d / "model.safetensors").write_bytes(b"w" * 50)
    assert not DoneMarker(d, "k").is_done()
    DoneMarker(d, "k").mark()
    (d / "config.json").unlink()
    assert not DoneMarker(d, "k").is_done()
