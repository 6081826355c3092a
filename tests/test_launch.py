"""Multi-process training: `accelerate launch` of `paradox.training.job` with two CPU processes (gloo)
on the tiny toy model, the job file, and the FSDP config as accelerate reads it."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from paradox.io import read_json, write_jsonl
from paradox.params import Lora
from paradox.training.job import make_job, run_job, settings_from_job
from paradox.training.launch import LaunchError, Machines, free_port, launch_command, launch_training
from paradox.training.trainer import TrainSettings, sft_train

ROOT = Path(__file__).resolve().parents[1]
CPU_2PROC = ROOT / "params" / "accelerate" / "cpu-2proc.yaml"


def _rows(n: int = 16) -> list[dict[str, str]]:
    return [
        {
            "prompt": f"Question: Tom has {i} apples and buys 2.\nAnswer:\n",
            "completion": f"He has {i} + 2 = {i + 2} apples. The answer is {i + 2}.",
        }
        for i in range(n)
    ]


def _settings(**kw) -> TrainSettings:
    base = dict(
        loss_type="nll",
        learning_rate=1e-3,
        batch_size=2,
        grad_accum=2,
        max_steps=3,
        max_length=64,
        seed=0,
        logging_steps=1,
    )
    return TrainSettings(**{**base, **kw})


def test_job_round_trips_settings(tmp_path, tiny_lm):
    s = _settings(loss_type="dft", lora=Lora(enabled=True, r=4, alpha=8), checkpoints=2)
    job = make_job(tmp_path / "rows.jsonl", tmp_path / "out", str(tiny_lm), s, {"dtype": "float32"})
    assert settings_from_job(job) == s
    assert Path(job["rows"]).is_absolute() and job["model"] == str(Path(tiny_lm).resolve())
    assert make_job("r", "o", "Qwen/Qwen2.5-Math-1.5B", s)["model"] == "Qwen/Qwen2.5-Math-1.5B"  # hub id kept
    cmd = launch_command("job.json", CPU_2PROC, 2, 12345)
    assert cmd[1:] == [
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(CPU_2PROC),
        "--num_processes",
        "2",
        "--main_process_port",
        "12345",
        "-m",
        "paradox.training.job",
        "job.json",
    ]


def test_train_run_in_one_process_matches_the_inline_call(tmp_path, tiny_lm):
    """The job path (model given as a path, loaded by TRL) trains the very weights the inline path does."""
    from paradox.models import load_model

    rows, s = _rows(), _settings()
    model, tok = load_model(str(tiny_lm))
    inline = sft_train(model, tok, rows, tmp_path / "inline", s)
    write_jsonl(tmp_path / "rows.jsonl", rows)
    job = run_job(
        make_job(
            tmp_path / "rows.jsonl",
            tmp_path / "job",
            str(tiny_lm),
            s,
            {"dtype": "float32", "revision": None, "gguf_file": None},
        )
    )
    drop = ("train_runtime", "train_samples_per_second", "train_steps_per_second")
    assert [{k: v for k, v in h.items() if k not in drop} for h in job] == [
        {k: v for k, v in h.items() if k not in drop} for h in inline
    ]
    a, b = (
        load_file(tmp_path / "inline" / "model.safetensors"),
        load_file(tmp_path / "job" / "model.safetensors"),
    )
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == sorted(
        p.name for p in (tmp_path / "inline").iterdir()
    )
    assert "world_size" not in read_json(tmp_path / "job" / "train_info.json")  # one process: files as before


def test_accelerate_two_cpu_processes_train_and_save(tmp_path, tiny_lm):
    from transformers import AutoModelForCausalLM

    rows = _rows()
    write_jsonl(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "models" / "run"
    job = make_job(tmp_path / "rows.jsonl", out, str(tiny_lm), _settings(), {"dtype": "float32"})
    lines: list[str] = []
    history = launch_training(job, CPU_2PROC, 2, echo=lines.append)
    assert history == read_json(out / "log_history.json")
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3]
    # 2 processes x 2 per device x 2 accumulation = 8 rows per step: 16 rows are 2 steps an epoch
    assert history[0]["epoch"] == pytest.approx(0.5)
    info = read_json(out / "train_info.json")
    assert info["world_size"] == 2 and info["max_steps"] == 3 and info["n_rows"] == len(rows)
    log = (out / "launch.log").read_text()
    assert "rank 0: world size 2" in log and "rank 1: world size 2" in log
    assert any("world size 2" in ln for ln in lines)  # streamed to the caller as it came
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.num_parameters() > 0 and (out / "tokenizer.json").is_file()
    assert not (out / "trainer").exists() and not (out / "training_args.bin").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["run"]  # no temporary directory left


def test_failed_launch_leaves_nothing_that_looks_finished(tmp_path, tiny_lm):
    out = tmp_path / "models" / "run"
    job = make_job(tmp_path / "missing.jsonl", out, str(tiny_lm), _settings(), {"dtype": "float32"})
    with pytest.raises(LaunchError, match="FileNotFoundError.*missing.jsonl"):
        launch_training(job, CPU_2PROC, 2, echo=None)
    assert not out.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["run.launch.log"]  # the log, kept for reading


def test_fsdp_config_reads_as_full_shard_on_8_gpus():
    """params/accelerate/fsdp.yaml through accelerate's own launch checks, down to the environment
    each process gets (building the FSDP plugin itself needs GPUs)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    argv = [
        "--config_file",
        str(ROOT / "params" / "accelerate" / "fsdp.yaml"),
        "-m",
        "paradox.training.job",
        "job.json",
    ]
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    assert args.use_fsdp and args.num_processes == 8 and args.num_machines == 1
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"  # sft_train needs one loadable checkpoint


