"""A small Stripe-compatible payments server that the real `stripe` SDK talks to over HTTP."""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import itertools
import json
import logging
import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

logger = logging.getLogger(__name__)

JSON = dict[str, Any]

API_VERSION = "2026-10-28.endive"  # what stripe 16.1 pins; echoed when a client sends none
IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60
# Stripe keeps a key for 24 hours; a local server under a long load test would keep every one
# of them in memory, so beyond this many the oldest finished ones are forgotten first.
MAX_IDEMPOTENCY_RECORDS = 10_000
MAX_AMOUNT = 99_999_999  # Stripe's ceiling: 999,999.99 in a two-decimal currency
_ALPHABET = string.ascii_letters + string.digits
_KEY_RE = re.compile(r"(sk|rk)_(test|live)_[A-Za-z0-9]+")
_FORM_KEY_RE = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")


def _codes(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Stripe's presentment currencies, its minimum charge amounts (minor units) and the currencies
# without minor units, as its documentation lists them (used for messages and minimums only).
CURRENCIES = _codes(
    "usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp "
    "byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip "
    "gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt "
    "lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr "
    "nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd "
    "std szl thb tjs tnd top try ttd twd tzs uah ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar "
    "zmw"
)
MINIMUM_AMOUNTS = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50, "czk": 1500,
    "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50, "mxn": 1000,
    "myr": 200, "nok": 300, "nzd": 50, "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000,
}  # fmt: skip
ZERO_DECIMAL = _codes("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf")
THREE_DECIMAL = _codes("bhd jod kwd omr tnd")

_PI_CONFIRM_PARAMS = frozenset(
    {"payment_method", "off_session", "return_url", "expand", "mandate_data", "use_stripe_sdk",
     "error_on_requires_action", "payment_method_options", "receipt_email", "setup_future_usage",
     "shipping", "capture_method", "payment_method_types"}
)  # fmt: skip
_PI_CREATE_PARAMS = _PI_CONFIRM_PARAMS | {
    "amount", "currency", "confirm", "metadata", "description", "automatic_payment_methods",
    "confirmation_method", "customer", "statement_descriptor", "statement_descriptor_suffix",
    "transfer_group",
}  # fmt: skip
_CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation",
               "requires_action", "processing")  # fmt: skip


@dataclass(frozen=True)
class _Card:
    """A Stripe test card behind a `pm_card_*` shortcut, and how its charges end."""

    brand: str
    last4: str
    decline_code: str | None = None
    message: str = ""
    needs_authentication: bool = False


TEST_CARDS = {
    "pm_card_visa": _Card("visa", "4242"),
    "pm_card_mastercard": _Card("mastercard", "4444"),
    "pm_card_chargeDeclined": _Card("visa", "0002", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": _Card(
        "visa", "9995", "insufficient_funds", "Your card has insufficient funds."
    ),
    "pm_card_authenticationRequired": _Card(
        "visa",
        "3184",
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
        needs_authentication=True,
    ),
}


