"""Control surfaces are closed (issue 16, class 6): the fault proxy's API (images/toxiproxy)
answers only a caller bearing the run's token, the harness's client always bears it, and a bad
Content-Length is refused. (The payment stubs' control: tests/unit/test_payments.py; both, and
the reference app, from inside the app's container: tests/integration/test_trust_stack.py.)"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import requests

from drillkit.stack.secrets import Secrets
from drillkit.stack.services.proxy import BoundedHttp
from drillkit.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "images" / "toxiproxy" / "server.py"


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    token = Secrets.generate()
    folder = tmp_path_factory.mktemp("proxy")
    (folder / "token").write_text(token + "\n")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            str(SERVER),
            "--port",
            str(port),
            "--token-file",
            str(folder / "token"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: requests.get(base + "/version", timeout=1).status_code == 200,
            what="the fault proxy's API",
            timeout_s=10,
        )
        yield base, token
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}],
    ids=["none", "wrong", "scheme"],
)
def test_the_api_refuses_a_caller_without_the_token(api: tuple[str, str], headers: dict) -> None:
    base, _ = api
    for method, path in (("GET", "/proxies"), ("POST", "/proxies"), ("POST", "/reset")):
        body = {"name": "evil", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}
        r = requests.request(method, base + path, json=body, headers=headers, timeout=5)
        assert r.status_code == 401, (method, path)
    r = requests.get(base + "/proxies", headers={"Authorization": f"Bearer {api[1]}"}, timeout=5)
    assert r.status_code == 200 and "evil" not in r.json()


def test_the_harness_client_bears_the_token(api: tuple[str, str]) -> None:
    base, token = api
    http = BoundedHttp(token)
    created = http.post(
        base + "/proxies", json={"name": "p1", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}
    )
    assert created.status_code == 201
    assert "p1" in http.get(base + "/proxies").json()
    assert http.delete(base + "/proxies/p1").status_code == 204
    assert BoundedHttp("wrong").get(base + "/proxies").status_code == 401


@pytest.mark.parametrize("length", ["-1", "abc", "+3", "1.5"])
def test_a_bad_content_length_is_a_400(api: tuple[str, str], length: str) -> None:
    base, token = api
    port = int(base.rsplit(":", 1)[1])
    head = (
        f"POST /proxies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode())
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer


def test_an_empty_token_file_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    proc = subprocess.run(
        [sys.executable, str(SERVER), "--port", "0", "--token-file", str(tmp_path / "token")],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert proc.returncode != 0 and "is empty" in proc.stderr
