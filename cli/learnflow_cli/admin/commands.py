"""`learnflow accounts …` and `learnflow keys …`: administration over the ordinary AWS settings."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import boto3
import click
from botocore.exceptions import BotoCoreError, ClientError

from learnflow.db.accounts import PLANS
from learnflow.keys import MODES
from learnflow.permissions import ALL_PERMISSIONS
from learnflow_cli.admin.service import Admin, AdminError

if TYPE_CHECKING:
    from mypy_boto3_apigateway.client import APIGatewayClient

P = ParamSpec("P")
R = TypeVar("R")

TABLE_ENV = "LEARNFLOW_TABLE"
USAGE_PLAN_ENV = {
    "standard": "LEARNFLOW_USAGE_PLAN_STANDARD",
    "pro": "LEARNFLOW_USAGE_PLAN_PRO",
}
# The stack outputs this CLI reads (template.yaml's Outputs).
_OUTPUTS = {
    "table": "TableName",
    "standard": "StandardUsagePlanId",
    "pro": "ProUsagePlanId",
    "api": "ApiId",
}


class CommandError(click.ClickException):
    """A clean error: a message on standard error (and a JSON object on stdout with --json)."""

    def __init__(self, message: str, *, as_json: bool) -> None:
        super().__init__(message)
        self.as_json = as_json

    def show(self, file: Any = None) -> None:
        if self.as_json:
            click.echo(json.dumps({"error": {"message": self.message}}))
        super().show(file)


class JsonUsageError(click.UsageError):
    """A usage error (unknown option, bad or missing value, unknown command) of a run with
    --json: click's usage text on standard error as ever, and one JSON object on stdout."""

    def __init__(self, error: click.UsageError) -> None:
        super().__init__(error.format_message(), error.ctx)
        self._error = error

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(json.dumps({"error": {"message": self.message, "type": "usage_error"}}))
        self._error.show(file)


def _wants_json(args: Sequence[str]) -> bool:
    """--json among a command line's options (`--` ends them)."""
    options = args[: list(args).index("--")] if "--" in args else args
    return "--json" in options


@contextmanager
def _usage_errors(as_json: bool) -> Iterator[None]:
    try:
        yield
    except JsonUsageError:
        raise
    except click.UsageError as error:
        if not as_json:
            raise
        raise JsonUsageError(error) from None


class AdminGroup(click.Group):
    """`accounts` and `keys`: with --json anywhere on the command line, a usage error of the
    group or of its commands is one JSON object on stdout too (docs/local-stack.md). Parsing happens
    before any command sees its own --json flag, hence here: the group's arguments are parsed
    in `make_context`, its command is looked up and its arguments parsed in `invoke`."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with _usage_errors(_wants_json(args)):  # before parsing, which consumes `args`
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _usage_errors(_wants_json(ctx.args)):  # the command's arguments, before it runs
            return super().invoke(ctx)


@dataclass(frozen=True, slots=True)
class Target:
    """Where to administer: the table, and the tier usage plans (empty: no API Gateway)."""

    table_name: str
    usage_plans: dict[str, str] = field(default_factory=dict)
    api_id: str | None = None


def _session() -> boto3.session.Session:
    """The boto3 session: a caller's (passed as click's context object, as tests and embedding
    programs do, which also spares reloading service models), else a new one. boto3 itself
    honours AWS_ENDPOINT_URL (the local stack), profiles and AWS_DEFAULT_REGION; AWS_REGION is
    what Lambda and the keys file also set."""
    context = click.get_current_context(silent=True)
    given = context.find_object(boto3.session.Session) if context else None
    return given or boto3.session.Session(region_name=os.environ.get("AWS_REGION") or None)


def _stack_outputs(session: boto3.session.Session, stack: str) -> dict[str, str]:
    stacks = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    if not stacks:
        raise AdminError(f"no stack named {stack}")
    return {
        str(output["OutputKey"]): str(output["OutputValue"])
        for output in stacks[0].get("Outputs", [])
        if "OutputKey" in output and "OutputValue" in output
    }


def _resolve(
    session: boto3.session.Session,
    *,
    table: str | None,
    stack: str | None,
    usage_plans: Mapping[str, str | None] | None = None,
) -> Target:
    """Flags win, then the stack's outputs, then the environment."""
    outputs = _stack_outputs(session, stack) if stack else {}
    table_name = table or outputs.get(_OUTPUTS["table"]) or os.environ.get(TABLE_ENV)
    if not table_name:
        raise AdminError(f"no table: give --table, --stack or set {TABLE_ENV}")
    plans: dict[str, str] = {}
    for plan, env in USAGE_PLAN_ENV.items():
        value = (usage_plans or {}).get(plan) or outputs.get(_OUTPUTS[plan]) or os.environ.get(env)
        if value:
            plans[plan] = value
    return Target(table_name=table_name, usage_plans=plans, api_id=outputs.get(_OUTPUTS["api"]))