class StripeError(Exception):
    """An answer in Stripe's error shape; `saved` is False when no endpoint began its work."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        saved: bool = True,
        extra: JSON | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.saved = status, saved
        self.error: JSON = {"type": type_, "message": message}
        if code:
            self.error["code"] = code
            self.error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param:
            self.error["param"] = param
        self.error.update(extra or {})


def _param_error(message: str, param: str, code: str | None = None) -> StripeError:
    # Parameter validation runs before any endpoint, so Stripe saves no idempotent result for it.
    return StripeError(400, "invalid_request_error", message, code=code, param=param, saved=False)


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{_random(length)}"


def _format_amount(amount: int, currency: str) -> str:
    decimals = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    return f"{amount / 10**decimals:,.{decimals}f} {currency}"


def parse_form(pairs: list[tuple[str, str]]) -> JSON:
    """`metadata[k]=v&expand[0]=x` → `{"metadata": {"k": "v"}, "expand": {"0": "x"}}`."""
    result: JSON = {}
    for raw_key, value in pairs:
        match = _FORM_KEY_RE.fullmatch(raw_key)
        if match is None:
            raise _param_error(f"Invalid parameter name: {raw_key}", raw_key)
        path = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = result
        for depth, part in enumerate(path):
            name = str(len(node)) if part == "" else part  # `expand[]=x` appends
            if depth == len(path) - 1:
                node[name] = value
            else:
                child = node.setdefault(name, {})
                if not isinstance(child, dict):
                    raise _param_error(f"Invalid hash: {raw_key}", path[0])
                node = child
    return result


def _reject_unknown(params: JSON, allowed: frozenset[str]) -> None:
    for name in params:
        if name not in allowed:
            raise _param_error(f"Received unknown parameter: {name}", name, "parameter_unknown")


def _string(params: JSON, name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise _param_error(f"Missing required param: {name}.", name, "parameter_missing")
        return None
    if not isinstance(value, str):
        raise _param_error(f"Invalid string: {value!r}", name, "parameter_invalid_string")
    return value


def _boolean(params: JSON, name: str) -> bool:
    value = _string(params, name)
    if value in (None, "", "false"):
        return False
    if value == "true":
        return True
    raise _param_error(f"Invalid boolean: {value}", name, "parameter_invalid_boolean")


def _integer(params: JSON, name: str) -> int | None:
    value = _string(params, name)
    if value is None:
        return None
    if not re.fullmatch(r"-?[0-9]+", value):
        raise _param_error(f"Invalid integer: {value}", name, "parameter_invalid_integer")
    return int(value)


def _choice(params: JSON, name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    value = _string(params, name)
    if value is None:
        return default
    if value not in allowed:
        raise _param_error(
            f"Invalid {name}: must be one of {', '.join(allowed)}", name, "parameter_invalid_string"
        )
    return value


def _list(params: JSON, name: str) -> list[Any]:
    value = params.get(name)
    if value is None or value == "":
        return []
    if isinstance(value, dict) and all(k.isdigit() for k in value):
        return [value[k] for k in sorted(value, key=int)]
    raise _param_error(f"Invalid array: {name}", name, "parameter_invalid_array")


def _metadata(params: JSON) -> dict[str, str]:
    value = params.get("metadata")
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise _param_error("Invalid hash: metadata", "metadata")
    # Stripe's limits; an empty value unsets the key.
    cleaned = {str(k): v for k, v in value.items() if v != ""}
    if len(cleaned) > 50:
        raise _param_error("Metadata can have at most 50 keys.", "metadata")
    for key, item in cleaned.items():
        if not isinstance(item, str):
            raise _param_error(f"Invalid string: {item!r}", f"metadata[{key}]")
        if len(key) > 40 or len(item) > 500:
            raise _param_error(
                "Metadata keys are at most 40 characters and values at most 500.",
                f"metadata[{key}]",
            )
    return cleaned


def _amount(params: JSON, currency: str) -> int:
    _string(params, "amount", required=True)
    amount = _integer(params, "amount") or 0
    if amount < 0:
        raise _param_error("Invalid positive integer", "amount", "parameter_invalid_integer")
    minimum = MINIMUM_AMOUNTS.get(currency, 1)
    if amount < minimum:
        raise _param_error(
            f"Amount must be at least {_format_amount(minimum, currency)}",
            "amount",
            "amount_too_small",
        )
    if amount > MAX_AMOUNT:
        raise _param_error(
            f"Amount must be no more than {_format_amount(MAX_AMOUNT, currency)}",
            "amount",
            "amount_too_large",
        )
    return amount


def _currency(params: JSON) -> str:
    raw = _string(params, "currency", required=True)
    currency = (raw or "").lower()
    if currency not in CURRENCIES:
        raise _param_error(f"Invalid currency: {raw}.", "currency")
    return currency


@dataclass
class _Ctx:
    """One authenticated API request."""

    api_key: str
    livemode: bool
    params: JSON
    expand: list[str]


@dataclass
class _Reply:
    status: int
    body: bytes
    request_id: str
    saved: bool = True


@dataclass
class _IdempotencyRecord:
    path: str
    params: JSON
    created: float
    reply: _Reply | None = None  # None while the first request is still running


@dataclass
class _State:
    payment_intents: dict[str, JSON] = field(default_factory=dict)
    charges: dict[str, JSON] = field(default_factory=dict)
    refunds: dict[str, JSON] = field(default_factory=dict)
    payment_methods: dict[str, JSON] = field(default_factory=dict)
    cards: dict[str, _Card] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], _IdempotencyRecord] = field(default_factory=dict)
    fail_next: int = 0
    fail_status: int = 500
    delay_ms: int = 0


class _QuietRequestHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # One line per request would drown the local stack's own logs.
        logger.debug('"%s" %s %s', self.requestline, code, size)


Handler = Callable[[_Ctx, str], tuple[int, JSON]]


class StripeServer:
    """Stripe's v1 PaymentIntent and Refund API with Stripe's idempotency, served on loopback.

    stripe-mock cannot be installed here and localstripe lacks idempotency and PaymentIntents,
    so the local stack and the tests use this instead; `/_local/` holds test-only controls.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 12111,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._host, self._port, self._clock = host, port, clock
        self._lock = threading.Lock()
        self._state = _State()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._last_purge = 0.0
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("POST", re.compile(r"/v1/payment_intents"), self._create_payment_intent),
            ("GET", re.compile(r"/v1/payment_intents/([^/]+)"), self._retrieve_payment_intent),
            ("POST", re.compile(r"/v1/payment_intents/([^/]+)/confirm"), self._confirm_endpoint),
            ("POST", re.compile(r"/v1/payment_intents/([^/]+)/cancel"), self._cancel_endpoint),
            ("POST", re.compile(r"/v1/refunds"), self._create_refund),
            ("GET", re.compile(r"/v1/refunds/([^/]+)"), self._retrieve("refunds", "refund")),
            ("GET", re.compile(r"/v1/charges/([^/]+)"), self._retrieve("charges", "charge")),
            (
                "GET",
                re.compile(r"/v1/payment_methods/([^/]+)"),
                self._retrieve("payment_methods", "payment_method"),
            ),
        ]

    # -- lifecycle and test accessors --------------------------------------------------------

    @property
    def url(self) -> str:
        port = self._server.server_port if self._server else self._port
        return f"http://{self._host}:{port}"

    def start(self) -> None:
        self._server = make_server(
            self._host, self._port, self, threaded=True, request_handler=_QuietRequestHandler
        )
        # A short poll interval keeps stop() quick (the default makes it wait up to 0.5 s).
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="stripe-server",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def reset(self) -> None:
        with self._lock:
            self._state = _State()

    def payment_intents(self) -> list[JSON]:
        with self._lock:
            return copy.deepcopy(list(self._state.payment_intents.values()))

    def refunds(self) -> list[JSON]:
        with self._lock:
            return copy.deepcopy(list(self._state.refunds.values()))

    def charges(self) -> list[JSON]:
        with self._lock:
            return copy.deepcopy(list(self._state.charges.values()))

    # -- HTTP --------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path.startswith("/_local/"):
            response = self._local(request)
        else:
            response = self._api(request)
        return response(environ, start_response)

    def _local(self, request: Request) -> Response:
        route = (request.method, request.path)
        if route == ("POST", "/_local/reset"):
            self.reset()
            return _json_response(200, {"reset": True})
        if route == ("GET", "/_local/payment_intents"):
            return _json_response(200, {"object": "list", "data": self.payment_intents()})
        if route == ("POST", "/_local/faults"):
            body = request.get_json(force=True, silent=True)
            if not _valid_faults(body):
                return _json_response(400, {"error": {"message": "Invalid fault settings."}})
            with self._lock:
                state = self._state
                if "fail_next" in body:
                    state.fail_next, state.fail_status = body["fail_next"], body.get("status", 500)
                state.delay_ms = body.get("delay_ms", state.delay_ms)
                settings = {"fail_next": state.fail_next, "status": state.fail_status,
                            "delay_ms": state.delay_ms}  # fmt: skip
            return _json_response(200, settings)
        return _json_response(404, {"error": {"message": "Unknown local control."}})

    def _api(self, request: Request) -> Response:
        request_id = _new_id("req", 14)
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": request.headers.get("Stripe-Version", API_VERSION),
        }
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        if key is not None:
            headers["Idempotency-Key"] = key
        fail_status = 500
        with self._lock:
            injected = self._state.fail_next > 0
            if injected:
                # An injected fault stands for a failure in front of the API: nothing runs and
                # nothing is saved, so a retry with the same Idempotency-Key does the work once.
                self._state.fail_next -= 1
                fail_status = self._state.fail_status
        if injected:
            error = StripeError(fail_status, "api_error", "An unknown error occurred (injected).")
            return _json_response(fail_status, {"error": error.error}, headers)
        try:
            reply = self._handle(request, request_id, key)
        except StripeError as exc:
            reply = _Reply(exc.status, _dump({"error": exc.error}), request_id, saved=False)
        if reply.request_id != request_id:
            headers.update({"Idempotent-Replayed": "true", "Original-Request": reply.request_id})
        elif key is not None:
            headers["Original-Request"] = request_id
        if reply.status == 409:
            headers["Stripe-Should-Retry"] = "true"
        elif reply.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="Stripe"'
        return Response(reply.body, reply.status, headers, content_type="application/json")

    def _handle(self, request: Request, request_id: str, key: str | None) -> _Reply:
        api_key = _api_key(request.headers.get("Authorization", ""))
        handler, object_id = self._route(request.method, request.path)
        source = request.form if request.method == "POST" else request.args
        params = parse_form(list(source.items(multi=True)))
        ctx = _Ctx(api_key, "_live_" in api_key, params, [])

        def run() -> _Reply:
            return self._run(handler, ctx, object_id, request_id)

        if key is None:
            return run()
        if not 1 <= len(key) <= 255:
            raise _param_error(
                "Keys for idempotent requests can be no longer than 255 characters.",
                "Idempotency-Key",
            )
        return self._idempotent(ctx, key, request.path, run)

    def _route(self, method: str, path: str) -> tuple[Handler, str]:
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                return handler, match.group(1) if match.groups() else ""
        raise StripeError(
            404, "invalid_request_error", f"Unrecognized request URL ({method}: {path})."
        )

    def _idempotent(self, ctx: _Ctx, key: str, path: str, run: Callable[[], _Reply]) -> _Reply:
        scope, now = (ctx.api_key, key), self._clock()
        with self._lock:
            self._purge_expired(now)
            record = self._state.idempotency.get(scope)
            if record is not None and now - record.created < IDEMPOTENCY_TTL_SECONDS:
                return _replay(record, key, path, ctx.params)
            # The in-flight record is the per-key lock: a second request meets it and gets 409.
            record = _IdempotencyRecord(path, ctx.params, now)
            self._state.idempotency[scope] = record
            self._trim_idempotency()
        reply: _Reply | None = None
        try:
            reply = run()
            return reply
        finally:
            with self._lock:
                if reply is not None and reply.saved:
                    record.reply = reply
                elif self._state.idempotency.get(scope) is record:
                    del self._state.idempotency[scope]

    def _trim_idempotency(self) -> None:
        table = self._state.idempotency
        excess = len(table) - MAX_IDEMPOTENCY_RECORDS
        if excess <= 0:
            return
        # Insertion order is creation order; a request still running keeps its record.
        finished = (scope for scope, record in table.items() if record.reply is not None)
        oldest = list(itertools.islice(finished, excess))
        for scope in oldest:
            del table[scope]

    def _purge_expired(self, now: float) -> None:
        if now - self._last_purge < 60:
            return
        self._last_purge = now
        table = self._state.idempotency
        for scope in [s for s, r in table.items() if now - r.created >= IDEMPOTENCY_TTL_SECONDS]:
            del table[scope]

    def _run(self, handler: Handler, ctx: _Ctx, object_id: str, request_id: str) -> _Reply:
        with self._lock:
            delay = self._state.delay_ms / 1000
        if delay:
            time.sleep(delay)  # outside the lock: a slow request must not stall the others
        try:
            ctx.expand = [str(item) for item in _list(ctx.params, "expand")]
            with self._lock:
                status, body = handler(ctx, object_id)
                body = self._expand(body, ctx.expand)
            return _Reply(status, _dump(body), request_id)
        except StripeError as exc:
            return _Reply(exc.status, _dump({"error": exc.error}), request_id, saved=exc.saved)
        except Exception:
            # Stripe saves a 500 once its endpoint has begun, so a retry replays it.
            logger.exception("local Stripe server failed on a request")
            error = StripeError(500, "api_error", "An unknown error occurred.")
            return _Reply(500, _dump({"error": error.error}), request_id)

    # -- endpoints (called with the state lock held) -----------------------------------------

    def _create_payment_intent(self, ctx: _Ctx, _: str) -> tuple[int, JSON]:
        params = ctx.params
        _reject_unknown(params, _PI_CREATE_PARAMS)
        _string(params, "amount", required=True)  # Stripe names a missing amount first
        currency = _currency(params)
        amount = _amount(params, currency)
        metadata = _metadata(params)
        description = _string(params, "description")
        capture_method = _choice(
            params, "capture_method", ("automatic", "automatic_async"), "automatic_async"
        )
        confirmation_method = _choice(
            params, "confirmation_method", ("automatic", "manual"), "automatic"
        )
        confirm = _boolean(params, "confirm")
        automatic = params.get("automatic_payment_methods")
        automatic = automatic if isinstance(automatic, dict) else None
        types = [str(t) for t in _list(params, "payment_method_types")] or ["card"]
        off_session = _boolean_or_kind(params)
        if confirm:
            _check_confirm_params(params, automatic)
        pm_id = _string(params, "payment_method")
        # Parameters are valid: from here on the endpoint runs and its outcome is saved.
        payment_method = self._payment_method(ctx, pm_id) if pm_id else None
        pi: JSON = {
            "id": (pi_id := _new_id("pi")),
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": (
                {"allow_redirects": automatic.get("allow_redirects", "always"), "enabled": True}
                if automatic and automatic.get("enabled") == "true"
                else None
            ),
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": capture_method,
            "client_secret": f"{pi_id}_secret_{_random(25)}",
            "confirmation_method": confirmation_method,
            "created": int(self._clock()),
            "currency": currency,
            "customer": _string(params, "customer"),
            "description": description,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": ctx.livemode,
            "metadata": metadata,
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": payment_method["id"] if payment_method else None,
            "payment_method_options": {},
            "payment_method_types": types,
            "processing": None,
            "receipt_email": _string(params, "receipt_email"),
            "setup_future_usage": None,
            "shipping": None,
            "statement_descriptor": _string(params, "statement_descriptor"),
            "statement_descriptor_suffix": _string(params, "statement_descriptor_suffix"),
            "status": "requires_confirmation" if payment_method else "requires_payment_method",
            "transfer_data": None,
            "transfer_group": _string(params, "transfer_group"),
        }
        self._state.payment_intents[pi_id] = pi
        if confirm:
            return self._confirm(ctx, pi, payment_method, off_session)
        return 200, pi

    def _retrieve_payment_intent(self, ctx: _Ctx, pi_id: str) -> tuple[int, JSON]:
        _reject_unknown(ctx.params, frozenset({"expand", "client_secret"}))
        return 200, self._find(ctx, "payment_intents", pi_id, "payment_intent", param="intent")

    def _confirm_endpoint(self, ctx: _Ctx, pi_id: str) -> tuple[int, JSON]:
        _reject_unknown(ctx.params, _PI_CONFIRM_PARAMS)
        off_session = _boolean_or_kind(ctx.params)
        pm_id = _string(ctx.params, "payment_method")
        pi = self._find(ctx, "payment_intents", pi_id, "payment_intent", param="intent")
        if automatic := pi["automatic_payment_methods"]:
            _check_confirm_params(
                ctx.params, {"enabled": "true", "allow_redirects": automatic["allow_redirects"]}
            )
        payment_method = self._payment_method(ctx, pm_id) if pm_id else None
        return self._confirm(ctx, pi, payment_method, off_session)

    def _cancel_endpoint(self, ctx: _Ctx, pi_id: str) -> tuple[int, JSON]:
        _reject_unknown(ctx.params, frozenset({"cancellation_reason", "expand"}))
        reasons = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
        reason = _choice(ctx.params, "cancellation_reason", reasons, None)
        pi = self._find(ctx, "payment_intents", pi_id, "payment_intent", param="intent")
        if pi["status"] not in _CANCELABLE:
            raise _unexpected_state(
                pi,
                f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}."
                f" Only a PaymentIntent with one of the following statuses may be canceled:"
                f" {', '.join(_CANCELABLE)}.",
            )
        pi.update(
            status="canceled",
            canceled_at=int(self._clock()),
            cancellation_reason=reason,
            next_action=None,
        )
        return 200, pi

    def _create_refund(self, ctx: _Ctx, _: str) -> tuple[int, JSON]:
        params = ctx.params
        _reject_unknown(
            params,
            frozenset({"payment_intent", "charge", "amount", "reason", "metadata", "expand",
                       "instructions_email", "refund_application_fee", "reverse_transfer"}),
        )  # fmt: skip
        amount = _integer(params, "amount")
        if amount is not None and amount < 1:
            raise _param_error("Invalid positive integer", "amount", "parameter_invalid_integer")
        reasons = ("duplicate", "fraudulent", "requested_by_customer")
        reason = _choice(params, "reason", reasons, None)
        metadata = _metadata(params)
        pi_id, charge_id = _string(params, "payment_intent"), _string(params, "charge")
        if not pi_id and not charge_id:
            raise _param_error(
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
                "payment_intent",
                "parameter_missing",
            )
        if charge_id:
            charge = self._find(ctx, "charges", charge_id, "charge", status=400)
            pi = self._state.payment_intents[charge["payment_intent"]]
        else:
            pi = self._find(ctx, "payment_intents", pi_id or "", "payment_intent", status=400)
            charge = self._state.charges.get(pi["latest_charge"] or "", {})
        if pi["status"] != "succeeded" or charge.get("status") != "succeeded":
            raise _unexpected_state(
                pi, f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund."
            )
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining == 0:
            raise StripeError(
                400,
                "invalid_request_error",
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
                param="charge",
            )
        amount = remaining if amount is None else amount
        if amount > remaining:
            raise StripeError(
                400,
                "invalid_request_error",
                f"Refund amount ({_format_amount(amount, charge['currency'])}) is greater than "
                f"unrefunded amount on charge ({_format_amount(remaining, charge['currency'])})",
                code="amount_too_large",
                param="amount",
            )
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        refund: JSON = {
            "id": (refund_id := _new_id("re")),
            "object": "refund",
            "amount": amount,
            "balance_transaction": None,
            "charge": charge["id"],
            "created": int(self._clock()),
            "currency": charge["currency"],
            "destination_details": {"card": {"type": "refund"}, "type": "card"},
            "livemode": ctx.livemode,
            "metadata": metadata,
            "payment_intent": pi["id"],
            "reason": reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
        self._state.refunds[refund_id] = refund
        return 200, refund

    def _retrieve(self, table: str, kind: str) -> Handler:
        def retrieve(ctx: _Ctx, object_id: str) -> tuple[int, JSON]:
            _reject_unknown(ctx.params, frozenset({"expand"}))
            return 200, self._find(ctx, table, object_id, kind, param="id")

        return retrieve

    # -- the payment itself ------------------------------------------------------------------

    def _confirm(
        self, ctx: _Ctx, pi: JSON, payment_method: JSON | None, off_session: bool
    ) -> tuple[int, JSON]:
        if pi["status"] not in ("requires_payment_method", "requires_confirmation",
                                "requires_action"):  # fmt: skip
            raise _unexpected_state(
                pi,
                f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}.",
            )
        if payment_method is None and pi["payment_method"]:
            payment_method = self._state.payment_methods[pi["payment_method"]]
        if payment_method is None:
            raise _unexpected_state(
                pi,
                "You cannot confirm this PaymentIntent because it's missing a payment method. "
                "To confirm the PaymentIntent with a payment method, pass `payment_method`.",
            )
        card = self._state.cards[payment_method["id"]]
        pi.update(payment_method=payment_method["id"], last_payment_error=None, next_action=None)
        if card.needs_authentication and not off_session:
            pi.update(
                status="requires_action",
                next_action={
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {"type": "three_d_secure_redirect"},
                },
            )
            return 200, pi
        code = "authentication_required" if card.needs_authentication else "card_declined"
        charge = self._charge(ctx, pi, payment_method, card, code)
        pi["latest_charge"] = charge["id"]
        if card.decline_code is None:
            pi.update(status="succeeded", amount_received=pi["amount"])
            return 200, pi
        failure: JSON = {
            "charge": charge["id"],
            "code": code,
            "decline_code": card.decline_code,
            "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
            "message": card.message,
            "payment_method": copy.deepcopy(payment_method),
            "type": "card_error",
        }
        # A failed attempt detaches the payment method, as Stripe's does.
        pi.update(status="requires_payment_method", payment_method=None, last_payment_error=failure)
        extra = {name: failure[name] for name in ("charge", "decline_code", "payment_method")}
        extra["payment_intent"] = copy.deepcopy(pi)
        raise StripeError(402, "card_error", card.message, code=code, extra=extra)

    def _charge(
        self, ctx: _Ctx, pi: JSON, payment_method: JSON, card: _Card, failure_code: str
    ) -> JSON:
        failed = card.decline_code is not None
        charge: JSON = {
            "id": (charge_id := _new_id("ch")),
            "object": "charge",
            "amount": pi["amount"],
            "amount_captured": 0 if failed else pi["amount"],
            "amount_refunded": 0,
            "captured": not failed,
            "created": int(self._clock()),
            "currency": pi["currency"],
            "description": pi["description"],
            "failure_code": failure_code if failed else None,
            "failure_message": card.message or None,
            "livemode": ctx.livemode,
            "metadata": dict(pi["metadata"]),
            "outcome": {
                "network_status": "declined_by_network" if failed else "approved_by_network",
                "reason": card.decline_code,
                "risk_level": "normal",
                "seller_message": "The bank declined." if failed else "Payment complete.",
                "type": "issuer_declined" if failed else "authorized",
            },
            "paid": not failed,
            "payment_intent": pi["id"],
            "payment_method": payment_method["id"],
            "payment_method_details": {"card": dict(payment_method["card"]), "type": "card"},
            "refunded": False,
            "status": "failed" if failed else "succeeded",
        }  # fmt: skip
        self._state.charges[charge_id] = charge
        return charge

    def _payment_method(self, ctx: _Ctx, pm_id: str) -> JSON:
        card = TEST_CARDS.get(pm_id)
        if card is None:
            return self._find(
                ctx, "payment_methods", pm_id, "PaymentMethod", status=400, param="payment_method"
            )
        # Like Stripe, each use of a `pm_card_*` shortcut makes a new PaymentMethod.
        payment_method: JSON = {
            "id": (new_id := _new_id("pm")),
            "object": "payment_method",
            "billing_details": {"address": None, "email": None, "name": None, "phone": None},
            "card": {"brand": card.brand, "country": "US", "exp_month": 12,
                     "exp_year": time.gmtime(self._clock()).tm_year + 3, "funding": "credit",
                     "last4": card.last4},
            "created": int(self._clock()),
            "customer": None,
            "livemode": ctx.livemode,
            "metadata": {},
            "type": "card",
        }  # fmt: skip
        self._state.payment_methods[new_id] = payment_method
        self._state.cards[new_id] = card
        return payment_method

    def _find(
        self,
        ctx: _Ctx,
        table: str,
        object_id: str,
        kind: str,
        *,
        status: int = 404,
        param: str = "",
    ) -> JSON:
        found: JSON | None = getattr(self._state, table).get(object_id)
        if found is None or found["livemode"] != ctx.livemode:  # other mode: not there
            raise StripeError(
                status,
                "invalid_request_error",
                f"No such {kind}: '{object_id}'",
                code="resource_missing",
                param=param or kind,
            )
        return found

    def _expand(self, body: JSON, expand: list[str]) -> JSON:
        body = copy.deepcopy(body)
        tables = {"latest_charge": "charges", "charge": "charges", "payment_intent":
                  "payment_intents", "payment_method": "payment_methods"}  # fmt: skip
        for name in expand:
            value = body.get(name)
            if name in tables and isinstance(value, str):
                body[name] = copy.deepcopy(getattr(self._state, tables[name]).get(value, value))
        return body


