"""Where the local stack's AWS calls go (moto, another AWS-compatible endpoint, or real AWS):
sessions, typed clients, the environment that points other processes there, and the error
code of a failed call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from botocore.exceptions import ClientError
    from mypy_boto3_apigateway.client import APIGatewayClient
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodbstreams.client import DynamoDBStreamsClient
    from mypy_boto3_sesv2.client import SESV2Client

DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


def error_code(error: ClientError) -> str:
    """The AWS error code of a failed call (ResourceInUseException, ...), "" when it has none."""
    return str(error.response.get("Error", {}).get("Code", ""))


@dataclass(frozen=True, slots=True)
class Aws:
    """Where the stack's AWS calls go: an endpoint (moto, LocalStack, DynamoDB Local) or, with
    endpoint None, real AWS through the ordinary configuration."""

    endpoint: str | None
    region: str

    @property
    def credentials(self) -> dict[str, str]:
        return dict(DUMMY_CREDENTIALS) if self.endpoint else {}

    def session(self) -> boto3.session.Session:
        return boto3.session.Session(
            region_name=self.region,
            aws_access_key_id=self.credentials.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=self.credentials.get("AWS_SECRET_ACCESS_KEY"),
        )

    @overload
    def client(
        self, session: boto3.session.Session, service: Literal["apigateway"]
    ) -> APIGatewayClient: ...
    @overload
    def client(
        self, session: boto3.session.Session, service: Literal["dynamodb"]
    ) -> DynamoDBClient: ...
    @overload
    def client(
        self, session: boto3.session.Session, service: Literal["dynamodbstreams"]
    ) -> DynamoDBStreamsClient: ...
    @overload
    def client(self, session: boto3.session.Session, service: Literal["sesv2"]) -> SESV2Client: ...
    def client(self, session: boto3.session.Session, service: str) -> Any:
        config = Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=2,
            read_timeout=10,
            account_id_endpoint_mode="disabled",
        )
        return session.client(service, endpoint_url=self.endpoint, config=config)  # type: ignore[call-overload]

    def environment(self) -> dict[str, str]:
        """What a process needs to reach the same services (functions and the admin CLI)."""
        env = {
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
            **self.credentials,
        }
        if self.endpoint:
            env["AWS_ENDPOINT_URL"] = self.endpoint
        return env
