"""The served reward adapter (`reward.backend: vllm_server`, paradox.reward_server) without vLLM: its
params rules, its requests and how it reads the answers (against a stand-in server that answers in
the layouts vLLM 0.32's pooling server publishes), retries and failover, and what `make plan` says
about served reward models. The same adapter against real vLLM servers, agreeing with HFReward and
VLLMReward: tests/vllm_engine/test_reward_server.py."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from paradox import backends, gpu_memory, plan
from paradox.params import ParamsError, RewardModel, Serve, load_params
from paradox.problems import Problem
from paradox.reward_models import encode_chat
from paradox.reward_server import ServedReward, api_url, read_scores, server_root

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from fault_proxy import FaultServer  # noqa: E402

CHAT = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] | trim }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SYSTEM = "Please reason step by step."
KEY_ENV = "PARADOX_TEST_REWARD_KEY"


def token_rewards(ids: list[int]) -> list[float]:
    """The stand-in model's reward at every token: a function of the whole prefix, so a score read at
    the wrong token, or of other ids than the chat's, comes out different."""
    out, total = [], 0
    for i, t in enumerate(ids):
        total = (total * 31 + t + i) % 1009
        out.append(total / 100 - 5)
    return out


class PoolingServer:
    """Plays `vllm serve MODEL --runner pooling` for one model: `GET /v1/models` (id, max_model_len)
    and `POST /pooling` with token-id inputs. Layouts as vLLM 0.32's server answers (PoolingResponse:
    `data[i].data` is [logit] for classify, one [reward] per token for token_classify; errors as
    `{"error": {"message", "type", "code"}}`, an unsupported task as a 400 naming the tasks)."""

    def __init__(
        self, name: str, tasks: tuple[str, ...], max_model_len: int = 8192, delay_s: float = 0.0
    ) -> None:
        self.name, self.tasks, self.max_model_len, self.delay_s = name, tasks, max_model_len, delay_s
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.bad_rows = False  # answer one row too few
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                server.paths.append(self.path)
                if self.path == "/v1/models":
                    self._send(
                        200,
                        {
                            "object": "list",
                            "data": [
                                {"id": server.name, "object": "model", "max_model_len": server.max_model_len}
                            ],
                        },
                    )
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:  # noqa: N802
                server.paths.append(self.path)
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if self.path != "/pooling":
                    return self._send(404, {"detail": "Not Found"})
                server.bodies.append(body)
                time.sleep(server.delay_s)
                if body.get("model") != server.name:
                    return self._send(
                        404,
                        {
                            "error": {
                                "message": f"The model `{body.get('model')}` does not exist.",
                                "type": "NotFoundError",
                                "code": 404,
                            }
                        },
                    )
                if body["task"] not in server.tasks:
                    return self._send(
                        400,
                        {
                            "error": {
                                "message": f"Unsupported task: {body['task']!r} Supported "
                                f"tasks: {list(server.tasks)} (parameter=task)",
                                "type": "BadRequestError",
                                "code": 400,
                            }
                        },
                    )
                if any(len(x) > server.max_model_len for x in body["input"]):
                    return self._send(
                        400, {"error": {"message": "too long", "type": "BadRequestError", "code": 400}}
                    )
                rows = []
                for i, ids in enumerate(body["input"]):
                    r = token_rewards(ids)
                    data = [[x] for x in r] if body["task"] == "token_classify" else [r[-1]]
                    rows.append({"index": i, "object": "pooling", "data": data})
                self._send(
                    200,
                    {
                        "object": "list",
                        "model": server.name,
                        "data": rows[:-1] if server.bad_rows else rows,
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    },
                )

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:  # as a user writes it: the OpenAI-style base URL
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="module")
def tok_dir(tiny_lm, tmp_path_factory) -> Path:
    """A tokenizer with a chat template: all the adapter loads itself (the servers hold the model)."""
    tok = AutoTokenizer.from_pretrained(tiny_lm)
    tok.chat_template = CHAT
    path = tmp_path_factory.mktemp("rm_tokenizer")
    tok.save_pretrained(path)
    return path


