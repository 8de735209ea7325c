"""A key's view of the API over real HTTP, for the end-to-end tests."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from tests.support.stack import Stack

TIMEOUT = 10


class Client:
    """One key's view of the API."""

    def __init__(self, stack: Stack, secret: str) -> None:
        self.stack = stack
        self.session = requests.Session()
        self.session.headers.update(stack.headers(secret))

    def send(self, method: str, path: str, body: str | None = None, **query: str) -> Reply:
        response = self.session.request(
            method,
            self.stack.url(path),
            data=body,
            params=query or None,
            headers={"Content-Type": "application/json"} if body is not None else None,
            timeout=TIMEOUT,
        )
        return Reply(response)

    def post(self, path: str, body: str | dict[str, Any]) -> Reply:
        return self.send("POST", path, body if isinstance(body, str) else json.dumps(body))

    def patch(self, path: str, body: dict[str, Any]) -> Reply:
        return self.send("PATCH", path, json.dumps(body))

    def get(self, path: str, **query: str) -> Reply:
        return self.send("GET", path, **query)


class Reply:
    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        self.text = response.text
        self.headers = response.headers
        # Decimals, so a float artefact could not hide in the comparison
        self.body: dict[str, Any] = json.loads(response.text, parse_float=Decimal)

    @property
    def error(self) -> dict[str, Any]:
        return dict(self.body["error"])