def _check_confirm_params(params: JSON, automatic: JSON | None) -> None:
    # Stripe refuses to confirm an intent that allows redirect-based methods without a return_url.
    if (
        automatic
        and automatic.get("enabled") == "true"
        and automatic.get("allow_redirects", "always") != "never"
        and not params.get("return_url")
    ):
        raise _param_error(
            "A `return_url` must be specified because this Payment Intent is configured to "
            "automatically accept the payment methods enabled in the Dashboard, some of which may "
            "require a full page redirect to succeed. If you do not want to accept redirect-based "
            "payment methods, set `automatic_payment_methods[enabled]` to `true` and "
            "`automatic_payment_methods[allow_redirects]` to `never`.",
            "return_url",
        )


def _boolean_or_kind(params: JSON) -> bool:
    # `off_session` is a boolean or, in older integrations, "one_off" / "recurring".
    if params.get("off_session") in ("one_off", "recurring"):
        return True
    return _boolean(params, "off_session")


def _unexpected_state(pi: JSON, message: str) -> StripeError:
    return StripeError(
        400,
        "invalid_request_error",
        message,
        code="payment_intent_unexpected_state",
        extra={"payment_intent": copy.deepcopy(pi)},
    )


def _replay(record: _IdempotencyRecord, key: str, path: str, params: JSON) -> _Reply:
    if record.reply is None:
        raise StripeError(
            409,
            "idempotency_error",
            "There is currently another in-progress request using this Stripe API key and "
            f"idempotency key '{key}'. Please try again later.",
            code="idempotency_key_in_use",
            saved=False,
        )
    if record.path != path:
        raise StripeError(
            400,
            "idempotency_error",
            "Keys for idempotent requests can only be used for the same endpoint they were first "
            f"used for ('{record.path}' vs '{path}'). Try using a key other than '{key}' if you "
            "meant to execute a different request.",
            saved=False,
        )
    if record.params != params:
        raise StripeError(
            400,
            "idempotency_error",
            "Keys for idempotent requests can only be used with the same parameters they were "
            f"first used with. Try using a key other than '{key}' if you meant to execute a "
            "different request.",
            saved=False,
        )
    return record.reply