def _admin(
    table: str | None,
    stack: str | None,
    usage_plans: Mapping[str, str | None] | None = None,
) -> Admin:
    session = _session()
    target = _resolve(session, table=table, stack=stack, usage_plans=usage_plans)
    apigateway: APIGatewayClient | None = None
    if target.usage_plans:
        apigateway = session.client("apigateway")
    return Admin(
        session.resource("dynamodb").Table(target.table_name), apigateway, target.usage_plans
    )


@contextmanager
def _clean_errors(as_json: bool) -> Iterator[None]:
    """Every expected failure as one line, never a traceback (and never a secret: none is in
    an AWS error or an AdminError)."""
    try:
        yield
    except AdminError as error:
        raise CommandError(str(error), as_json=as_json) from None
    except ClientError as error:
        details = error.response.get("Error", {})
        code, text = details.get("Code", "error"), details.get("Message", "")
        message = f"AWS refused the request ({code})" + (f": {text}" if text else "")
        raise CommandError(message, as_json=as_json) from None
    except BotoCoreError as error:
        raise CommandError(
            f"AWS is not reachable or not configured: {error}", as_json=as_json
        ) from None


def _target_options(command: Callable[P, R]) -> Callable[P, R]:
    """--table / --stack / --json, shared by every command."""
    decorators = [
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout."),
        click.option(
            "--stack",
            metavar="NAME",
            help="Read the table and usage plan ids from this CloudFormation stack's outputs.",
        ),
        click.option("--table", metavar="NAME", help=f"The LearnFlow table (env {TABLE_ENV})."),
    ]
    for decorator in decorators:
        command = decorator(command)
    return command


def _emit(value: Mapping[str, Any], as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(value))
    else:
        human()


def _note(message: str) -> None:
    click.echo(message, err=True)


def _setup_logging() -> None:
    # The service logs through `logging`; its lines go to standard error, never to stdout.
    logger = logging.getLogger("learnflow_cli")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


# --------------------------------------------------------------------------- accounts


@click.group(cls=AdminGroup)
def accounts() -> None:
    """Create accounts (each gets its API Gateway key in its plan's usage plan)."""
    _setup_logging()


@accounts.command("create")
@click.option("--name", required=True, help="The account's display name.")
@click.option("--plan", required=True, type=click.Choice(PLANS), help="The account's tier.")
@click.option("--limit", type=int, help="Requests a minute (enterprise only, required there).")
@click.option(
    "--standard-usage-plan",
    metavar="ID",
    help=f"Usage plan of Standard accounts (env {USAGE_PLAN_ENV['standard']}).",
)
@click.option(
    "--pro-usage-plan",
    metavar="ID",
    help=f"Usage plan of Pro accounts (env {USAGE_PLAN_ENV['pro']}).",
)
@_target_options
def create_account(
    *,
    name: str,
    plan: str,
    limit: int | None,
    standard_usage_plan: str | None,
    pro_usage_plan: str | None,
    table: str | None,
    stack: str | None,
    as_json: bool,
) -> None:
    """Create an account on a plan."""
    with _clean_errors(as_json):
        admin = _admin(table, stack, {"standard": standard_usage_plan, "pro": pro_usage_plan})
        account = admin.create_account(name, plan, limit)
    if account["api_gateway_key_id"] is None:
        _note("No usage plans configured: the account has no API Gateway key (fine locally).")

    def human() -> None:
        click.echo(f"Created account {account['id']} ({account['name']})")
        click.echo(f"  plan: {account['plan']}, {account['rate_limit']} requests a minute")
        if account["api_gateway_key_id"]:
            click.echo(
                f"  API Gateway key: {account['api_gateway_key_id']}"
                f" in usage plan {account['usage_plan_id']}"
            )

    _emit(account, as_json, human)


# --------------------------------------------------------------------------- keys


@click.group(cls=AdminGroup)
def keys() -> None:
    """Create, list, revoke and roll API keys."""
    _setup_logging()


def _describe(key: Mapping[str, Any]) -> str:
    return f"{key['id']}  {key['redacted']}  {key['kind']} {key['mode']}  {key['status']}"


def _show_secret(secret: str) -> None:
    click.echo("Secret (shown once; store it now, it cannot be shown again):")
    click.echo(secret)