@pytest.fixture
def servers():
    made: list[PoolingServer] = []

    def make(*args: Any, **kw: Any) -> PoolingServer:
        made.append(PoolingServer(*args, **kw))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _spec(tok_dir: Path, urls: Any, **kw: Any) -> RewardModel:
    return RewardModel(
        **{
            "backend": "vllm_server",
            "name_or_path": str(tok_dir),
            "base_url": urls,
            "served_model_name": "rm",
            "system_prompt": SYSTEM,
            "batch_size": 3,
            "max_length": 512,
            "api_key_env": KEY_ENV,
            **kw,
        }
    )


def _adapter(spec: RewardModel) -> ServedReward:
    # quick retries: the tests' faults are instant
    return ServedReward(
        spec, show_progress=False, backoff_base_s=0.01, backoff_max_s=0.05, dead_cooldown_s=60
    )


def _data(n: int = 8) -> tuple[list[Problem], list[str]]:
    problems = [
        Problem(
            id=f"p{i}",
            question=f"Ana has {i + 3} pens and gets {i}. How many?",
            answer=str(2 * i + 3),
            reference_solution="",
            source="test",
        )
        for i in range(n)
    ]
    traces = [
        " ".join([f"{i + 3} + {i} = {2 * i + 3}."] * (1 + i % 3)) + f" \\boxed{{{2 * i + 3}}}"
        for i in range(n)
    ]
    return problems, traces


def _want(
    tok_dir: Path, problems: list[Problem], traces: list[str], limit: int
) -> tuple[list[list[int]], list[float]]:
    tok = AutoTokenizer.from_pretrained(tok_dir)
    chats = [encode_chat(tok, p.question, t, SYSTEM, limit)[0] for p, t in zip(problems, traces, strict=True)]
    return chats, [token_rewards(c)[-1] for c in chats]


# -- params ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"backend": "hf", "serve": Serve()}, "serve.*is for backend 'vllm_server'"),
        (
            {"backend": "vllm", "base_url": "http://h:8000/v1"},
            "base_url.*is for backend 'vllm_server'.*backend 'vllm' scores in this process",
        ),
        ({"backend": "vllm_server"}, "needs exactly one of serve"),
        (
            {"backend": "vllm_server", "serve": Serve(), "base_url": "http://h:8000"},
            "needs exactly one of serve.*both are set",
        ),
        ({"backend": "vllm_server", "base_url": "h:8000"}, "base_url.*needs one http\\(s\\) URL"),
        (
            {"backend": "vllm_server", "base_url": "http://h:8000", "api_key_env": "sk-abc"},
            "never put the key",
        ),
    ],
)
def test_impossible_reward_server_settings_are_refused(kw, message):
    with pytest.raises(ValueError, match="(?s)" + message):
        RewardModel(name_or_path="m", **kw)


def test_served_reward_settings_load_from_a_profile_and_errors_name_the_file(tmp_path):
    shutil.copytree(ROOT / "params", tmp_path / "params")
    pdir = tmp_path / "params"
    (pdir / "served.yaml").write_text(
        "extends: paper-qwen2.5-math-1.5b\ndescription: x\nreward:\n  backend: vllm_server\n"
        "  serve: {data_parallel_size: 2, tensor_parallel_size: 4}\n"
        "  cross_check:\n    - {backend: vllm_server, name_or_path: Skywork/Skywork-Reward-V2-Llama-3.1-8B,\n"
        "       base_url: [http://node1:8000/v1, http://node2:8000]}\n"
    )
    p = load_params("served", pdir)
    assert p.reward.serve is not None and p.reward.serve.data_parallel_size == 2
    assert p.reward.cross_check[0].base_urls == ("http://node1:8000/v1", "http://node2:8000")
    (pdir / "bad.yaml").write_text(
        "extends: paper-qwen2.5-math-1.5b\ndescription: x\nreward:\n  serve: {replicas: 2}\n"
    )  # the paper profile's backend is hf
    with pytest.raises(
        ParamsError, match=r"params/bad.yaml: key 'reward.serve': Value error, is for backend 'vllm_server'"
    ):
        load_params("bad", pdir)


