"""The request and the response as the HTTP server hands them to the gateway and back (plain
data, headers in order with duplicates kept), and the `Refusal` with which a part of the gateway
stops a request, for the gateway to answer with the template's gateway response."""

from __future__ import annotations

from dataclasses import dataclass, field

JSON_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    target: str  # path and query string as sent
    headers: list[tuple[str, str]]  # in order, duplicates kept
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"

    def header(self, name: str) -> str | None:
        """The last value of a header (API Gateway's single-value view), None when absent."""
        values = self.header_values(name)
        return values[-1] if values else None

    def header_values(self, name: str) -> list[str]:
        """Every value of a header, in the order sent (names compared case-insensitively)."""
        return [value for key, value in self.headers if key.lower() == name.lower()]


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    request_id: str = ""
    function: str | None = None  # the function that answered, None for the gateway itself
    authorizer_ms: float | None = None  # set when the authorizer function ran for this request
    notes: list[str] = field(default_factory=list)  # errors worth a line on the console


@dataclass(frozen=True, slots=True)
class Refusal:
    """Where a request stops: the gateway response to answer with, and why on the console."""

    response_type: str  # UNAUTHORIZED, ACCESS_DENIED, DEFAULT_5XX, ...
    status: int  # API Gateway's status for it, unless the template maps another
    note: str | None = None
