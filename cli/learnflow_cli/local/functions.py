"""Template → functions ready to run locally: each function's code path, layers, handler, limits
and Lambda's environment, with the CloudFormation intrinsics of its variables resolved to local
values. What a function declares (and `Globals`) is read by `learnflow_cli.template`."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from learnflow_cli import template as tpl

LOCAL_ACCOUNT_ID = "123456789012"
STACK_NAME = "learnflow-local"


class TemplateError(ValueError):
    """template.yaml declares something the local stack cannot run; the message says what."""


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One function as Lambda would run it: code, handler, environment and limits."""

    name: str
    python_path: tuple[str, ...]  # the function's code first (/var/task), then its layers
    module: str
    handler: str
    environment: dict[str, str]
    timeout: float
    memory_mb: int
    arn: str


class Intrinsics:
    """Resolves the CloudFormation intrinsics that environments use, with local values."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        refs: Mapping[str, str],
        attributes: Mapping[tuple[str, str], str],
        parameters: Mapping[str, str] | None = None,
        region: str,
    ) -> None:
        self._refs: dict[str, Any] = {
            "AWS::Region": region,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::StackName": STACK_NAME,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            **tpl.parameter_defaults(template),
        }
        self._refs.update(parameters or {})
        self._refs.update(refs)
        self._attributes = dict(attributes)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {key: self.resolve(item) for key, item in value.items()}
        ((function, argument),) = value.items()
        functions: dict[str, Callable[[Any], Any]] = {
            "Ref": lambda name: self._ref(str(name)),
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": lambda args: str(args[0]).join(str(x) for x in self.resolve(args[1])),
            "Fn::Select": lambda args: self.resolve(args[1])[int(self.resolve(args[0]))],
            "Fn::Split": lambda args: str(self.resolve(args[1])).split(str(args[0])),
        }
        if function in functions:
            return functions[function](argument)
        if function.startswith("Fn::"):
            raise TemplateError(f"{function} is not supported by the local stack here")
        return {function: self.resolve(argument)}

    def _get_att(self, argument: Any) -> str:
        parts = argument if isinstance(argument, list) else str(argument).split(".", 1)
        return self._attribute(str(parts[0]), str(parts[1]))

    def _ref(self, name: str) -> Any:
        if name not in self._refs:
            raise TemplateError(f"!Ref {name}: no local value for it")
        return self._refs[name]

    def _attribute(self, resource: str, attribute: str) -> str:
        if (resource, attribute) not in self._attributes:
            raise TemplateError(f"!GetAtt {resource}.{attribute}: no local value for it")
        return self._attributes[(resource, attribute)]

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        local = {str(key): self.resolve(item) for key, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(local[name])
            if "." in name:
                resource, attribute = name.split(".", 1)
                return self._attribute(resource, attribute)
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, str(text))


def function_specs(
    template: Mapping[str, Any],
    root: Path,
    intrinsics: Intrinsics,
    *,
    region: str,
    local_environment: Mapping[str, str],
    overrides: Mapping[str, str] | None = None,
) -> dict[str, FunctionSpec]:
    """Every AWS::Serverless::Function of the template, ready to run locally.

    The environment is Lambda's: the runtime's reserved variables, then `local_environment`
    (endpoints, dummy credentials), then Globals and the function's own variables, resolved,
    then `overrides` (local choices that win over the template, such as the log level).
    """
    specs: dict[str, FunctionSpec] = {}
    for name, declared in tpl.functions(template).items():
        code_dir = (root / declared.code_uri).resolve()
        layer_dirs = [_layer_dir(template, layer, root) for layer in declared.layers]
        module, handler = declared.module, declared.handler_attr
        environment = {
            **_host_environment(),
            "_HANDLER": f"{module}.{handler}",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{declared.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(declared.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": _log_stream_name(),
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "LAMBDA_TASK_ROOT": str(code_dir),
            "TZ": "UTC",
            **local_environment,
        }
        for key, value in declared.environment.items():
            environment[str(key)] = _env_string(intrinsics.resolve(value))
        environment.update(overrides or {})
        specs[name] = FunctionSpec(
            name=name,
            python_path=(str(code_dir), *(str(path) for path in layer_dirs if path)),
            module=module,
            handler=handler,
            environment=environment,
            timeout=declared.timeout,
            memory_mb=declared.memory_mb,
            arn=f"arn:aws:lambda:{region}:{LOCAL_ACCOUNT_ID}:function:{name}",
        )
    return specs


def _layer_dir(template: Mapping[str, Any], layer: Any, root: Path) -> Path | None:
    """A layer of this template → its Python directory (None: nothing local to add)."""
    content = tpl.layer_content_uri(template, layer)
    if content is None:
        return None
    directory = (root / content).resolve()
    # A built layer keeps packages under python/; the source layer is the package root itself.
    return directory / "python" if (directory / "python").is_dir() else directory


def _env_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _host_environment() -> dict[str, str]:
    """What a worker keeps from the developer's environment: enough to run Python, nothing that
    would point AWS or Stripe calls somewhere else."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV")
    return {name: os.environ[name] for name in keep if name in os.environ}


def _log_stream_name() -> str:
    today = datetime.now(UTC).strftime("%Y/%m/%d")
    return f"{today}/[$LATEST]{secrets.token_hex(16)}"
