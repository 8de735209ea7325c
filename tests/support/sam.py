"""template.yaml as CloudFormation receives it: SAM's own translator, run in-process (~0.5 s)."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import pytest

from learnflow_cli.template import load_template


class _NoManagedPolicies:
    """SAM looks up AWS managed policy names through IAM; the template names none by short name."""

    def load(self) -> dict[str, str]:
        return {}


@cache
def _translated() -> dict[str, Any]:
    from samtranslator.translator.transform import transform  # noqa: PLC0415 - slow import

    sam = load_template()
    for resource in sam["Resources"].values():
        properties = resource.get("Properties", {})
        for name in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(name), str):
                properties[name] = "s3://bucket/key"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        translated: dict[str, Any] = transform(sam, {}, _NoManagedPolicies())
    return translated


def translated() -> dict[str, Any]:
    """A copy of the translated template (what `sam deploy` hands CloudFormation)."""
    return copy.deepcopy(_translated())


def resources(cfn: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == resource_type}


def role_statements(cfn: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    """Every statement of a function's role: its inline policies, and the managed policies of
    this template it attaches (AWS's own, for logs and X-Ray, grant no table access)."""
    role_id = cfn["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    role = cfn["Resources"][role_id]["Properties"]
    documents = [policy["PolicyDocument"] for policy in role.get("Policies", [])]
    for arn in role.get("ManagedPolicyArns", []):
        if isinstance(arn, dict) and "Ref" in arn:
            managed = cfn["Resources"][arn["Ref"]]
            assert managed["Type"] == "AWS::IAM::ManagedPolicy"
            documents.append(managed["Properties"]["PolicyDocument"])
    return [statement for document in documents for statement in document["Statement"]]


def actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)