def test_urls_with_or_without_v1():
    assert (
        api_url("http://h:8000")
        == api_url("http://h:8000/")
        == api_url("http://h:8000/v1/")
        == "http://h:8000/v1"
    )
    assert server_root("http://h:8000/v1/") == server_root("http://h:8000") == "http://h:8000"


# -- requests and answers -------------------------------------------------------------------------


@pytest.mark.parametrize("head,task", [("seq_cls", "classify"), ("remote_code", "token_classify")])
def test_scores_the_chats_ids_at_their_last_token_spread_over_the_servers(tok_dir, servers, head, task):
    # answers take a while, as a model's do: requests in flight pile up and go to the less busy server
    a, b = servers("rm", (task,), delay_s=0.2), servers("rm", (task,), delay_s=0.2)
    problems, traces = _data()
    # one URL without /v1: the adapter adds it for the OpenAI routes and drops it for /pooling
    with _adapter(_spec(tok_dir, (a.url, b.url.removesuffix("/v1")), head=head)) as rm:
        got = rm.score_many(problems, traces)
        chats, want = _want(tok_dir, problems, traces, 512)
        assert got == pytest.approx(want, abs=1e-9) and len(set(got)) > 1
        assert all(s.bodies for s in (a, b))
        probe = _want(tok_dir, [Problem("x", "1 + 1 = ?", "2", "", "t")], ["2"], 512)[0]  # load()'s check
        scoring = [x for s in (a, b) for x in s.bodies if x["input"] != probe]
        sent = sorted((x["input"] for x in scoring), key=lambda batch: chats.index(batch[0]))
        assert [c for batch in sent for c in batch] == chats  # exactly the chats' ids, 3 per request
        assert max(len(batch) for batch in sent) == 3
        body = scoring[0]
        assert (body["task"], body["use_activation"], body["add_special_tokens"], body["model"]) == (
            task,
            False,
            False,
            "rm",
        )
        assert {p for s in (a, b) for p in s.paths} == {"/v1/models", "/pooling"}  # pooling at the root
        stats = rm.stats()
        assert sum(v for k, v in stats.items() if k.startswith("requests http")) == 1 + len(sent)
        assert rm.score(problems[2], traces[2]) == pytest.approx(want[2])


def test_chats_are_cut_to_the_servers_context_and_counted(tok_dir, servers):
    srv = servers("rm", ("token_classify",), max_model_len=40)
    problems, traces = _data()
    traces[5] = " ".join(f"step {j}: {j} + 1 = {j + 1}." for j in range(40)) + " \\boxed{41}"
    with _adapter(_spec(tok_dir, srv.url, head="remote_code")) as rm:
        got = rm.score_many(problems, traces)
        assert rm.max_length == 40 and rm.n_truncated >= 1
    _, want = _want(tok_dir, problems, traces, 40)
    assert got == pytest.approx(want) and all(len(x) <= 40 for b in srv.bodies for x in b["input"])


def test_a_head_the_server_lacks_fails_on_load_naming_the_tasks(tok_dir, servers):
    srv = servers("rm", ("token_classify",))  # a Qwen2ForRewardModel server: token_classify only
    rm = _adapter(_spec(tok_dir, srv.url, head="seq_cls"))
    with pytest.raises(
        ValueError,
        match=r"head 'seq_cls' scores with vLLM's pooling task 'classify'.*HTTP 400.*"
        r"Supported tasks: \['token_classify'\].*task token_classify is head: remote_code",
    ):
        rm.load()
    assert rm.pool is None


def test_a_server_serving_another_model_is_named(tok_dir, servers):
    srv = servers("other-rm", ("classify",))
    with pytest.raises(
        ValueError,
        match=r"server at http://127.0.0.1:\d+/v1 serves \['other-rm'\], not 'rm' \(set "
        r"reward.served_model_name",
    ):
        _adapter(_spec(tok_dir, srv.url)).load()


