"""Property-based API tests: schemathesis drives every operation of the OpenAPI document
against the session daemon (a real `lb run` on the veth lab), then follows the document's
links (create a VIP, use its id; add a backend, use its address) in its stateful mode.

Checks: no 5xx, every answer matches its documented schema, status code and content type.
Inputs the schema allows but the model refuses (an address string that is not an IP) answer
422 by design, so schemathesis' "positive data accepted" checks are not among them. Budget:
about a minute (few examples per operation; the session daemon's state is emptied after).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from lb.lab.daemon import LabDaemon

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]
EXCLUDED = [c for c in schemathesis.checks.CHECKS.get_all() if c not in CHECKS]
BUDGET = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def schema(daemon: LabDaemon) -> Iterator[schemathesis.BaseSchema]:
    """The daemon's OpenAPI document; its desired state is emptied after the module."""
    yield schemathesis.openapi.from_url(f"{daemon.url}/openapi.json")
    daemon.api.put_config({"vips": []})


def test_every_operation_answers_as_documented(schema, daemon: LabDaemon) -> None:
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 20
    failures = []
    for operation in operations:
        @BUDGET
        @given(case=operation.as_strategy())
        def run(case) -> None:
            if case.query and "wait" in case.query:
                # GET /events long-polls up to `wait` s by design: keep each call short.
                case.query = {**case.query, "wait": 0}
            case.call_and_validate(checks=CHECKS, excluded_checks=EXCLUDED, timeout=30)

        try:
            run()
        except Exception as e:  # noqa: BLE001 - every operation is tried; all failures shown
            failures.append(f"{operation.label}: {e}")
    assert failures == []


def test_links_between_operations_hold_in_stateful_runs(schema) -> None:
    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def validate_response(self, response, case, **kwargs) -> None:
            case.validate_response(response, checks=CHECKS, excluded_checks=EXCLUDED)

    Machine.run(settings=settings(max_examples=15, stateful_step_count=5, deadline=None,
                                  derandomize=True, database=None,
                                  suppress_health_check=list(HealthCheck)))
