"""Limits (606/615/607), the usage endpoint, scripted and random faults, and counters."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from openapi_shapes import assert_shape

from tap_marketo_activities.simulator import Faults, MarketoSimulator, World

WORLD = World.seed_afternoon(rows=300, seed=11)
TYPES = "/rest/v1/activities/types.json"
ACTIVITIES = "/rest/v1/activities.json"
USAGE = "/rest/v1/stats/usage.json"
CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": "simulator",
    "client_secret": "simulator",
}


def bearer(sim: MarketoSimulator) -> dict[str, str]:
    token = requests.get(sim.base_url + "/identity/oauth/token", params=CREDENTIALS, timeout=5)
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def call(sim: MarketoSimulator, headers: dict[str, str], path: str = TYPES, **params: object):
    return requests.get(sim.base_url + path, headers=headers, params=params, timeout=10)


def code_of(response: requests.Response) -> str | None:
    body = response.json()
    return None if body["success"] else body["errors"][0]["code"]


# ----------------------------------------------------------------------------- limits
def test_rate_limit_answers_606_in_a_trailing_window_and_recovers():
    with MarketoSimulator(WORLD, rate_limit_calls=5, rate_limit_window_s=1.0) as sim:
        headers = bearer(sim)
        for _ in range(3):
            bearer(sim)  # identity calls do not count
        codes = [code_of(call(sim, headers)) for _ in range(6)]
        assert codes == [None] * 5 + ["606"]
        refused = call(sim, headers).json()
        assert refused["errors"][0]["message"] == "Max rate limit '5' exceeded with in '1' secs"
        time.sleep(1.05)
        assert code_of(call(sim, headers)) is None
        counters = sim.counters
        assert counters.enforced_by_code["606"] == 2
        assert counters.errors_by_code["606"] == 2
        assert "606" not in counters.injected_by_code


def test_concurrency_limit_answers_615_and_peak_is_counted():
    with MarketoSimulator(WORLD, max_concurrency=2, latency_s=0.3) as sim:
        headers = bearer(sim)
        codes: list[str | None] = []
        lock = threading.Lock()

        def one() -> None:
            code = code_of(call(sim, headers))
            with lock:
                codes.append(code)

        threads = [threading.Thread(target=one) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert codes.count(None) >= 2
        assert "615" in codes
        assert set(codes) <= {None, "615"}
        counters = sim.counters
        assert counters.peak_concurrency >= 3
        assert counters.enforced_by_code["615"] == codes.count("615")


def test_daily_quota_answers_607_and_usage_reports_it():
    with MarketoSimulator(WORLD, daily_quota=50_000) as sim:
        headers = bearer(sim)
        sim.set_quota(used=49_990)
        usage = call(sim, headers, USAGE).json()
        assert_shape(usage, "ResponseOfUsageData")
        today = usage["result"][0]
        assert today["date"] == "2024-04-12T00:00:00Z"
        assert today["total"] == 49_991  # the usage call counts too
        assert today["users"] == [{"userId": "simulator@example.com", "count": 49_991}]
        codes = [code_of(call(sim, headers)) for _ in range(10)]
        assert codes == [None] * 9 + ["607"]
        assert sim.counters.enforced_by_code == {"607": 1}
        sim.clock.advance(hours=24)  # a new day in CST resets the quota
        assert code_of(call(sim, headers)) is None


# ----------------------------------------------------------------------------- scripted faults
@pytest.mark.parametrize(
    "code", ["601", "602", "604", "606", "607", "608", "611", "615", "713", "1003"]
)
def test_injected_marketo_codes_answer_http_200_success_false(code):
    with MarketoSimulator(WORLD) as sim:
        headers = bearer(sim)
        sim.inject("types.json", code, times=2)
        first, second, third = (call(sim, headers) for _ in range(3))
        assert first.status_code == second.status_code == 200
        assert code_of(first) == code_of(second) == code
        assert code_of(third) is None
        assert sim.counters.injected_by_code == {code: 2}
        assert sim.counters.errors_by_code == {code: 2}
        assert sim.counters.enforced_by_code == {}


@pytest.mark.parametrize("status", ["500", "502", "503", "414"])
def test_injected_http_statuses(status):
    with MarketoSimulator(WORLD) as sim:
        headers = bearer(sim)
        sim.inject("types.json", status)
        response = call(sim, headers)
        assert response.status_code == int(status)
        assert "json" not in response.headers["Content-Type"]
        assert sim.counters.errors_by_code == {f"HTTP{status}": 1}
        assert call(sim, headers).status_code == 200


def test_injected_reset_drops_the_connection():
    with MarketoSimulator(WORLD) as sim:
        headers = bearer(sim)
        sim.inject("types.json", "reset")
        with pytest.raises(requests.ConnectionError):
            call(sim, headers)
        assert code_of(call(sim, headers)) is None
        assert sim.counters.injected_by_code == {"reset": 1}


def test_injected_slow_malformed_no_result_and_bad_record():
    with MarketoSimulator(WORLD, faults=Faults(latency_s=0.3)) as sim:
        headers = bearer(sim)
        sim.inject("types.json", "slow")
        started = time.perf_counter()
        assert code_of(call(sim, headers)) is None
        assert time.perf_counter() - started >= 0.3
        sim.inject("types.json", "malformed")
        broken = call(sim, headers)
        assert broken.status_code == 200
        with pytest.raises(ValueError):
            broken.json()
        sim.inject("types.json", "no_result")
        empty = call(sim, headers).json()
        assert empty["success"] is True
        assert "result" not in empty
        token = call(
            sim, headers, "/rest/v1/activities/pagingtoken.json", sinceDatetime="2024-04-12"
        )
        sim.inject("activities.json", "bad_record")
        page = call(
            sim, headers, ACTIVITIES, nextPageToken=token.json()["nextPageToken"], activityTypeIds=6
        ).json()
        assert page["success"] is True
        assert "marketoGUID" not in page["result"][0]
        assert "activityDate" not in page["result"][0]
        assert sim.counters.injected_by_code == {
            "slow": 1,
            "malformed": 1,
            "no_result": 1,
            "bad_record": 1,
        }


def test_injection_matches_the_path_suffix_only():
    with MarketoSimulator(WORLD) as sim:
        headers = bearer(sim)
        sim.inject("activities.json", "602")
        assert code_of(call(sim, headers)) is None  # types.json is not activities.json
        sim.inject("oauth/token", "503")
        assert (
            requests.get(
                sim.base_url + "/identity/oauth/token", params=CREDENTIALS, timeout=5
            ).status_code
            == 503
        )


def test_unknown_fault_kinds_are_refused():
    with MarketoSimulator(WORLD) as sim, pytest.raises(ValueError, match="unknown fault kind"):
        sim.inject("types.json", "explode")


# ----------------------------------------------------------------------------- random faults
def _fault_sequence(seed: int) -> list[str | None]:
    kinds = ("604", "608", "500", "malformed")
    with MarketoSimulator(WORLD, faults=Faults(seed=seed, rate=0.5, kinds=kinds)) as sim:
        headers = bearer(sim)
        outcome: list[str | None] = []
        for _ in range(30):
            response = call(sim, headers)
            if response.status_code != 200:
                outcome.append(str(response.status_code))
                continue
            try:
                outcome.append(code_of(response))
            except ValueError:
                outcome.append("malformed")
        assert sim.counters.identity_calls == 1  # never a fault on identity
        return outcome


def test_random_faults_are_seeded_and_reproducible():
    first, second, other = _fault_sequence(5), _fault_sequence(5), _fault_sequence(6)
    assert first == second
    assert first != other
    assert 5 <= sum(o is not None for o in first) <= 25
    assert {o for o in first if o} <= {"604", "608", "500", "malformed"}


def test_fault_knobs_are_settable_after_construction():
    with MarketoSimulator(WORLD) as sim:
        headers = bearer(sim)
        assert code_of(call(sim, headers)) is None
        sim.faults.rate = 1.0
        sim.faults.kinds = ("713",)
        assert code_of(call(sim, headers)) == "713"
        sim.faults.rate = 0.0
        sim.rate_limit_calls = 2  # the first call is in the window; injected faults are not
        sim.rate_limit_window_s = 60
        assert code_of(call(sim, headers)) is None
        assert code_of(call(sim, headers)) == "606"


# ----------------------------------------------------------------------------- counters
def test_counters_count_calls_rows_tokens_and_reset():
    with MarketoSimulator(WORLD) as sim:
        headers = bearer(sim)
        token = call(
            sim, headers, "/rest/v1/activities/pagingtoken.json", sinceDatetime="2024-04-12"
        ).json()
        page = call(
            sim, headers, ACTIVITIES, nextPageToken=token["nextPageToken"], activityTypeIds="1,6"
        ).json()
        requests.post(
            sim.base_url + ACTIVITIES + "?_method=GET",
            data={"nextPageToken": page["nextPageToken"], "activityTypeIds": "1,6"},
            headers=headers,
            timeout=5,
        )
        counters = sim.counters
        assert counters.calls_by_path == {
            "/identity/oauth/token": 1,
            "/rest/v1/activities/pagingtoken.json": 1,
            ACTIVITIES: 2,
        }
        assert counters.total_calls == 4
        assert counters.rest_calls == 3
        assert counters.tokens_issued == 1
        assert counters.method_override_posts == 1
        assert counters.rows_served >= len(page["result"]) > 0
        assert counters.pages_served == 2
        assert counters.peak_concurrency == 1
        assert counters.access_token_query_uses == 0
        assert counters.as_dict()["rows_served"] == counters.rows_served
        sim.reset_counters()
        assert sim.counters.total_calls == 0
        assert sim.counters.rows_served == 0
