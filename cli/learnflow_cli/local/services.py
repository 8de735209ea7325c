"""The local stack's backing processes: moto (DynamoDB, SES, API Gateway) in a child process of
its own, and the Stripe-compatible payments server on its port. What is provisioned in them is
in `provisioning`, the table's stream delivery in `streams`, where AWS calls go in `aws`."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from learnflow_cli.local import moto_server
from learnflow_cli.local.streams import matches_pattern

if TYPE_CHECKING:
    from learnflow_cli.local.stripe_server import StripeServer

# Lambda's event filtering, importable from here as before it moved to `streams`.
__all__ = ["MotoProcess", "ServiceError", "matches_pattern", "start_stripe"]

MOTO_START_TIMEOUT = 60.0
LISTEN_QUEUE = 1024  # connections waiting to be accepted (the kernel caps it at somaxconn)


class ServiceError(RuntimeError):
    """A backing service could not be started or prepared; the message says what to do."""


# ------------------------------------------------------------------------- moto, in its own process


class MotoProcess:
    """moto's server in a child process: its imports (about 1.5 s) overlap the serve process's
    own start, and its DynamoDB work runs beside the gateway instead of under the same lock."""

    def __init__(self, host: str = "127.0.0.1", limits: moto_server.Limits | None = None) -> None:
        self._host = host
        self._limits = limits or moto_server.Limits()
        self._process: subprocess.Popen[str] | None = None
        self._port: int | None = None
        self._ready = threading.Event()
        self.on_email: Callable[[dict[str, Any]], None] = lambda _message: None

    def start(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            moto_server.command(self._host, self._limits),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            # Its own session: Ctrl-C in the terminal reaches only the serve process, which
            # stops this one in order.
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._read, name="moto-output", daemon=True).start()

    def _read(self) -> None:
        stdout = self._process.stdout if self._process is not None else None
        if stdout is None:
            return
        for line in stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "port" in message:
                self._port = int(message["port"])
                self._ready.set()
            elif "email" in message:
                self.on_email(message["email"])
        self._ready.set()  # the process ended: wake whoever waits

    def endpoint(self, timeout: float = MOTO_START_TIMEOUT) -> str:
        """The endpoint URL, once moto listens."""
        if not self._ready.wait(timeout) or self._port is None:
            raise ServiceError("the embedded AWS services (moto) did not start; see the log above")
        return f"http://{self._host}:{self._port}"

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=3)


def start_stripe(host: str, port: int, *, any_port_if_taken: bool = False) -> StripeServer:
    """The Stripe-compatible server on `port` (12111 is stripe-mock's); on a free port instead
    when `port` is taken and `any_port_if_taken`."""
    from learnflow_cli.local.stripe_server import StripeServer  # noqa: PLC0415 - only when local

    def refuse(reason: str) -> ServiceError:
        return ServiceError(
            f"cannot listen on {host}:{port} for the Stripe-compatible server ({reason}); "
            "pass --stripe-port 0 for any free port, or --stripe-api-base to use another"
        )

    if port:
        # werkzeug's make_server prints its own advice and exits the process when the port is
        # taken: find out first, and say it our way.
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError as error:
                if not any_port_if_taken:
                    raise refuse(error.strerror or "in use") from None
                port = 0
    server = StripeServer(host, port)
    try:
        server.start()
    except (OSError, SystemExit):  # SystemExit: werkzeug's, if the port was taken meanwhile
        raise refuse("in use") from None
    # werkzeug listens with a queue of 128; the functions' workers are its only clients, but a
    # burst of them must wait to be accepted, never be reset.
    listener = getattr(getattr(server, "_server", None), "socket", None)
    if listener is not None:
        listener.listen(LISTEN_QUEUE)
    return server
