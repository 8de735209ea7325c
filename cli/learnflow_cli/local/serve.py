"""`learnflow serve`: the whole API on this machine, from template.yaml, with no Docker or AWS.
The command, the start-up (in an order that overlaps the slow parts) and the stop; what it
prints is in `console`, where payments go in `payments`."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from learnflow_cli.local.console import (
    CURL_PATH,
    LOOPBACK,
    Console,
    display_host,
    ready_banner,
    write_keys_file,
)
from learnflow_cli.local.payments import (
    STRIPE_MODES,
    start_payments,
    stripe_environment,
    stripe_keys_from_environment,
)

if TYPE_CHECKING:
    from mypy_boto3_apigateway.client import APIGatewayClient

    from learnflow_cli.local.apigateway import Gateway
    from learnflow_cli.local.aws import Aws
    from learnflow_cli.local.http_server import GatewayServer
    from learnflow_cli.local.lambda_runtime import LambdaRuntime
    from learnflow_cli.local.provisioning import Provisioned, SeededAccount
    from learnflow_cli.local.services import MotoProcess
    from learnflow_cli.local.streams import StreamDelivery
    from learnflow_cli.local.stripe_server import StripeServer

# The payments choice is importable from here, as it was before it had a module of its own.
__all__ = ["serve", "start_payments", "stripe_environment", "stripe_keys_from_environment"]

DEFAULT_TABLE = "learnflow-local"
API_NAME = "learnflow-local"


@dataclass(frozen=True, slots=True)
class _Options:
    host: str
    port: int
    keys_file: Path | None
    authorizer_cache: bool
    stripe_port: int
    aws_endpoint: str | None
    stripe_api_base: str | None
    table: str
    seed: bool
    # False when --stripe-port was left at its default: another port is taken if it is busy.
    stripe_port_given: bool = True


@dataclass(slots=True)
class _Stack:
    """Everything started, so that stopping undoes exactly that."""

    moto: MotoProcess | None = None
    stripe: StripeServer | None = None
    runtime: LambdaRuntime | None = None
    server: GatewayServer | None = None
    streams: list[StreamDelivery] = field(default_factory=list)

    def stop(self) -> None:
        """Stop every part at once (each waits on its own threads or process)."""
        steps: list[Callable[[], object]] = [stream.stop for stream in self.streams]
        if self.server is not None:
            server = self.server

            def stop_server() -> None:
                server.shutdown()
                server.server_close()

            steps.append(stop_server)
        if self.runtime is not None:
            steps.append(self.runtime.close)
        if self.stripe is not None:
            steps.append(self.stripe.stop)
        if self.moto is not None:
            steps.append(self.moto.stop)
        threads = [threading.Thread(target=step, daemon=True) for step in steps]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)


@click.command("serve")
@click.option("--host", default=LOOPBACK, show_default=True, help="Address to listen on.")
@click.option("--port", default=3000, show_default=True, type=int, help="0 picks a free port.")
@click.option(
    "--keys-file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the API URL, the demo keys and the admin CLI's environment here (JSON).",
)
@click.option(
    "--authorizer-cache",
    is_flag=True,
    help="Cache authorizer results per key for the template's TTL, as API Gateway does "
    "(off by default, so a revoked key fails at once).",
)
@click.option(
    "--stripe-port",
    default=12111,
    show_default=True,
    type=int,
    help="Port of the local Stripe-compatible server (0 picks a free port; when the default "
    "is taken, a free one is picked and shown).",
)
@click.option(
    "--aws-endpoint",
    metavar="URL",
    help="Use these AWS services (LocalStack, DynamoDB Local, ...) instead of starting moto; "
    "AWS_ENDPOINT_URL does the same. 'aws' means real AWS, through your AWS configuration.",
)
@click.option(
    "--stripe-api-base",
    metavar="URL",
    help="Send payments here instead of the local server (e.g. https://api.stripe.com with "
    "LEARNFLOW_STRIPE_SECRET_KEY_TEST=sk_test_... and, for live keys, "
    "LEARNFLOW_STRIPE_SECRET_KEY_LIVE=sk_live_...); LEARNFLOW_STRIPE_API_BASE does the same.",
)
@click.option("--table", default=DEFAULT_TABLE, show_default=True, help="DynamoDB table name.")
@click.option("--no-seed", is_flag=True, help="Do not create the two demo accounts.")
def serve(
    *,
    host: str,
    port: int,
    keys_file: Path | None,
    authorizer_cache: bool,
    stripe_port: int,
    aws_endpoint: str | None,
    stripe_api_base: str | None,
    table: str,
    no_seed: bool,
) -> None:
    """Run the whole API locally: API Gateway emulated from template.yaml in front of the real
    authorizer and handlers, with DynamoDB, SES and API Gateway from moto and a Stripe-compatible
    payments server, all on this machine."""
    started = time.perf_counter()
    options = _Options(
        host=host,
        port=port,
        keys_file=keys_file,
        authorizer_cache=authorizer_cache,
        stripe_port=stripe_port,
        aws_endpoint=aws_endpoint,
        stripe_api_base=stripe_api_base,
        table=table,
        seed=not no_seed,
        stripe_port_given=click.get_current_context().get_parameter_source("stripe_port")
        is not click.core.ParameterSource.DEFAULT,
    )
    console = Console()
    stack = _Stack()
    stop = threading.Event()
    _on_signals(stop)
    console.line(f"Starting LearnFlow's local stack on {host}:{port} ...")
    try:
        banner = _Starter(stack, console, options).start(started)
    except Exception as error:
        stack.stop()
        if isinstance(error, click.ClickException):
            raise
        raise click.ClickException(f"{type(error).__name__}: {error}") from error
    console.line(banner)
    while not stop.wait(0.5):
        if stack.moto is not None and not stack.moto.alive():
            console.line("The embedded AWS services stopped unexpectedly; stopping.", err=True)
            stack.stop()
            sys.exit(1)
    console.line("Stopping ...")
    stack.stop()
    console.line("Stopped.")


def _on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        # A second Ctrl-C while stopping ends the process at once.
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


class _Starter:
    """The start, in an order that overlaps the slow parts: moto's imports run in their own
    process and the workers' forkserver imports the runtime's dependencies, while this process
    binds its port, loads the template and starts the Stripe-compatible server."""

    def __init__(self, stack: _Stack, console: Console, options: _Options) -> None:
        self.stack, self.console, self.options = stack, console, options

    def start(self, started: float) -> str:
        """Start everything; the banner to print. Expected failures are ClickExceptions."""
        from learnflow_cli.local.functions import TemplateError  # noqa: PLC0415 - lazy, see below
        from learnflow_cli.local.services import ServiceError  # noqa: PLC0415

        try:
            return self._start(started)
        except (ServiceError, TemplateError) as error:
            raise click.ClickException(str(error)) from None

    def _start(self, started: float) -> str:
        from learnflow_cli import template as tpl  # noqa: PLC0415 - `learnflow --help` stays fast
        from learnflow_cli.local.aws import Aws  # noqa: PLC0415
        from learnflow_cli.local.http_server import serve_in_thread  # noqa: PLC0415
        from learnflow_cli.local.lambda_runtime import start_forkserver  # noqa: PLC0415
        from learnflow_cli.local.provisioning import provision, seed  # noqa: PLC0415

        options = self.options
        server = self._bind()
        start_forkserver()
        endpoint = self._start_moto()
        template = tpl.load_template()
        stripe_base, stripe_secrets = self._start_payments()
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        if self.stack.moto is not None:
            endpoint = self.stack.moto.endpoint()
        aws = Aws(endpoint=None if endpoint == "aws" else endpoint, region=region)
        provisioned = provision(aws, template, table_name=options.table, api_name=API_NAME)
        for warning in provisioned.warnings:
            self.console.line(f"note: {warning}", err=True)
        session = aws.session()
        apigateway = aws.client(session, "apigateway") if provisioned.api_id else None
        gateway = self._gateway(
            template,
            aws=aws,
            provisioned=provisioned,
            apigateway=apigateway,
            stripe_base=stripe_base,
            stripe_secrets=stripe_secrets,
        )
        accounts: list[SeededAccount] = []
        if options.seed:
            table = session.resource("dynamodb", endpoint_url=aws.endpoint).Table(options.table)
            accounts = seed(table, apigateway, provisioned.usage_plans)
        server.gateway = gateway
        serve_in_thread(server)
        self._start_streams(template, aws, provisioned)
        api_url = f"http://{display_host(options.host)}:{server.port}/{gateway.stage}"
        if options.keys_file is not None:
            env = {
                "LEARNFLOW_TABLE": options.table,
                **aws.environment(),
                **{
                    f"LEARNFLOW_USAGE_PLAN_{tier.upper()}": plan_id
                    for tier, plan_id in provisioned.usage_plans.items()
                },
            }
            write_keys_file(options.keys_file, api_url, accounts, env)
        return ready_banner(
            api_url=api_url,
            accounts=accounts,
            aws=aws,
            own_moto=self.stack.moto is not None,
            stripe_base=stripe_base,
            local_stripe=self.stack.stripe is not None,
            authorizer_cache=options.authorizer_cache,
            table=options.table,
            keys_file=options.keys_file,
            seconds=time.perf_counter() - started,
        )

    def _start_moto(self) -> str | None:
        from learnflow_cli.local.services import MotoProcess  # noqa: PLC0415

        endpoint = self.options.aws_endpoint or os.environ.get("AWS_ENDPOINT_URL") or None
        if endpoint is None:
            moto = MotoProcess(host=LOOPBACK)
            moto.on_email = self.console.email
            moto.start()
            self.stack.moto = moto
        return endpoint

    def _bind(self) -> GatewayServer:
        from learnflow_cli.local.http_server import GatewayServer  # noqa: PLC0415

        # Bound before the slow work, so a taken port fails at once.
        host, port = self.options.host, self.options.port
        try:
            server = GatewayServer((host, port), self.console.request)
        except OSError as error:
            raise click.ClickException(
                f"cannot listen on {host}:{port} ({error.strerror}); "
                "pick another port with --port (0 picks a free one)"
            ) from None
        self.stack.server = server
        return server

    def _start_payments(self) -> tuple[str, dict[str, str]]:
        payments = start_payments(
            api_base=self.options.stripe_api_base or os.environ.get("LEARNFLOW_STRIPE_API_BASE"),
            port=self.options.stripe_port,
            port_given=self.options.stripe_port_given,
            note=lambda text: self.console.line(f"note: {text}", err=True),
        )
        self.stack.stripe = payments.server
        return payments.api_base, payments.keys

    def _gateway(
        self,
        template: dict[str, Any],
        *,
        aws: Aws,
        provisioned: Provisioned,
        apigateway: APIGatewayClient | None,
        stripe_base: str,
        stripe_secrets: dict[str, str],
    ) -> Gateway:
        from learnflow_cli import template as tpl  # noqa: PLC0415
        from learnflow_cli.local.apigateway import Gateway  # noqa: PLC0415
        from learnflow_cli.local.functions import (  # noqa: PLC0415
            LOCAL_ACCOUNT_ID,
            Intrinsics,
            function_specs,
        )
        from learnflow_cli.local.lambda_runtime import LambdaRuntime  # noqa: PLC0415
        from learnflow_cli.local.provisioning import ApiKeyChecker  # noqa: PLC0415

        table = self.options.table
        api_id = provisioned.api_id or "local"
        table_id = tpl.table_definition(template).logical_id
        intrinsics = Intrinsics(
            template,
            refs={table_id: table, "Api": api_id},
            attributes={
                (table_id, "Arn"): f"arn:aws:dynamodb:{aws.region}:{LOCAL_ACCOUNT_ID}:"
                f"table/{table}",
                (table_id, "StreamArn"): provisioned.stream_arn or "",
            },
            region=aws.region,
        )
        local_env = {
            **aws.environment(),
            **stripe_environment(stripe_base, stripe_secrets),
            # X-Ray has no daemon here; Powertools' tracer would only complain.
            "POWERTOOLS_TRACE_DISABLED": "true",
            # CloudWatch reads metrics from the log stream (EMF); here they would only be JSON
            # lines burying the console's one line per request.
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
        overrides = {
            # The console shows one line per request; the functions' own INFO lines would bury
            # it. POWERTOOLS_LOG_LEVEL=INFO (or DEBUG) in the environment brings them back.
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL") or "WARNING",
            # Production reads the Stripe keys from SSM; here they are given directly (above).
            **{f"LEARNFLOW_STRIPE_SECRET_PARAMETER_{mode.upper()}": "" for mode in STRIPE_MODES},
        }
        specs = function_specs(
            template,
            tpl.DEFAULT_TEMPLATE_PATH.parent,
            intrinsics,
            region=aws.region,
            local_environment=local_env,
            overrides=overrides,
        )
        self.stack.runtime = runtime = LambdaRuntime(specs)
        checker = (
            ApiKeyChecker(apigateway, api_id, tpl.stage_name(template)) if apigateway else None
        )
        gateway = Gateway(
            template,
            runtime,
            api_id=api_id,
            region=aws.region,
            authorizer_cache=self.options.authorizer_cache,
            api_key_lookup=checker,
        )
        # Every request needs the authorizer, and the banner's curl line needs GET /courses:
        # their workers start now (every other function's at its first request).
        for function in (gateway.authorizer_function, gateway.function_for("GET", CURL_PATH)):
            if function is not None:
                runtime.prewarm(function)
        return gateway

    def _start_streams(self, template: dict[str, Any], aws: Aws, provisioned: Provisioned) -> None:
        """Before the keys file appears: nothing written after it may be missed (LATEST)."""
        from learnflow_cli import template as tpl  # noqa: PLC0415
        from learnflow_cli.local.provisioning import create_sender_identity  # noqa: PLC0415
        from learnflow_cli.local.streams import StreamDelivery  # noqa: PLC0415

        if not provisioned.stream_arn or self.stack.runtime is None:
            return
        client = aws.client(aws.session(), "dynamodbstreams")
        sender = tpl.parameter_defaults(template)["SenderEmail"]
        lock = threading.Lock()

        def prepare() -> None:
            with lock:
                warning = create_sender_identity(aws, sender)
            if warning:
                self.console.line(f"note: {warning}", err=True)

        for function in tpl.stream_functions(template):
            delivery = StreamDelivery(
                client,
                provisioned.stream_arn,
                function,
                invoke=self.stack.runtime.invoke,
                log=self.console.line,
                prepare=prepare,
            )
            delivery.start()
            self.stack.streams.append(delivery)
