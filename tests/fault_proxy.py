"""A threaded HTTP server that plays an OpenAI-compatible endpoint, or stands in front of a real
one, and injects faults on a schedule.

    with FaultServer(responder=lambda body: "hi") as srv:           # fake endpoint
        OpenAI(base_url=srv.url, ...)
    with FaultServer(upstream="http://127.0.0.1:8000/v1") as srv:   # proxy in front of vLLM
        srv.schedule(["429", "500", "timeout"])                      # the next three requests fail

Actions, one per request: "ok" (answer, or forward), "400" / "401" / "429" / "500" / "503" (that
status), "timeout" (sleep `timeout_delay_s` before answering, longer than the client waits),
"drop" (close the connection with no answer). The next action comes from the schedule (consumed in
order), else from `rule(body)` (a per-request choice, e.g. always fail one prompt), else "ok".
Every request is recorded (path, headers, JSON body, action); `max_in_flight` is the largest
number of requests it was answering at once (the sleep of a "timeout" request does not count:
its client has given up on it).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

ERROR_STATUS = {"400": 400, "401": 401, "429": 429, "500": 500, "503": 503}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many clients connecting at once must not be refused


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any] | None
    action: str
    time: float = field(default_factory=time.monotonic)

    @property
    def prompt(self) -> str | None:
        """The last user message of a chat request."""
        msgs = (self.body or {}).get("messages") or []
        return msgs[-1].get("content") if msgs else None


def chat_response(content: str, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def echo(body: dict[str, Any]) -> str:
    return "echo: " + str(body["messages"][-1]["content"])


class FaultServer:
    def __init__(
        self,
        *,
        upstream: str | None = None,
        responder: Callable[[dict[str, Any]], str] = echo,
        delay_s: float = 0.0,
        timeout_delay_s: float = 3.0,
        rule: Callable[[dict[str, Any]], str | None] | None = None,
        model: str = "fake-model",
        port: int = 0,
    ) -> None:
        self.upstream = urlsplit(upstream) if upstream else None
        self.responder, self.delay_s, self.timeout_delay_s = responder, delay_s, timeout_delay_s
        self.rule, self.model = rule, model
        self.requests: list[Recorded] = []
        self.in_flight = self.max_in_flight = self.responses = 0
        self._schedule: list[str] = []
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), self._handler())  # port 0: any free one
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # --- control ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The base_url a client should use (mirrors the upstream's path, /v1 by default)."""
        path = self.upstream.path.rstrip("/") if self.upstream else "/v1"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"

    def schedule(self, actions: Iterable[str]) -> None:
        with self._lock:
            self._schedule.extend(actions)

    def pending(self) -> int:
        with self._lock:
            return len(self._schedule)

    def chat_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- serving ----------------------------------------------------------------------------
    def _next_action(self, body: dict[str, Any] | None) -> str:
        with self._lock:
            if self._schedule:
                return self._schedule.pop(0)
        chosen = self.rule(body or {}) if self.rule is not None else None
        return chosen or "ok"

    def _answer(
        self, method: str, path: str, headers: dict[str, str], raw: bytes, body: dict[str, Any] | None
    ) -> tuple[int, dict[str, str], bytes]:
        if self.upstream is not None:  # forward as is (Authorization included)
            conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=600)
            fwd = {
                k: v for k, v in headers.items() if k.lower() not in ("host", "connection", "content-length")
            }
            conn.request(method, path, body=raw or None, headers=fwd)
            resp = conn.getresponse()
            data = resp.read()
            ctype = resp.getheader("content-type", "application/json")
            conn.close()
            return resp.status, {"content-type": ctype}, data
        if body is None or "messages" not in body:
            if path.endswith("/models"):
                data = {"object": "list", "data": [{"id": self.model, "object": "model"}]}
                return 200, {"content-type": "application/json"}, json.dumps(data).encode()
            return 404, {"content-type": "application/json"}, b'{"error": {"message": "not found"}}'
        content = self.responder(body)
        return (
            200,
            {"content-type": "application/json"},
            json.dumps(chat_response(content, self.model)).encode(),
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _serve(self, method: str) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                action = server._next_action(body)
                with server._lock:
                    server.requests.append(
                        Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body, action)
                    )
                try:
                    if action == "drop":
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    if action == "timeout":
                        time.sleep(server.timeout_delay_s)  # the client has given up by now
                    with server._lock:
                        server.in_flight += 1
                        server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    try:
                        time.sleep(server.delay_s)
                        if action in ERROR_STATUS:
                            status = ERROR_STATUS[action]
                            headers = {"content-type": "application/json", "retry-after": "0"}
                            data = json.dumps(
                                {
                                    "error": {
                                        "message": f"injected {action}",
                                        "type": "injected",
                                        "code": status,
                                    }
                                }
                            ).encode()
                        else:
                            status, headers, data = server._answer(
                                method, self.path, dict(self.headers.items()), raw, body
                            )
                        self.send_response(status)
                        for k, v in headers.items():
                            self.send_header(k, v)
                        self.send_header("content-length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        self.wfile.flush()
                        with server._lock:
                            server.responses += 1
                    finally:
                        with server._lock:
                            server.in_flight -= 1
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass  # the client went away (timeout): nothing to answer

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self._serve("POST")

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

        return Handler
