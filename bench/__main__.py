"""`make bench`: the request path's costs, measured side by side in one run (moto in-process).

Absolute times include moto's own overhead and this machine's load; the ratios between rows
measured in the same run are the figures to compare.
"""

from __future__ import annotations

import os


def _environment() -> None:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
            "LEARNFLOW_TABLE": "learnflow-bench",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)


def main() -> None:
    _environment()
    from moto import mock_aws  # noqa: PLC0415 - after the environment is set

    from learnflow_cli.local.moto_server import Limits, install_bounds  # noqa: PLC0415

    # As the local stack and the tests run moto: a transaction saves only the items it touches,
    # where moto alone deep-copies every table on each one (its cost grows with the table).
    install_bounds(Limits())

    from bench.scenarios import (  # noqa: PLC0415
        authorizer,
        create_table,
        enrollments,
        list_courses,
        request_pipeline,
    )

    # A fresh moto per scenario: one scenario's seeded catalogue must not slow the next one's
    # Queries, which walk the whole partition in moto.
    for scenario in (authorizer, request_pipeline, list_courses, enrollments):
        with mock_aws():
            create_table()
            scenario()


if __name__ == "__main__":
    main()
