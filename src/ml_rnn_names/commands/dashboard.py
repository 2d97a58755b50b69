"""``dashboard``: optuna-dashboard on a campaign's studies and artifacts.

``ml-rnn-names dashboard studies/rnn_vs_lstm.toml`` serves http://127.0.0.1:8080/dashboard/ for the
campaign's storage (SQLite beside the file, ``--storage`` or ``$ML_RNN_NAMES_STORAGE``) and its artifact
store. It is safe to leave open on a live campaign: the storage is opened the way workers open it
(SQLite in WAL mode with a busy timeout, so a polling page never makes a worker see "database is
locked", optuna-dashboard#545), and without a heartbeat, since the dashboard runs no trials.

optuna-dashboard has no authentication and its API can rename and delete studies, so it binds to the
loopback interface unless ``--host`` says otherwise, and warns when it does.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ml_rnn_names.errors import MlRnnNamesError
from ml_rnn_names.study.artifacts import artifact_dir, artifact_store
from ml_rnn_names.study.campaign import Campaign
from ml_rnn_names.study.storage import open_storage, redact, redact_text, with_retries

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "dashboard",
        parents=[common],
        help="serve optuna-dashboard for the campaign's studies and artifacts (loopback only by default)",
        description="Serve optuna-dashboard for a campaign. It has no authentication and can delete "
        "studies: keep it on 127.0.0.1 and reach it from elsewhere through an SSH tunnel "
        "(ssh -L 8080:127.0.0.1:8080 host).",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"interface to bind (default {DEFAULT_HOST}; anything else exposes the unauthenticated "
        "dashboard to the network)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.set_defaults(func=cmd_dashboard)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    """One thread per request (the page polls several endpoints at once), none outliving the server."""

    daemon_threads = True


class _ThreadedServer6(_ThreadedServer):
    address_family = socket.AF_INET6


class _RequestHandler(WSGIRequestHandler):
    """Access log lines go to this module's logger at DEBUG (``-v`` shows them), not to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _RedactingStream:
    """A ``wsgi.errors`` stream that hides the storage password in whatever the app writes to it."""

    def __init__(self, stream: Any, url: str) -> None:
        self._stream = stream
        self._url = url

    def write(self, text: str) -> int:
        return self._stream.write(redact_text(text, self._url))

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()


def _redacting(app: Callable[..., Any], url: str) -> Callable[..., Any]:
    """Wrap a WSGI app so its error output (tracebacks of failed requests) never shows the password."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        environ["wsgi.errors"] = _RedactingStream(environ.get("wsgi.errors", sys.stderr), url)
        return app(environ, start_response)

    return wrapped


def dashboard_app(campaign: Campaign) -> Callable[..., Any]:
    """The optuna-dashboard WSGI app for ``campaign``: its storage and its artifact store."""
    import optuna_dashboard

    url = campaign.storage_url
    storage = open_storage(url)  # no heartbeat: the dashboard runs no trials
    names = {s.study_name for s in with_retries(storage.get_all_studies, what="list studies")}
    missing = [
        campaign.config.study_name(m)
        for m in campaign.config.model_names
        if campaign.config.study_name(m) not in names
    ]
    if missing:
        log.warning(
            "%s has no study %s yet; it will appear once `ml-rnn-names run` creates it",
            redact(url),
            ", ".join(missing),
        )
    app = optuna_dashboard.wsgi(storage, artifact_store=artifact_store(campaign.config))
    return _redacting(app, url)


def make_dashboard_server(
    campaign: Campaign, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> WSGIServer:
    """A threaded WSGI server for the campaign's dashboard, bound but not yet serving.

    ``server.serve_forever()`` serves it; ``server.shutdown()`` (from another thread) stops it.
    Port 0 picks a free port: read it back from ``server.server_port``.
    """
    app = dashboard_app(campaign)
    server_class = _ThreadedServer6 if ":" in host else _ThreadedServer
    try:
        return make_server(
            host.strip("[]"), port, app, server_class=server_class, handler_class=_RequestHandler
        )
    except OSError as exc:
        raise MlRnnNamesError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port or --host"
        ) from None


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_dashboard(args: argparse.Namespace) -> int:
    campaign = Campaign.from_toml(args.campaign, overrides=args.overrides, storage=args.storage)
    if not 0 <= args.port <= 65535:
        raise MlRnnNamesError(f"--port {args.port}: expected 0..65535")
    if not is_loopback(args.host):
        print(
            f"warning: binding the dashboard to {args.host}: optuna-dashboard has no authentication, and "
            "anyone who can reach this port can read, rename and delete the studies. Prefer the default "
            "127.0.0.1 with an SSH tunnel (ssh -L 8080:127.0.0.1:8080 host), or a firewall.",
            file=sys.stderr,
            flush=True,
        )
    server = make_dashboard_server(campaign, args.host, args.port)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"dashboard for campaign {campaign.config.name} ({redact(campaign.storage_url)}; artifacts in "
        f"{artifact_dir(campaign.config)})\n"
        f"listening on http://{shown}:{server.server_port}/dashboard/ — Ctrl-C to stop",
        flush=True,
    )
    # `docker stop` sends SIGTERM: stop as on Ctrl-C rather than being killed after the grace period.
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("dashboard stopped", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(Exception):
            server.server_close()
    return 0
