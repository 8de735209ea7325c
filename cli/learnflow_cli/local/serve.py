"""`learnflow serve`: the whole API on this machine, from template.yaml, with no Docker or AWS."""

from __future__ import annotations

import json
import os
import secrets
import signal
import string
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

if TYPE_CHECKING:
    from learnflow_cli.local.gateway import Gateway, GatewayServer, HttpResponse, LambdaRuntime
    from learnflow_cli.local.services import (
        Aws,
        MotoProcess,
        Provisioned,
        SeededAccount,
        StreamDelivery,
    )

DEFAULT_TABLE = "learnflow-local"
API_NAME = "learnflow-local"
LOOPBACK = "127.0.0.1"
CURL_PATH = "/courses"  # what the banner's ready-to-paste curl line calls
STRIPE_MODES = ("test", "live")


class _Console:
    """One writer for every thread: request lines, e-mails and the banner never interleave."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def line(self, text: str, *, err: bool = False) -> None:
        with self._lock:
            click.echo(text, err=err)

    def request(self, method: str, target: str, response: HttpResponse, ms: float) -> None:
        """`12:00:03  GET    /v2/courses  200  31 ms  ListCoursesFunction  auth 9 ms  req …`"""
        parts = [datetime.now().strftime("%H:%M:%S"), f"{method:<5}", target]
        parts += [str(response.status), f"{ms:.0f} ms", response.function or "(gateway)"]
        if response.authorizer_ms is not None:
            parts.append(f"auth {response.authorizer_ms:.0f} ms")
        parts += [note for note in response.notes if note.startswith("cold")]
        if response.request_id:
            parts.append(f"req {response.request_id}")
        problems = [f"    {note}" for note in response.notes if not note.startswith("cold")]
        self.line("\n".join(["  ".join(parts), *problems]))

    def email(self, message: dict[str, Any]) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        to = ", ".join(message.get("to") or []) or "(no recipient)"
        subject, sender = message.get("subject", ""), message.get("from", "")
        self.line(f'{stamp}  [mail] to {to}: "{subject}" (from {sender})')


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
    stripe: Any = None
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
    console = _Console()
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

    def __init__(self, stack: _Stack, console: _Console, options: _Options) -> None:
        self.stack, self.console, self.options = stack, console, options

    def start(self, started: float) -> str:
        """Start everything; the banner to print. Expected failures are ClickExceptions."""
        from learnflow_cli.local.gateway import TemplateError  # noqa: PLC0415 - lazy, see below
        from learnflow_cli.local.services import ServiceError  # noqa: PLC0415

        try:
            return self._start(started)
        except (ServiceError, TemplateError) as error:
            raise click.ClickException(str(error)) from None

    def _start(self, started: float) -> str:
        from learnflow_cli import template as tpl  # noqa: PLC0415 - `learnflow --help` stays fast
        from learnflow_cli.local import gateway as gw  # noqa: PLC0415
        from learnflow_cli.local import services  # noqa: PLC0415

        options = self.options
        server = self._bind(gw)
        gw.start_forkserver()
        endpoint = self._start_moto(services)
        template = tpl.load_template()
        stripe_base, stripe_secrets = self._start_payments()
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        if self.stack.moto is not None:
            endpoint = self.stack.moto.endpoint()
        aws = services.Aws(endpoint=None if endpoint == "aws" else endpoint, region=region)
        provisioned = services.provision(aws, template, table_name=options.table, api_name=API_NAME)
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
            accounts = services.seed(table, apigateway, provisioned.usage_plans)
        server.gateway = gateway
        gw.serve_in_thread(server)
        self._start_streams(template, aws, provisioned)
        api_url = f"http://{_display_host(options.host)}:{server.port}/{gateway.stage}"
        if options.keys_file is not None:
            env = {
                "LEARNFLOW_TABLE": options.table,
                **aws.environment(),
                **{
                    f"LEARNFLOW_USAGE_PLAN_{tier.upper()}": plan_id
                    for tier, plan_id in provisioned.usage_plans.items()
                },
            }
            _write_keys_file(options.keys_file, api_url, accounts, env)
        return _banner(
            api_url=api_url,
            accounts=accounts,
            aws=aws,
            own_moto=self.stack.moto is not None,
            stripe_base=stripe_base,
            local_stripe=self.stack.stripe is not None,
            options=options,
            seconds=time.perf_counter() - started,
        )

    def _start_moto(self, services: Any) -> str | None:
        endpoint = self.options.aws_endpoint or os.environ.get("AWS_ENDPOINT_URL") or None
        if endpoint is None:
            moto: MotoProcess = services.MotoProcess(host=LOOPBACK)
            moto.on_email = self.console.email
            moto.start()
            self.stack.moto = moto
        return endpoint

    def _bind(self, gw: Any) -> GatewayServer:
        # Bound before the slow work, so a taken port fails at once.
        host, port = self.options.host, self.options.port
        try:
            server: GatewayServer = gw.GatewayServer((host, port), self.console.request)
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
        apigateway: Any,
        stripe_base: str,
        stripe_secrets: dict[str, str],
    ) -> Gateway:
        from learnflow_cli import template as tpl  # noqa: PLC0415
        from learnflow_cli.local import gateway as gw  # noqa: PLC0415
        from learnflow_cli.local.services import ApiKeyChecker  # noqa: PLC0415

        table = self.options.table
        api_id = provisioned.api_id or "local"
        table_id = tpl.table_definition(template).logical_id
        intrinsics = gw.Intrinsics(
            template,
            refs={table_id: table, "Api": api_id},
            attributes={
                (table_id, "Arn"): f"arn:aws:dynamodb:{aws.region}:{gw.LOCAL_ACCOUNT_ID}:"
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
        specs = gw.function_specs(
            template,
            tpl.DEFAULT_TEMPLATE_PATH.parent,
            intrinsics,
            region=aws.region,
            local_environment=local_env,
            overrides=overrides,
        )
        self.stack.runtime = runtime = gw.LambdaRuntime(specs)
        checker = (
            ApiKeyChecker(apigateway, api_id, tpl.stage_name(template)) if apigateway else None
        )
        gateway: Gateway = gw.Gateway(
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
        from learnflow_cli.local.services import (  # noqa: PLC0415
            StreamDelivery,
            create_sender_identity,
        )

        if not provisioned.stream_arn or self.stack.runtime is None:
            return
        client = aws.client(aws.session(), "dynamodbstreams")
        sender = _template_parameters(template)["SenderEmail"]
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


@dataclass(frozen=True, slots=True)
class Payments:
    api_base: str
    keys: dict[str, str]  # mode → Stripe secret key
    server: Any = None  # the local Stripe-compatible server, when it runs


def start_payments(
    *, api_base: str | None, port: int, port_given: bool, note: Callable[[str], None]
) -> Payments:
    """Where the functions' payments go: `api_base` with keys from the environment, else the
    local Stripe-compatible server on `port` with a generated key per mode (the server tells
    live mode from `_live_` in the key, as Stripe's keys read). When the port was not chosen
    (`port_given` False) and is taken, any free port is used, and `note` says which."""
    from learnflow_cli.local import services  # noqa: PLC0415 - `learnflow --help` stays fast

    if api_base:
        keys, missing = stripe_keys_from_environment(os.environ)
        for mode in missing:
            note(
                f"LEARNFLOW_STRIPE_SECRET_KEY_{mode.upper()} is not set: requests made with "
                f"{mode} API keys cannot reach Stripe"
            )
        return Payments(api_base, keys)
    server = services.start_stripe(LOOPBACK, port, any_port_if_taken=not port_given)
    listening = urlsplit(str(server.url)).port
    if port and listening != port:
        note(
            f"port {port} is taken; the Stripe-compatible server listens on {listening} "
            "instead (--stripe-port chooses)"
        )
    return Payments(str(server.url), {mode: _local_secret(mode) for mode in STRIPE_MODES}, server)


def _local_secret(mode: str) -> str:
    alphabet = string.ascii_letters + string.digits
    return f"sk_{mode}_local" + "".join(secrets.choice(alphabet) for _ in range(24))


def stripe_keys_from_environment(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The Stripe secret key of each mode for --stripe-api-base, and the modes without one:
    LEARNFLOW_STRIPE_SECRET_KEY_TEST (or the older LEARNFLOW_STRIPE_SECRET_KEY) and
    LEARNFLOW_STRIPE_SECRET_KEY_LIVE. A key of the other mode in a slot is refused: test
    requests must never move real money, nor live ones go to the sandbox."""
    names = {
        "test": ("LEARNFLOW_STRIPE_SECRET_KEY_TEST", "LEARNFLOW_STRIPE_SECRET_KEY"),
        "live": ("LEARNFLOW_STRIPE_SECRET_KEY_LIVE",),
    }
    keys: dict[str, str] = {}
    for mode, candidates in names.items():
        name = next((name for name in candidates if environ.get(name, "").strip()), None)
        if name is None:
            continue
        key = environ[name].strip()
        if not key.startswith((f"sk_{mode}_", f"rk_{mode}_")):
            raise click.ClickException(
                f"{name} is not a {mode}-mode key (expected sk_{mode}_... or rk_{mode}_...)"
            )
        keys[mode] = key
    if not keys:
        raise click.ClickException(
            "--stripe-api-base needs LEARNFLOW_STRIPE_SECRET_KEY_TEST (a sk_test_ key) and/or "
            "LEARNFLOW_STRIPE_SECRET_KEY_LIVE (a sk_live_ key) set"
        )
    return keys, [mode for mode in STRIPE_MODES if mode not in keys]


def stripe_environment(base: str, keys: Mapping[str, str]) -> dict[str, str]:
    """What the functions read to reach Stripe: the API base and a secret key per mode."""
    return {
        "LEARNFLOW_STRIPE_API_BASE": base,
        **{f"LEARNFLOW_STRIPE_SECRET_KEY_{mode.upper()}": key for mode, key in keys.items()},
    }


def _template_parameters(template: dict[str, Any]) -> dict[str, str]:
    return {
        str(name): str(body["Default"])
        for name, body in (template.get("Parameters") or {}).items()
        if "Default" in body
    }


def _display_host(host: str) -> str:
    return LOOPBACK if host in ("0.0.0.0", "") else host  # noqa: S104 - only displayed


def _write_keys_file(
    path: Path, api_url: str, accounts: list[SeededAccount], env: dict[str, str]
) -> None:
    """The keys file's JSON, written whole (a reader never sees half a file), readable only by
    its owner (it holds secrets)."""
    document = {
        "api": api_url,
        "accounts": [
            {"id": account.id, "plan": account.plan, "keys": dict(account.keys)}
            for account in accounts
        ],
        "env": env,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    partial.replace(path)


def _banner(
    *,
    api_url: str,
    accounts: list[SeededAccount],
    aws: Aws,
    own_moto: bool,
    stripe_base: str,
    local_stripe: bool,
    options: _Options,
    seconds: float,
) -> str:
    lines = [
        "",
        f"LearnFlow API v2 is running locally (ready in {seconds:.1f} s)",
        "",
        f"  API        {api_url}",
        f"  OpenAPI    {api_url}/openapi.json",
        "",
    ]
    for account in accounts:
        lines.append(f"  {account.plan.title():<9}  {account.id}")
        lines += [f"    {mode}     {account.keys[mode]}" for mode in ("test", "live")]
    if accounts:
        test_key = accounts[0].keys["test"]
        lines += [
            "",
            "  Try it:",
            f'    curl {api_url}{CURL_PATH} -H "Authorization: Bearer {test_key}"',
        ]
    else:
        lines.append("  No demo accounts (--no-seed): `learnflow accounts create` makes one.")
    if own_moto:
        aws_where = f"moto at {aws.endpoint}"
        mail = "printed below as [mail] lines when SES accepts them"
    else:
        aws_where = aws.endpoint or "real AWS (your AWS configuration)"
        mail = "in the SES of the endpoint above"
    payments = f"{stripe_base}" + (
        " (local; test cards pm_card_visa, pm_card_chargeDeclined, ...)" if local_stripe else ""
    )
    cache = "on (the template's TTL)" if options.authorizer_cache else "off (revocation is instant)"
    lines += [
        "",
        f"  AWS        DynamoDB, SES, API Gateway: {aws_where} (table {options.table})",
        f"  Payments   {payments}",
        f"  E-mails    {mail}",
        f"  Auth cache {cache}",
    ]
    if options.keys_file is not None:
        lines.append(f"  Keys file  {options.keys_file} (its env points `learnflow` here)")
    lines += ["", "  One line per request below. Press Ctrl-C to stop.", ""]
    return "\n".join(lines)
