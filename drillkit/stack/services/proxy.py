"""The proxy kind (`stack: {proxy: true}`): a Toxiproxy-compatible fault proxy between the app and
the primary (images/toxiproxy). Its one proxy, 'postgres', listens on proxy:5432 for primary:5432,
and the app's first database host is the proxy; faults add toxics to it through the API.

The API answers only the harness: the server demands the run's `proxy_api_token` (a file only the
proxy's container mounts; the app, which shares the proxy's network, never holds it), and every
call the harness makes carries it."""

from __future__ import annotations

from typing import Any

import requests

from drillkit.stack.kinds import ServiceKind, service_kind
from drillkit.wait import wait_for

PROXY_IMAGE = "toxiproxy"
PROXY_API_PORT = 8474
PROXY_NAME = "postgres"
SECRETS_DIR = "/run/drillkit/secrets"
API_TIMEOUT_S = 5.0
"""Every call to the fault proxy's API answers within this or fails."""


@service_kind
class Proxy(ServiceKind):
    name = "proxy"
    order = 20
    start_rank = 10
    ready_rank = 10

    def services(self) -> tuple[str, ...]:
        return ("proxy",)

    def images(self) -> dict[str, str]:
        return {"toxiproxy": PROXY_IMAGE}

    def start(self) -> None:
        """The fault proxy, then its one proxy: 'postgres', listening on proxy:5432 for primary
        (the app, started later, finds it there)."""
        s = self.stack
        s.create(
            "proxy",
            s.image_tags["toxiproxy"],
            env={},
            mounts={str(s.secrets.proxy_dir): {"bind": SECRETS_DIR, "mode": "ro"}},
            ports={f"{PROXY_API_PORT}/tcp": ("127.0.0.1", None)},
            command=[
                *("python3", "-u", "server.py", "--host", "0.0.0.0"),
                *("--port", str(PROXY_API_PORT), "--token-file", f"{SECRETS_DIR}/proxy_api_token"),
            ],
        )

        def api_up() -> bool:
            # a real answer: docker-proxy accepts TCP connections before the server listens
            self.client().proxies()
            return True

        wait_for(
            api_up,
            what="the fault proxy's API",
            timeout_s=s.options.ready_timeout_s,
            context=s.log_context("proxy"),
        )
        self.client().create(upstream="primary:5432", name=PROXY_NAME, listen="0.0.0.0:5432")

    def client(self) -> Any:
        """A toxiproxy-python client for this stack's proxy (the client's address is global to the
        process, so it is set on every call). Its HTTP calls go through `BoundedHttp`: each has
        a timeout."""
        import toxiproxy.api
        from toxiproxy import Toxiproxy

        toxiproxy.api.requests = BoundedHttp(self.stack.secrets["proxy_api_token"])  # type: ignore[assignment]
        client = Toxiproxy()
        client.update_api_consumer("127.0.0.1", self.stack.port("proxy", PROXY_API_PORT))
        return client


class BoundedHttp:
    """What toxiproxy-python calls as `requests` (get, post, delete): the same calls, each with
    a timeout (the library passes none: a hung API would hang the step) and the run's API
    token."""

    def __init__(self, token: str, timeout_s: float = API_TIMEOUT_S) -> None:
        self.token = token
        self.timeout_s = timeout_s

    def _call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        timeout = kwargs.pop("timeout", None) or self.timeout_s
        headers = {**(kwargs.pop("headers", None) or {}), "Authorization": f"Bearer {self.token}"}
        return requests.request(method, url, timeout=timeout, headers=headers, **kwargs)

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self._call("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self._call("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> requests.Response:
        return self._call("DELETE", url, **kwargs)