@keys.command("create")
@click.option("--account", "account_id", required=True, metavar="ACCT_ID")
@click.option("--mode", required=True, type=click.Choice(MODES))
@click.option("--restricted", is_flag=True, help="A restricted key (rk_) with only --permission.")
@click.option(
    "--permission",
    "permissions",
    multiple=True,
    type=click.Choice(sorted(ALL_PERMISSIONS)),
    help="A permission of the restricted key (repeat it).",
)
@_target_options
def create_key(
    *,
    account_id: str,
    mode: str,
    restricted: bool,
    permissions: tuple[str, ...],
    table: str | None,
    stack: str | None,
    as_json: bool,
) -> None:
    """Issue a key; its secret is printed this once."""
    if permissions and not restricted:
        _fail("--permission needs --restricted (a secret key has every permission)", as_json)
    if restricted and not permissions:
        _fail("a restricted key needs at least one --permission", as_json)
    with _clean_errors(as_json):
        key = _admin(table, stack).create_key(
            account_id, mode, list(permissions) if restricted else None
        )

    def human() -> None:
        click.echo(f"Created {_describe(key)}")
        click.echo(f"  permissions: {', '.join(key['permissions'])}")
        _show_secret(key["secret"])

    _emit(key, as_json, human)


@keys.command("list")
@click.option("--account", "account_id", required=True, metavar="ACCT_ID")
@_target_options
def list_keys(*, account_id: str, table: str | None, stack: str | None, as_json: bool) -> None:
    """List an account's keys (never their secrets)."""
    with _clean_errors(as_json):
        found = _admin(table, stack).list_keys(account_id)

    def human() -> None:
        if not found:
            click.echo(f"{account_id} has no keys.")
        for key in found:
            expiry = f"  expires {key['expires_at']}" if key["expires_at"] else ""
            click.echo(f"{_describe(key)}  [{', '.join(key['permissions'])}]{expiry}")

    _emit({"object": "list", "account_id": account_id, "data": found}, as_json, human)


@keys.command("revoke")
@click.argument("key_id", metavar="KEY_ID")
@click.option(
    "--flush-cache",
    is_flag=True,
    help="Also flush API Gateway's authorizer cache, so the key stops working at once.",
)
@click.option(
    "--api-id",
    metavar="ID",
    help="The REST API whose cache --flush-cache flushes (default: the --stack's ApiId).",
)
@_target_options
def revoke_key(
    *,
    key_id: str,
    flush_cache: bool,
    api_id: str | None,
    table: str | None,
    stack: str | None,
    as_json: bool,
) -> None:
    """Revoke a key (API Gateway may honour a cached answer for up to 60 s: --flush-cache)."""
    with _clean_errors(as_json):
        key = _admin(table, stack).revoke_key(key_id)
        flushed = _flush_authorizer_cache(api_id, stack) if flush_cache else None
    if flushed:
        key = {**key, "authorizer_cache_flushed": flushed}

    def human() -> None:
        click.echo(f"Revoked {_describe(key)}")
        if flushed:
            click.echo(f"  flushed the authorizer cache of API {flushed} (stage {STAGE})")
        else:
            click.echo("  API Gateway may accept it for up to 60 s more (--flush-cache: at once)")

    _emit(key, as_json, human)


STAGE = "v2"


def _flush_authorizer_cache(api_id: str | None, stack: str | None) -> str:
    """Forget every cached authorizer decision of the stage, so the next request of every key
    runs the authorizer again (which now refuses the revoked one). Cached decisions of other
    keys are rebuilt on their next request: a brief rise in authorizer calls, nothing more."""
    session = _session()
    api = api_id or (_stack_outputs(session, stack).get(_OUTPUTS["api"]) if stack else None)
    if not api:
        raise AdminError("--flush-cache needs the API: give --api-id or --stack")
    session.client("apigateway").flush_stage_authorizers_cache(restApiId=api, stageName=STAGE)
    return api


@keys.command("roll")
@click.argument("key_id", metavar="KEY_ID")
@click.option(
    "--expire-old-in",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="SECONDS",
    help="Keep the old key working this long.",
)
@_target_options
def roll_key(
    *, key_id: str, expire_old_in: int, table: str | None, stack: str | None, as_json: bool
) -> None:
    """Replace a key by a new one with the same account, mode and permissions."""
    with _clean_errors(as_json):
        key = _admin(table, stack).roll_key(key_id, expire_old_in)

    def human() -> None:
        old = key["rolled_from"]
        click.echo(f"Rolled {old['id']} into {_describe(key)}")
        click.echo(f"  the old key stops working at {old['expires_at']}")
        _show_secret(key["secret"])

    _emit(key, as_json, human)


def _fail(message: str, as_json: bool) -> NoReturn:
    raise CommandError(message, as_json=as_json)