def test_a_malformed_answer_is_an_error_naming_the_server(tok_dir, servers):
    srv = servers("rm", ("classify",))
    problems, traces = _data(4)
    with _adapter(_spec(tok_dir, srv.url)) as rm:
        rm.load()
        srv.bad_rows = True
        with pytest.raises(
            ValueError,
            match=r"vllm_server:.* at http://127.0.0.1:\d+/v1: expected (3|1) pooling results, got (2|0)",
        ):
            rm.score_many(problems, traces)


def test_read_scores_rejects_other_shapes():
    assert read_scores(
        {"data": [{"index": 1, "data": [[0.5], [2.0]]}, {"index": 0, "data": [[1.0]]}]},
        [[7], [8, 9]],
        "token_classify",
        "s",
    ) == [1.0, 2.0]  # by index
    with pytest.raises(ValueError, match="expected a reward per token, 2 rows of 1, got 1 rows"):
        read_scores({"data": [{"index": 0, "data": [[0.5]]}]}, [[8, 9]], "token_classify", "s")
    with pytest.raises(ValueError, match=r"one reward value per chat \(num_labels = 1\), got \[0.1, 0.9\]"):
        read_scores({"data": [{"index": 0, "data": [0.1, 0.9]}]}, [[8, 9]], "classify", "s")
    with pytest.raises(ValueError, match="expected 1 pooling results, got str"):
        read_scores("<html>", [[8]], "classify", "s")
    with pytest.raises(ValueError, match="expected 1 pooling results"):
        read_scores({"data": [[0.5]]}, [[8]], "classify", "s")  # not vLLM's layout


def test_retried_on_a_server_error_and_failed_over_from_a_dead_server(tok_dir, servers):
    srv = servers("rm", ("classify",))
    problems, traces = _data(6)
    _, want = _want(tok_dir, problems, traces, 512)
    with FaultServer(upstream=srv.url) as proxy:
        proxy.schedule(["ok", "ok", "500", "drop"])  # models, probe, then a failing scoring request twice
        with _adapter(_spec(tok_dir, proxy.url)) as rm:
            assert rm.score_many(problems, traces) == pytest.approx(want)
            assert rm.stats()["retries"] == 2
    with socket.socket() as s:  # a port nothing listens on: a server that is down
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    with _adapter(_spec(tok_dir, [dead, srv.url])) as rm:
        assert rm.score_many(problems, traces) == pytest.approx(want)
        assert rm.stats().get("failures", 0) == 0


def test_backends_build_a_served_reward_that_starts_nothing_until_used(tok_dir, tmp_path):
    from paradox.paths import RunPaths

    params = load_params("smoke", ROOT / "params")
    spec = RewardModel(backend="vllm_server", name_or_path=str(tok_dir), serve=Serve(replicas=2))
    params = params.model_copy(
        update={
            "reward": params.reward.model_copy(
                update={
                    "backend": "vllm_server",
                    "name_or_path": str(tok_dir),
                    "base_url": "http://127.0.0.1:9/v1",
                    "cross_check": (spec,),
                }
            )
        }
    )
    paths = RunPaths("smoke", tmp_path / "runs")
    rm = backends.reward_model(params, paths=paths)
    assert isinstance(rm, ServedReward) and rm.pool is None and rm.group is None
    [check] = backends.cross_check_rewards(params, paths)
    assert check.log_dir == paths.root / "logs" and check.lock_path == backends.gpu_lock(paths)
    rm.close()  # nothing to stop


# -- make plan ------------------------------------------------------------------------------------


@pytest.fixture
def pdir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "params", tmp_path / "params")
    return tmp_path / "params"


SERVED_RM = (
    "reward:\n  backend: vllm_server\n  trust_remote_code: false\n"
    "  serve: {data_parallel_size: 2, tensor_parallel_size: 4}\n"
)