def test_fsdp_2x8_config_reads_as_two_nodes_of_8():
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    cfg = ROOT / "params" / "accelerate" / "fsdp-2x8.yaml"
    machines = Machines(num_machines=2, rank=1, main_ip="10.0.0.1", main_port=29500)
    cmd = launch_command("job.json", cfg, 16, machines=machines)
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(cmd[3:]))
    assert args.use_fsdp and args.num_processes == 16 and args.num_machines == 2 and args.machine_rank == 1
    assert args.main_process_ip == "10.0.0.1" and args.main_process_port == 29500
    env = prepare_multi_gpu_env(args)
    assert env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD" and env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"


def test_machines_from_the_environment():
    assert Machines.from_env(1, {}) == Machines()
    m = Machines.from_env(2, {"MACHINE_RANK": "1", "MAIN_PROCESS_IP": "10.0.0.1"})
    assert (m.rank, m.main_ip, m.main_port, m.is_main) == (1, "10.0.0.1", 29500, False)
    with pytest.raises(LaunchError, match="set MACHINE_RANK and MAIN_PROCESS_IP on every node"):
        Machines.from_env(2, {})
    with pytest.raises(LaunchError, match="outside 0..1"):
        Machines.from_env(2, {"MACHINE_RANK": "2", "MAIN_PROCESS_IP": "h"})
    with pytest.raises(LaunchError, match="integers"):
        Machines.from_env(2, {"MACHINE_RANK": "one", "MAIN_PROCESS_IP": "h"})


def test_two_machines_on_one_host_train_one_job(tmp_path, tiny_lm):
    """The multi-node path for real: two `accelerate launch`es, machine ranks 0 and 1, one process
    each, meeting at 127.0.0.1, train one job; the main machine writes the model, the other keeps
    its own launch log."""
    import threading

    rows = _rows()
    write_jsonl(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "models" / "run"
    job = make_job(tmp_path / "rows.jsonl", out, str(tiny_lm), _settings(), {"dtype": "float32"})
    port = free_port()
    results: dict[int, object] = {}

    def node(rank: int) -> None:
        try:
            m = Machines(num_machines=2, rank=rank, main_ip="127.0.0.1", main_port=port)
            results[rank] = launch_training(job, CPU_2PROC, 2, echo=None, machines=m)
        except BaseException as err:  # reported below
            results[rank] = err

    threads = [threading.Thread(target=node, args=(r,)) for r in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=600)
    assert not isinstance(results[0], BaseException), results[0]
    assert not isinstance(results[1], BaseException), results[1]
    assert results[0] == results[1] == read_json(out / "log_history.json")
    assert read_json(out / "train_info.json")["world_size"] == 2
    assert (out / "launch.log").is_file() and (out / "launch.machine-1.log").is_file()
    assert "rank 1: world size 2" in (out / "launch.machine-1.log").read_text()


def test_log_lines_print_progress_a_notebook_log_can_show(tmp_path, tiny_lm, capsys):
    """In a kernel the Trainer's progress bar is an HTML widget that papermill's log never shows;
    `log_lines` prints one plain line per logging step (notebook 00's pretraining uses it)."""
    from paradox.models import load_model

    model, tok = load_model(str(tiny_lm))
    history = sft_train(model, tok, _rows(), tmp_path / "m", _settings(), log_lines=True)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("step ")]
    logged = [h for h in history if "loss" in h]
    assert len(lines) == len(logged) > 0
    assert lines[0].startswith(f"step {logged[0]['step']}/") and f"loss {logged[0]['loss']:.3f}" in lines[0]


@pytest.mark.parametrize("wanted", [False, True])
def test_gradient_checkpointing_is_what_params_say(tmp_path, wanted):
    """TRL's SFTConfig turns gradient checkpointing on by default: `false` must reach it as False."""
    from paradox.training.trainer import _sft_config

    config = _sft_config(_settings(), tmp_path, None, gradient_checkpointing=wanted)
    assert config.gradient_checkpointing is wanted


def test_the_slm_attention_kernel_reaches_every_loader(tmp_path, tiny_lm):
    """slm.attn_implementation goes to the loader (generation, scoring, inline training) and to the
    model a toy world builds; unset, transformers chooses (sdpa)."""
    from paradox import backends
    from paradox.models import load_model
    from paradox.params import load_params
    from paradox.toy import slm as toy_slm

    toy = load_params("smoke")
    assert toy.slm.attn_implementation == "eager"
    model, _ = load_model(str(tiny_lm), **backends.load_kwargs(toy, str(tiny_lm)))
    assert model.config._attn_implementation == "eager"
    model, _ = load_model(str(tiny_lm))
    assert model.config._attn_implementation == "sdpa"
    _, tok = load_model(str(tiny_lm))
    built = toy_slm.build_model(toy.toy, tok, 0, "eager")
    assert built.config._attn_implementation == "eager"
    # the toy SLM's cache knows the kernel it was pretrained with (another kernel: other weights)
    key = toy_slm.cache_key(toy.toy, 0, toy.slm.prompt_template)
    assert toy_slm.cache_key(toy.toy, 0, toy.slm.prompt_template, "eager") != key
    assert toy_slm.cache_key(toy.toy, 0, toy.slm.prompt_template, None) == key
    # ... but not a toy key that only 03 reads: another stand-in error rate pretrains nothing again
    other = toy.toy.model_copy(update={"prm_standin_error_rate": 0.3})
    assert toy_slm.cache_key(other, 0, toy.slm.prompt_template) == key
    assert (
        toy_slm.cache_key(
            toy.toy.model_copy(
                update={
                    "problems": other.problems.model_copy(update={"n_train": toy.toy.problems.n_train + 1})
                }
            ),
            0,
            toy.slm.prompt_template,
        )
        != key
    )
