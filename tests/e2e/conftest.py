"""The `stack` fixture: one `learnflow serve` per test session, a subprocess on free ports.

`stack` (session scope) is a `Stack` with:

- `api` — the API base URL, `http://127.0.0.1:<port>/v2`; `stack.url("/courses")` joins a path.
- `accounts` — the two seeded `Account`s (`.id`, `.plan`, `.keys["test"|"live"]`);
  `stack.standard` and `stack.pro` pick one by plan. Standard allows 60 requests a minute per
  mode, Pro 300: tests that make many requests should use `stack.create_account("pro")`.
- `env` — the keys file's `env` (point boto3 or the `learnflow` CLI at the running stack).
- `keys_file` — the keys file (docs/local-stack.md); `stripe_url` — the Stripe-compatible server.
- `headers(secret)` — `{"Authorization": "Bearer <secret>"}`.
- `create_account(plan="pro")` — a fresh `Account` with test and live secret keys, made through
  the administration API against the stack; `create_key(account_id, mode, permissions=None)` —
  a new key as the admin API returns it (`["id"]`, `["secret"]`; restricted when `permissions`
  is given); `revoke_key(key_id)`;
  `admin()` — the `Admin` itself; `session()` — a boto3 session with the stack's credentials and
  region (pass `endpoint_url=stack.env["AWS_ENDPOINT_URL"]`); `table()` — the stack's boto3 Table.
- `log()` — everything the stack has printed so far; `log_line(request_id)` — the console line
  of one request (`… <status> <ms> ms <function or (gateway)> [auth <ms> ms] … req <id>`).

At the end of the session the stack gets SIGINT (Ctrl-C) and must exit with status 0, leaving no
process behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stack import Account, Stack, run_stack

__all__ = ["Account", "Stack", "run_stack"]  # the tests' types, still importable from here


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The running local stack (see the module docstring)."""
    with run_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running
