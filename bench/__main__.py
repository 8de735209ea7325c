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

    from bench.scenarios import (  # noqa: PLC0415
        authorizer,
        create_table,
        list_courses,
        request_pipeline,
    )

    with mock_aws():
        create_table()
        authorizer()
        request_pipeline()
        list_courses()


if __name__ == "__main__":
    main()