def test_plan_describes_a_managed_reward_server_and_its_memory(pdir):
    (pdir / "served.yaml").write_text(f"extends: paper-qwen2.5-math-1.5b\ndescription: x\n{SERVED_RM}")
    p = load_params("served", pdir)
    text = plan.render(p)
    assert (
        "reward: Qwen/Qwen2.5-Math-RM-72B via managed `vllm serve --runner pooling` (1 server(s) x data parallel "
        "2 x tensor parallel 4, max_model_len 4,096)"
    ) in text
    [est] = [e for e in gpu_memory.estimates(p) if e.what == "reward Qwen/Qwen2.5-Math-RM-72B (vllm_server)"]
    weights = gpu_memory.n_params(gpu_memory.SHAPES["Qwen/Qwen2.5-Math-RM-72B"]) * 2 / 4 / gpu_memory.GIB
    assert est.fits and est.limit_gib == pytest.approx(0.9 * 79) and weights < est.gib < weights + 6
    assert "reward.serve.gpu_memory_utilization 0.9" in est.detail
    assert gpu_memory.check(p)[1] == []


@pytest.mark.parametrize(
    "body,message",
    [
        (
            "  serve: {tensor_parallel_size: 1}\n",  # 72B in bf16 on one 79 GiB GPU
            "reward Qwen/Qwen2.5-Math-RM-72B (vllm_server): an estimated 1",
        ),
        (
            "  serve: {tensor_parallel_size: 4, data_parallel_size: 4}\n",
            "reward.serve: data_parallel_size x tensor_parallel_size = 16 GPUs, more than hardware.gpus_per_node (8)",
        ),
        (
            "  serve: {tensor_parallel_size: 4, replicas: 2}\n",
            "reward.serve: 2 replicas x gpu_memory_utilization 0.9",
        ),
        ("  serve: {tensor_parallel_size: 4, max_model_len: 8192}\n", "reward.serve: max_model_len 8,192"),
        (
            "  serve: {tensor_parallel_size: 3}\n",
            "reward.serve.tensor_parallel_size (3) does not divide the 64",
        ),
    ],
)
def test_plan_refuses_managed_reward_servers_that_cannot_run(pdir, monkeypatch, capsys, body, message):
    (pdir / "bad.yaml").write_text(
        f"extends: paper-qwen2.5-math-1.5b\ndescription: x\nreward:\n  backend: vllm_server\n{body}"
    )
    monkeypatch.setattr(plan, "load_params", lambda profile: load_params(profile, pdir))
    assert plan.main(["bad"]) == 1
    assert message in capsys.readouterr().err


def test_plan_refuses_a_managed_reward_server_beside_a_managed_oracle(pdir):
    (pdir / "both.yaml").write_text(
        f"extends: paper-qwen2.5-math-1.5b\ndescription: x\n{SERVED_RM}"
        "oracle:\n  serve: {tensor_parallel_size: 4, gpu_memory_utilization: 0.5}\n"
    )
    errors = gpu_memory.check(load_params("both", pdir))[1]
    assert any("reward.serve and oracle.serve are both managed servers" in e for e in errors)
    (pdir / "given.yaml").write_text(
        "extends: both\ndescription: x\nreward:\n  serve: null\n  base_url: [http://node2:8000/v1]\n"
    )
    p = load_params("given", pdir)
    assert gpu_memory.check(p)[1] == []
    assert "vLLM pooling servers at http://node2:8000/v1" in plan.render(p)
    assert "(vllm_server): not estimated (servers you run at http://node2:8000/v1)" in "\n".join(
        gpu_memory.check(p)[0]
    )


def test_the_offline_reward_engine_points_data_parallelism_to_the_servers(tok_dir):
    from paradox.params import VLLMEngine
    from paradox.vllm_backend import VLLMReward

    spec = RewardModel(backend="vllm", name_or_path=str(tok_dir))
    with pytest.raises(
        ValueError,
        match=r"refused by vLLM itself.*For the reward model: backend 'vllm_server' with "
        r"reward.serve.data_parallel_size",
    ):
        VLLMReward(spec, VLLMEngine(data_parallel_size=2))  # before vLLM is imported: runs without it
