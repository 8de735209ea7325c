"""Checks shared by the local API Gateway's tests (against `learnflow serve` and against the
emulator alone): the error envelope over HTTP, and requests sent byte for byte."""

from __future__ import annotations

import http.client
import re
import socket
from typing import Any
from urllib.parse import urlsplit

import requests

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def json_body(response: requests.Response) -> dict[str, Any]:
    """The response's JSON object; its Content-Type must say JSON."""
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    return body


def assert_error(response: requests.Response, status: int, kind: str, code: str | None) -> None:
    """The contract's error envelope, with `request_id` equal to the `Request-Id` header."""
    assert response.status_code == status, response.text
    error = json_body(response)["error"]
    assert error["type"] == kind
    if code is not None:
        assert error["code"] == code
    assert UUID.match(response.headers["Request-Id"])
    assert error["request_id"] == response.headers["Request-Id"]


def raw_request(
    url: str, request: bytes, *, half_close: bool = False, timeout: float = 10
) -> tuple[http.client.HTTPResponse, bytes]:
    """Send `request` byte for byte to the host and port of `url` (no client to tidy it up)
    and read the response to it; `half_close` ends the client's side once it is sent."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname or "", address.port or 80), timeout) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response, response.read()
