"""The local gateway's IAM policy evaluation: an authorizer's policy for `execute-api:Invoke` on
a method ARN, with IAM's wildcards and no matching Allow meaning no."""

from __future__ import annotations

from learnflow_cli.local.iam import policy_allows


def test_policy_wildcards_follow_iam() -> None:
    arn = "arn:aws:execute-api:us-east-1:1:api/v2/GET/items/x"
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "execute-api:Invoke",
                "Resource": "arn:aws:execute-api:us-east-1:1:api/v2/*/items/?",
            }
        ]
    }
    assert policy_allows(policy, arn)
    assert not policy_allows(policy, arn + "y")
    assert not policy_allows({"Statement": []}, arn)
    wrong_action = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    assert not policy_allows(wrong_action, arn)
