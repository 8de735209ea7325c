"""The emulator over the test functions of `app.py`: `emulator` (one per directory, two servers
over one runtime) for tests through HTTP, `app_specs` for tests of the runtime alone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from learnflow_cli.local.apigateway import Gateway
from learnflow_cli.local.functions import FunctionSpec
from learnflow_cli.local.http_server import GatewayServer, serve_in_thread
from learnflow_cli.local.lambda_runtime import LambdaRuntime
from tests.integration.gateway.app import write_app


@dataclass(slots=True)
class Emulator:
    url: str  # http://127.0.0.1:<port>/v2, without the authorizer cache
    cached_url: str  # the same gateway with the authorizer cache on
    invocations: Path  # the authorizer's log of the events it got

    def authorizer_calls(self) -> int:
        return len(self.invocations.read_text().splitlines()) if self.invocations.exists() else 0


@pytest.fixture(scope="package")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The gateway over TEMPLATE's test functions, served twice: without and with the
    authorizer cache (one runtime, so both share warm workers)."""
    root = tmp_path_factory.mktemp("emulator")
    invocations = root / "invocations.log"
    template, specs = write_app(root, invocations)
    runtime = LambdaRuntime(specs, preload=())
    servers = []
    for cache in (False, True):
        gateway = Gateway(
            template, runtime, api_id="api123", region="us-east-1", authorizer_cache=cache
        )
        server = GatewayServer(("127.0.0.1", 0), lambda *_: None)
        server.gateway = gateway
        serve_in_thread(server)
        servers.append(server)
    try:
        yield Emulator(
            url=f"http://127.0.0.1:{servers[0].port}/v2",
            cached_url=f"http://127.0.0.1:{servers[1].port}/v2",
            invocations=invocations,
        )
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        runtime.close()


@pytest.fixture
def app_specs(tmp_path: Path) -> dict[str, FunctionSpec]:
    """TEMPLATE's functions, written under this test's own directory and ready to run."""
    return write_app(tmp_path, tmp_path / "invocations.log")[1]
