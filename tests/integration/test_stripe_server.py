"""The local Stripe-compatible server, driven through the real stripe SDK and raw HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import stripe

from learnflow_cli.local.stripe_server import StripeServer, parse_form

KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
OTHER_KEY = "sk_test_BQokikJOvBiI2HlWgH4olfQ2"
LIVE_KEY = "sk_live_0123456789abcdefghijklmn"


@pytest.fixture(scope="module")
def server() -> Iterator[StripeServer]:
    srv = StripeServer(port=0)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _fresh_state(server: StripeServer) -> None:
    server.reset()


@pytest.fixture
def client(server: StripeServer) -> stripe.StripeClient:
    return make_client(server, KEY)


def make_client(server: StripeServer, key: str) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": server.url}, max_network_retries=2)


def charge(
    client: stripe.StripeClient, pm: str = "pm_card_visa", key: str | None = None, **extra: Any
) -> stripe.PaymentIntent:
    params: Any = {"amount": 2000, "currency": "usd", "payment_method": pm, "confirm": True}
    params.update(extra)
    options: Any = {"idempotency_key": key} if key else {}
    return client.v1.payment_intents.create(params=params, options=options)


def post(
    server: StripeServer,
    path: str,
    data: dict[str, str],
    *,
    idempotency_key: str | None = None,
    api_key: str | None = KEY,
) -> requests.Response:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return requests.post(server.url + path, data=data, headers=headers, timeout=10)


PI_FORM = {"amount": "2000", "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true"}


# -- payments ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pm", ["pm_card_visa", "pm_card_mastercard"])
def test_confirmed_payment_with_good_card_succeeds(client: stripe.StripeClient, pm: str) -> None:
    pi = charge(client, pm, currency="USD", off_session=True, metadata={"enrollment": "enr_1"})

    assert pi.id.startswith("pi_")
    assert pi.object == "payment_intent"
    assert (pi.status, pi.amount, pi.amount_received, pi.currency) == (
        "succeeded",
        2000,
        2000,
        "usd",
    )
    assert pi.metadata.to_dict() == {"enrollment": "enr_1"}
    assert pi.livemode is False
    assert pi.last_payment_error is None
    assert pi.client_secret is not None
    assert pi.client_secret.startswith(f"{pi.id}_secret_")
    assert isinstance(pi.latest_charge, str)
    assert pi.latest_charge.startswith("ch_")
    assert isinstance(pi.payment_method, str)
    assert pi.payment_method.startswith("pm_")


@pytest.mark.parametrize(
    ("pm", "decline_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ],
)
def test_declined_card_raises_card_error_and_keeps_failed_intent(
    server: StripeServer, client: stripe.StripeClient, pm: str, decline_code: str
) -> None:
    with pytest.raises(stripe.CardError) as caught:
        charge(client, pm, off_session=True)

    err = caught.value
    assert (err.http_status, err.code) == (402, "card_declined")
    assert err.error is not None
    assert err.error.type == "card_error"
    assert err.error.decline_code == decline_code
    assert err.user_message
    assert err.error.payment_intent is not None
    assert err.error.payment_intent.status == "requires_payment_method"
    [stored] = server.payment_intents()
    assert stored["id"] == err.error.payment_intent.id
    assert stored["status"] == "requires_payment_method"
    assert stored["amount_received"] == 0
    assert stored["last_payment_error"]["decline_code"] == decline_code
    assert stored["last_payment_error"]["code"] == "card_declined"


def test_authentication_required_card_off_session_is_declined(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    with pytest.raises(stripe.CardError) as caught:
        charge(client, "pm_card_authenticationRequired", off_session=True)

    err = caught.value
    assert (err.http_status, err.code) == (402, "authentication_required")
    assert err.error is not None
    assert err.error.decline_code == "authentication_required"
    [stored] = server.payment_intents()
    assert stored["status"] == "requires_payment_method"
    assert stored["last_payment_error"]["code"] == "authentication_required"


def test_authentication_required_card_on_session_requires_action(
    client: stripe.StripeClient,
) -> None:
    pi = charge(client, "pm_card_authenticationRequired")

    assert pi.status == "requires_action"
    assert pi.next_action is not None


def test_unknown_payment_method_is_resource_missing_and_creates_nothing(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        charge(client, "pm_does_not_exist")

    assert (caught.value.http_status, caught.value.code) == (400, "resource_missing")
    assert caught.value.param == "payment_method"
    assert server.payment_intents() == []


def test_create_then_confirm_succeeds_and_second_confirm_is_refused(
    client: stripe.StripeClient,
) -> None:
    pi = client.v1.payment_intents.create(params={"amount": 700, "currency": "eur"})
    assert pi.status == "requires_payment_method"

    confirmed = client.v1.payment_intents.confirm(
        pi.id, params={"payment_method": "pm_card_visa", "off_session": True}
    )
    assert (confirmed.id, confirmed.status, confirmed.amount_received) == (pi.id, "succeeded", 700)

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.confirm(pi.id, params={"payment_method": "pm_card_visa"})
    assert (caught.value.http_status, caught.value.code) == (400, "payment_intent_unexpected_state")


def test_failed_intent_can_be_confirmed_again_with_another_card(
    client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.CardError) as caught:
        charge(client, "pm_card_chargeDeclined")
    assert caught.value.error is not None
    assert caught.value.error.payment_intent is not None
    pi_id = caught.value.error.payment_intent.id

    pi = client.v1.payment_intents.confirm(pi_id, params={"payment_method": "pm_card_mastercard"})

    assert (pi.status, pi.last_payment_error) == ("succeeded", None)


def test_retrieve_returns_the_intent_and_expands_its_charge(client: stripe.StripeClient) -> None:
    pi = charge(client)

    got = client.v1.payment_intents.retrieve(pi.id, params={"expand": ["latest_charge"]})

    assert (got.id, got.status) == (pi.id, "succeeded")
    assert isinstance(got.latest_charge, stripe.Charge)
    assert (got.latest_charge.id, got.latest_charge.amount) == (pi.latest_charge, 2000)


def test_retrieve_unknown_intent_is_404_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.retrieve("pi_missing")

    assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")


def test_cancel_open_intent_cancels_and_succeeded_one_is_refused(
    client: stripe.StripeClient,
) -> None:
    open_pi = client.v1.payment_intents.create(params={"amount": 700, "currency": "usd"})

    canceled = client.v1.payment_intents.cancel(open_pi.id)

    assert canceled.status == "canceled"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.cancel(charge(client).id)
    assert caught.value.code == "payment_intent_unexpected_state"


def test_test_key_does_not_see_live_objects(server: StripeServer) -> None:
    live_pi = charge(make_client(server, LIVE_KEY))
    assert live_pi.livemode is True

    with pytest.raises(stripe.InvalidRequestError) as caught:
        make_client(server, KEY).v1.payment_intents.retrieve(live_pi.id)

    assert caught.value.http_status == 404


def test_list_pages_through_every_intent_of_the_mode_newest_first(server: StripeServer) -> None:
    client = make_client(server, KEY)
    made = [charge(client, metadata={"n": str(n)}).id for n in range(23)]
    charge(make_client(server, LIVE_KEY))  # another mode: never listed

    first = client.v1.payment_intents.list(params={"limit": 10})
    every = [pi.id for pi in first.auto_paging_iter()]  # the SDK follows starting_after

    assert [pi.id for pi in first.data] == made[::-1][:10]
    assert first.has_more is True
    assert every == made[::-1]
    assert all(pi.object == "payment_intent" for pi in first.data)
    # another test key of the server sees the same (one account per mode)
    other = make_client(server, OTHER_KEY).v1.payment_intents.list(params={"limit": 100})
    assert [pi.id for pi in other.data] == made[::-1]
    assert other.has_more is False


def test_list_cursors_limits_and_filters(server: StripeServer) -> None:
    client = make_client(server, KEY)
    made = [charge(client).id for _ in range(5)]  # newest first: made[4] … made[0]
    listed = client.v1.payment_intents.list

    after = listed(params={"limit": 2, "starting_after": made[3]})
    assert [pi.id for pi in after.data] == [made[2], made[1]]
    assert after.has_more is True
    before = listed(params={"limit": 2, "ending_before": made[1]})
    assert [pi.id for pi in before.data] == [made[3], made[2]]
    assert before.has_more is True
    assert [pi.id for pi in listed(params={"limit": 3, "ending_before": made[3]}).data] == [made[4]]
    assert len(listed().data) == 5  # default limit 10
    assert len(listed(params={"created": {"gte": 0}}).data) == 5
    assert listed(params={"created": {"lt": 0}}).data == []
    assert listed(params={"customer": "cus_nobody"}).data == []
    for params, param in [
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"starting_after": "pi_unknown"}, "starting_after"),
        ({"starting_after": made[0], "ending_before": made[1]}, "ending_before"),
        ({"colour": "red"}, "colour"),
        ({"created": "--5"}, "created"),
        ({"created": {"gte": "1.5"}}, "created[gte]"),
    ]:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            listed(params=params)  # type: ignore[arg-type]
        assert caught.value.http_status == 400
        assert caught.value.param == param


def test_live_key_lists_only_live_intents(server: StripeServer) -> None:
    charge(make_client(server, KEY))
    live = charge(make_client(server, LIVE_KEY))

    listed = make_client(server, LIVE_KEY).v1.payment_intents.list(params={"limit": 100})

    assert [pi.id for pi in listed.data] == [live.id]


# -- refunds ----------------------------------------------------------------------------------


def test_full_refund_by_default_marks_charge_refunded(client: stripe.StripeClient) -> None:
    pi = charge(client)

    refund = client.v1.refunds.create(params={"payment_intent": pi.id})

    assert refund.id.startswith("re_")
    assert (refund.object, refund.status, refund.amount) == ("refund", "succeeded", 2000)
    assert (refund.payment_intent, refund.currency) == (pi.id, "usd")
    assert client.v1.refunds.retrieve(refund.id).amount == 2000
    assert isinstance(pi.latest_charge, str)
    ch = client.v1.charges.retrieve(pi.latest_charge)
    assert (ch.amount_refunded, ch.refunded) == (2000, True)


def test_partial_refunds_add_up_and_refuse_more_than_remains(
    client: stripe.StripeClient,
) -> None:
    pi = charge(client)
    client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 500})
    client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1000})

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 501})
    assert (caught.value.http_status, caught.value.code) == (400, "amount_too_large")
    assert caught.value.param == "amount"

    rest = client.v1.refunds.create(params={"payment_intent": pi.id})
    assert rest.amount == 500
    assert isinstance(pi.latest_charge, str)
    ch = client.v1.charges.retrieve(pi.latest_charge)
    assert (ch.amount_refunded, ch.refunded) == (2000, True)
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.refunds.create(params={"payment_intent": pi.id})
    assert again.value.code == "charge_already_refunded"


def test_refund_of_unpaid_intent_is_refused(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(params={"amount": 700, "currency": "usd"})

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"payment_intent": pi.id})

    assert (caught.value.http_status, caught.value.code) == (400, "payment_intent_unexpected_state")


def test_refund_of_unknown_intent_is_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"payment_intent": "pi_missing"})

    assert (caught.value.code, caught.value.param) == ("resource_missing", "payment_intent")


# -- validation and authentication ------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({"currency": "usd"}, "amount", "parameter_missing"),
        ({"amount": "abc", "currency": "usd"}, "amount", "parameter_invalid_integer"),
        ({"amount": "12.5", "currency": "usd"}, "amount", "parameter_invalid_integer"),
        ({"amount": -5, "currency": "usd"}, "amount", "parameter_invalid_integer"),
        ({"amount": 49, "currency": "usd"}, "amount", "amount_too_small"),
        ({"amount": 0, "currency": "usd"}, "amount", "amount_too_small"),
        ({"amount": 49, "currency": "jpy"}, "amount", "amount_too_small"),
        ({"amount": 100_000_000, "currency": "usd"}, "amount", "amount_too_large"),
        ({"amount": 2000}, "currency", "parameter_missing"),
        ({"amount": 2000, "currency": "usd", "colour": "red"}, "colour", "parameter_unknown"),
        ({"amount": 2000, "currency": "usd", "confirm": "maybe"}, "confirm", None),
    ],
)
def test_invalid_create_parameters_answer_400_with_param_and_code(
    server: StripeServer,
    client: stripe.StripeClient,
    params: dict[str, Any],
    param: str,
    code: str | None,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.create(params=params)  # type: ignore[arg-type]

    assert caught.value.http_status == 400
    assert caught.value.param == param
    if code:
        assert caught.value.code == code
    assert server.payment_intents() == []


def test_unsupported_currency_is_rejected(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.create(params={"amount": 2000, "currency": "zzz"})

    assert (caught.value.http_status, caught.value.param) == (400, "currency")


def test_missing_api_key_is_401_in_stripe_error_shape(server: StripeServer) -> None:
    resp = post(server, "/v1/payment_intents", PI_FORM, api_key=None)

    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert resp.headers["Request-Id"].startswith("req_")
    assert server.payment_intents() == []


@pytest.mark.parametrize("key", ["garbage", "pk_test_abc", "sk_test_", "sk_prod_abc"])
def test_malformed_api_key_is_authentication_error(server: StripeServer, key: str) -> None:
    with pytest.raises(stripe.AuthenticationError) as caught:
        charge(make_client(server, key))

    assert caught.value.http_status == 401
    assert server.payment_intents() == []


def test_restricted_key_is_accepted(server: StripeServer) -> None:
    assert charge(make_client(server, "rk_test_abc123")).status == "succeeded"


def test_unknown_path_is_404_in_stripe_error_shape(server: StripeServer) -> None:
    resp = requests.get(
        server.url + "/v1/customers", headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    )

    assert resp.status_code == 404
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert resp.headers["Request-Id"].startswith("req_")
    assert resp.headers["Stripe-Version"]


def test_responses_carry_request_id_and_stripe_version(server: StripeServer) -> None:
    resp = requests.post(
        server.url + "/v1/payment_intents",
        data=PI_FORM,
        headers={"Authorization": f"Bearer {KEY}", "Stripe-Version": "2024-06-20"},
        timeout=10,
    )

    assert resp.status_code == 200
    assert resp.headers["Request-Id"].startswith("req_")
    assert resp.headers["Stripe-Version"] == "2024-06-20"
    assert resp.headers["Content-Type"] == "application/json"


def test_form_parser_builds_nested_hashes_and_arrays() -> None:
    parsed = parse_form(
        [("metadata[a]", "1"), ("metadata[b]", ""), ("expand[0]", "x"), ("expand[]", "y"),
         ("items[0][price]", "p")]
    )  # fmt: skip

    assert parsed == {
        "metadata": {"a": "1", "b": ""},
        "expand": {"0": "x", "1": "y"},
        "items": {"0": {"price": "p"}},
    }


# -- idempotency ------------------------------------------------------------------------------


def test_same_key_and_params_replays_one_intent(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    first = charge(client, key="enr_0001")
    second = charge(client, key="enr_0001")

    assert second.id == first.id
    assert len(server.payment_intents()) == 1


def test_replay_has_same_status_and_body_and_names_original_request(
    server: StripeServer,
) -> None:
    first = post(server, "/v1/payment_intents", PI_FORM, idempotency_key="k-replay")
    again = post(server, "/v1/payment_intents", PI_FORM, idempotency_key="k-replay")

    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Original-Request"] == first.headers["Request-Id"]
    assert again.headers["Request-Id"] != first.headers["Request-Id"]
    assert again.headers["Idempotency-Key"] == "k-replay"


def test_declined_payment_is_replayed_not_retried(server: StripeServer) -> None:
    form = {**PI_FORM, "payment_method": "pm_card_chargeDeclined"}
    first = post(server, "/v1/payment_intents", form, idempotency_key="k-decline")
    again = post(server, "/v1/payment_intents", form, idempotency_key="k-decline")

    assert first.status_code == again.status_code == 402
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(server.payment_intents()) == 1


def test_same_key_with_different_params_is_idempotency_error(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    charge(client, key="enr_0002")

    with pytest.raises(stripe.IdempotencyError) as caught:
        charge(client, key="enr_0002", amount=3000)

    assert caught.value.http_status == 400
    assert caught.value.error is not None
    assert caught.value.error.type == "idempotency_error"
    assert len(server.payment_intents()) == 1


def test_same_key_on_another_endpoint_is_idempotency_error(client: stripe.StripeClient) -> None:
    pi = charge(client, key="enr_0003")

    with pytest.raises(stripe.IdempotencyError):
        client.v1.refunds.create(
            params={"payment_intent": pi.id}, options={"idempotency_key": "enr_0003"}
        )


def test_keys_are_scoped_to_the_api_key(server: StripeServer) -> None:
    first = charge(make_client(server, KEY), key="shared")
    second = charge(make_client(server, OTHER_KEY), key="shared")

    assert first.id != second.id
    assert len(server.payment_intents()) == 2


def test_request_failing_validation_saves_nothing_for_its_key(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        charge(client, key="enr_0004", amount="abc")

    # Stripe saves results only once an endpoint began; a corrected request may reuse the key.
    pi = charge(client, key="enr_0004")

    assert pi.status == "succeeded"
    assert len(server.payment_intents()) == 1


def test_key_expires_after_24_hours() -> None:
    now = [1_800_000_000.0]
    srv = StripeServer(port=0, clock=lambda: now[0])
    srv.start()
    try:
        client = make_client(srv, KEY)
        first = charge(client, key="enr_0005")
        now[0] += 24 * 60 * 60 - 1
        assert charge(client, key="enr_0005").id == first.id
        now[0] += 2

        second = charge(client, key="enr_0005", amount=3000)

        assert second.id != first.id
        assert len(srv.payment_intents()) == 2
    finally:
        srv.stop()


def test_concurrent_request_with_same_key_gets_409(server: StripeServer) -> None:
    requests.post(server.url + "/_local/faults", json={"delay_ms": 500}, timeout=10)
    with ThreadPoolExecutor(2) as pool:
        pending = pool.submit(
            post, server, "/v1/payment_intents", PI_FORM, idempotency_key="k-lock"
        )
        time.sleep(0.1)
        other = post(server, "/v1/payment_intents", PI_FORM, idempotency_key="k-lock")
        # Whichever request took the key first, the other one meets it in flight.
        done, blocked = sorted([pending.result(), other], key=lambda r: r.status_code)

    assert (done.status_code, blocked.status_code) == (200, 409)
    assert blocked.json()["error"]["type"] == "idempotency_error"
    assert blocked.json()["error"]["code"] == "idempotency_key_in_use"
    assert blocked.headers["Stripe-Should-Retry"] == "true"
    assert len(server.payment_intents()) == 1


# -- faults and concurrency -------------------------------------------------------------------


def test_injected_500_is_not_saved_so_sdk_retry_charges_once(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    resp = requests.post(server.url + "/_local/faults", json={"fail_next": 1}, timeout=10)
    assert resp.status_code == 200

    pi = charge(client, key="enr_0006")

    assert pi.status == "succeeded"
    assert [p["id"] for p in server.payment_intents()] == [pi.id]


def test_injected_500_answers_api_error_without_doing_the_work(server: StripeServer) -> None:
    requests.post(server.url + "/_local/faults", json={"fail_next": 1, "status": 503}, timeout=10)

    failed = post(server, "/v1/payment_intents", PI_FORM, idempotency_key="k-fault")
    assert failed.status_code == 503
    assert failed.json()["error"]["type"] == "api_error"
    assert server.payment_intents() == []

    retried = post(server, "/v1/payment_intents", PI_FORM, idempotency_key="k-fault")
    assert retried.status_code == 200
    assert "Idempotent-Replayed" not in retried.headers


def test_local_controls_list_and_reset(server: StripeServer, client: stripe.StripeClient) -> None:
    pi = charge(client)
    listed = requests.get(server.url + "/_local/payment_intents", timeout=10).json()
    assert [p["id"] for p in listed["data"]] == [pi.id]

    requests.post(server.url + "/_local/reset", timeout=10)

    assert server.payment_intents() == []
    bad = requests.post(server.url + "/_local/faults", json={"fail_next": -1}, timeout=10)
    assert bad.status_code == 400


def run_threads(count: int, work: Callable[[int], str]) -> list[str]:
    barrier = threading.Barrier(count)

    def task(i: int) -> str:
        barrier.wait(timeout=10)
        return work(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(task, range(count)))


def test_concurrent_creates_with_distinct_keys_make_one_intent_each(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    requests.post(server.url + "/_local/faults", json={"delay_ms": 100}, timeout=10)

    ids = run_threads(20, lambda i: charge(client, key=f"distinct-{i}").id)

    assert len(set(ids)) == 20
    assert len(server.payment_intents()) == 20


def test_concurrent_creates_with_one_key_make_one_intent(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    # The delay keeps the first request in flight, so the others meet the key's lock (409) and
    # the SDK's retries get the saved response.
    requests.post(server.url + "/_local/faults", json={"delay_ms": 100}, timeout=10)

    ids = run_threads(10, lambda _: charge(client, key="one-key").id)

    assert len(set(ids)) == 1
    assert len(server.payment_intents()) == 1


# -- standalone -------------------------------------------------------------------------------


def test_module_runs_standalone() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "learnflow_cli.local.stripe_server", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        status = None
        for _ in range(100):
            try:
                status = requests.get(f"http://127.0.0.1:{port}/v1/x", timeout=1).status_code
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        assert status == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)