def _api_key(authorization: str) -> str:
    scheme, _, credentials = authorization.partition(" ")
    if not credentials.strip():
        raise StripeError(
            401,
            "invalid_request_error",
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY').",
            saved=False,
        )
    key = credentials.strip()
    if scheme.lower() == "basic":  # `curl -u sk_test_…:`
        try:
            key = base64.b64decode(key, validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            key = ""
    elif scheme.lower() != "bearer":
        key = ""
    if not _KEY_RE.fullmatch(key):
        raise StripeError(
            401,
            "invalid_request_error",
            f"Invalid API Key provided: {key[:8]}{'*' * 4}{key[-4:] if len(key) > 12 else ''}",
            saved=False,
        )
    return key


def _valid_faults(body: Any) -> TypeGuard[dict[str, int]]:
    if not isinstance(body, dict) or not set(body) <= {"fail_next", "status", "delay_ms"}:
        return False
    bounds = {"fail_next": (0, 1000), "status": (500, 599), "delay_ms": (0, 30_000)}
    return all(
        type(value) is int and bounds[name][0] <= value <= bounds[name][1]
        for name, value in body.items()
    )


def _dump(body: JSON) -> bytes:
    return json.dumps(body, indent=2).encode()


def _json_response(status: int, body: JSON, headers: dict[str, str] | None = None) -> Response:
    return Response(_dump(body), status, headers, content_type="application/json")


def main(argv: list[str] | None = None) -> None:
    """`python -m learnflow_cli.local.stripe_server --port 12111`."""
    parser = argparse.ArgumentParser(description="Local Stripe-compatible payments server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = StripeServer(args.host, args.port)
    server.start()
    logger.info("Stripe-compatible server listening on %s", server.url)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
