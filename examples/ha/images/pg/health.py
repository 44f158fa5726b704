"""This node's role over HTTP on :8008 for HAProxy's `option httpchk` (Patroni's convention):
GET /primary is 200 only while this node's PostgreSQL accepts writes (pg_is_in_recovery() false),
GET /replica only while it is a standby, 503 otherwise (also when PostgreSQL does not answer)."""

import subprocess
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def role() -> str:
    try:
        out = subprocess.run(
            [
                "psql",
                "-XtAc",
                "SELECT pg_is_in_recovery()",
                "-h",
                "/run/postgresql",
                "-d",
                "postgres",
            ],
            capture_output=True,
            text=True,
            timeout=1.5,
        )
    except subprocess.TimeoutExpired:
        return "unknown"
    return {"f": "primary", "t": "replica"}.get(out.stdout.strip(), "unknown")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        current = role()
        ok = self.path.strip("/") == current
        body = f"{current}\n".encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:  # HAProxy closes a check as soon as it has read the status line
            pass

    def log_message(self, *args: object) -> None:  # HAProxy checks twice a second: no access log
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a check that hung up early is not an error


Server(("", 8008), Handler).serve_forever()
