"""The simulator's endpoints through real HTTP: identity, envelope, paging walks, late commits,
parameter rules, 414 and ``POST ?_method=GET``, the virtual ``Date`` header."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import pytest
import requests
from openapi_shapes import SHAPE_BY_PATH, assert_shape

from tap_marketo_activities.simulator import MarketoSimulator, World
from tap_marketo_activities.simulator import catalog as cat

UTC = timezone.utc
WORLD = World.seed_afternoon(rows=1000, seed=7)
ACTIVITIES = "/rest/v1/activities.json"
LEAD_CHANGES = "/rest/v1/activities/leadchanges.json"
DELETED = "/rest/v1/activities/deletedleads.json"
PAGING = "/rest/v1/activities/pagingtoken.json"
TYPES = "/rest/v1/activities/types.json"
IDENTITY = "/identity/oauth/token"
CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": "simulator",
    "client_secret": "simulator",
}


class Api:
    """A minimal Marketo client: a bearer token, GET with parameters, walks to the end."""

    def __init__(self, sim: MarketoSimulator) -> None:
        self.sim = sim
        self.session = requests.Session()
        self.token = self.session.get(
            sim.base_url + IDENTITY, params=CREDENTIALS, timeout=5
        ).json()["access_token"]

    def close(self) -> None:
        self.session.close()

    def get(self, path: str, **params: object) -> requests.Response:
        return self.session.get(
            self.sim.base_url + path,
            params=params,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )

    def body(self, path: str, **params: object) -> dict:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        body = response.json()
        if body.get("success"):
            assert_shape(body, SHAPE_BY_PATH[path])
        return body

    def paging_token(self, since: str) -> str:
        body = self.body(PAGING, sinceDatetime=since)
        assert body["success"], body
        return body["nextPageToken"]

    def walk(self, path: str, token: str, **params: object) -> tuple[list[dict], list[dict]]:
        """(rows, pages) of a walk from ``token`` until moreResult is false."""
        rows, pages = [], []
        while True:
            page = self.body(path, nextPageToken=token, **params)
            assert page["success"], page
            pages.append(page)
            rows.extend(page["result"])
            token = page["nextPageToken"]
            if not page["moreResult"]:
                return rows, pages


@pytest.fixture
def sim():
    with MarketoSimulator(WORLD) as simulator:
        yield simulator


@pytest.fixture
def api(sim):
    client = Api(sim)
    yield client
    client.close()


def guids(rows):
    return [r["marketoGUID"] for r in rows]


def parse_activity_date(text: str) -> datetime:
    return datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S%z")


# ----------------------------------------------------------------------------- identity
def test_identity_issues_a_bearer_token_with_the_documented_fields(sim):
    for method in ("GET", "POST"):
        response = requests.request(method, sim.base_url + IDENTITY, params=CREDENTIALS, timeout=5)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
        body = response.json()
        assert_shape(body, "ResponseOfIdentity")
        uuid_part, suffix = body["access_token"].split(":")
        assert len(uuid_part) == 36
        assert suffix
        assert body["token_type"] == "bearer"
        assert 3590 <= body["expires_in"] <= 3600
        assert "@" in body["scope"]


def test_identity_returns_the_same_token_until_it_expires(sim):
    first = requests.get(sim.base_url + IDENTITY, params=CREDENTIALS, timeout=5).json()
    second = requests.get(sim.base_url + IDENTITY, params=CREDENTIALS, timeout=5).json()
    assert second["access_token"] == first["access_token"]
    assert second["expires_in"] <= first["expires_in"]
    assert sim.counters.tokens_issued == 1
    assert sim.counters.identity_calls == 2


def test_bad_credentials_get_http_401_with_an_oauth_error(sim):
    response = requests.get(
        sim.base_url + IDENTITY, params={**CREDENTIALS, "client_secret": "wrong"}, timeout=5
    )
    assert response.status_code == 401
    assert response.json() == {
        "error": "invalid_client",
        "error_description": "Bad client credentials",
    }
    assert sim.counters.errors_by_code["HTTP401"] == 1


def test_missing_unknown_and_expired_tokens_get_601_and_602_as_http_200():
    with MarketoSimulator(WORLD, token_lifetime_s=1) as sim:
        missing = requests.get(sim.base_url + TYPES, timeout=5)
        unknown = requests.get(
            sim.base_url + TYPES, headers={"Authorization": "Bearer nope:sj"}, timeout=5
        )
        api = Api(sim)
        try:
            assert api.body(TYPES)["success"] is True
            sim.expire_tokens()
            expired = api.get(TYPES)
            fresh = requests.get(sim.base_url + IDENTITY, params=CREDENTIALS, timeout=5).json()
        finally:
            api.close()
        for response, code in ((missing, "601"), (unknown, "601"), (expired, "602")):
            assert response.status_code == 200
            body = response.json()
            assert body["success"] is False
            assert body["errors"][0]["code"] == code
            assert "result" not in body
        assert fresh["access_token"] != api.token
        assert sim.counters.enforced_by_code == {"601": 2, "602": 1}


def test_a_one_second_token_expires_in_real_time():
    with MarketoSimulator(WORLD, token_lifetime_s=1) as sim:
        api = Api(sim)
        try:
            assert api.body(TYPES)["success"] is True
            time.sleep(1.1)
            body = api.get(TYPES).json()
            assert body["errors"][0]["code"] == "602"
        finally:
            api.close()


def test_the_access_token_query_parameter_works_and_is_counted(sim, api):
    response = requests.get(sim.base_url + TYPES, params={"access_token": api.token}, timeout=5)
    assert response.json()["success"] is True
    api.body(TYPES)
    assert sim.counters.access_token_query_uses == 1


# ----------------------------------------------------------------------------- envelope, types
def test_envelope_has_a_request_id_and_omits_empty_errors_and_warnings(api):
    body = api.body(TYPES)
    assert body["success"] is True
    assert "#" in body["requestId"]
    left, right = body["requestId"].split("#")
    int(left, 16)
    int(right, 16)
    assert "errors" not in body
    assert "warnings" not in body


def test_activity_types_include_standard_and_custom_types_in_several_groups(api):
    types = api.body(TYPES)["result"]
    ids = {t["id"] for t in types}
    assert {1, 2, 6, 7, 10, 11, 12, 13, 22, 37, 46, 100001} <= ids
    assert len(ids - {13, 37}) > 20  # more than two groups of ten
    send_email = next(t for t in types if t["id"] == 6)
    assert send_email["name"] == "Send Email"
    assert send_email["primaryAttribute"] == {"name": "Mailing ID", "dataType": "integer"}
    assert {"name": "Campaign Run ID", "dataType": "integer"} in send_email["attributes"]


def test_the_date_header_carries_the_virtual_clock(sim, api):
    assert parsedate_to_datetime(api.get(TYPES).headers["Date"]) == datetime(
        2024, 4, 12, 14, tzinfo=UTC
    )
    sim.clock.set("2024-04-12T16:00:00Z")
    assert api.get(TYPES).headers["Date"] == "Fri, 12 Apr 2024 16:00:00 GMT"
    sim.clock.advance(minutes=5)
    assert api.get(TYPES).headers["Date"] == "Fri, 12 Apr 2024 16:05:00 GMT"
    assert sim.clock.now() == datetime(2024, 4, 12, 16, 5, tzinfo=UTC)


# ----------------------------------------------------------------------------- paging token
@pytest.mark.parametrize(
    "since",
    [
        "2024-04-12T12:00:00Z",
        "2024-04-12T14:00:00+02:00",
        "2024-04-12T06:00:00-0600",
        "2024-04-12T12:00:00",
    ],
)
def test_paging_token_accepts_the_documented_date_forms(api, since):
    token = api.paging_token(since)
    assert token.rstrip("=").isalnum()
    assert set(token.rstrip("=")) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    rows, _ = api.walk(ACTIVITIES, token, activityTypeIds=6)
    assert guids(rows) == guids(
        api.sim.expected("activities", type_ids=[6], since="2024-04-12T12:00:00Z")
    )


def test_a_date_only_since_means_midnight_utc(api):
    rows, _ = api.walk(ACTIVITIES, api.paging_token("2024-04-12"), activityTypeIds=[6, 7])
    assert guids(rows) == guids(api.sim.expected("activities", type_ids=[6, 7], since="2024-04-12"))


def test_paging_token_rejects_a_bad_or_missing_date(api):
    bad = api.body(PAGING, sinceDatetime="yesterday")
    assert bad["success"] is False
    assert bad["errors"][0]["code"] == "1001"
    assert "yesterday" in bad["errors"][0]["message"]
    missing = api.body(PAGING)
    assert missing["errors"][0]["code"] == "1002"


# ----------------------------------------------------------------------------- walks
def test_a_walk_delivers_exactly_the_committed_rows_stamped_since(api):
    since = "2024-04-12T12:00:00Z"
    everything = []
    default_types = sorted({t["id"] for t in api.body(TYPES)["result"]} - {13, 37})
    for start in range(0, len(default_types), 10):
        group = default_types[start : start + 10]
        rows, _ = api.walk(
            ACTIVITIES, api.paging_token(since), activityTypeIds=",".join(map(str, group))
        )
        assert {r["activityTypeId"] for r in rows} <= set(group)
        everything.extend(rows)
    expected = api.sim.expected("activities", since=since)
    assert sorted(guids(everything)) == sorted(guids(expected))
    assert len(set(guids(everything))) == len(everything)
    assert all(
        parse_activity_date(r["activityDate"]) >= datetime(2024, 4, 12, 12, tzinfo=UTC)
        for r in everything
    )
    by_guid = {r["marketoGUID"]: r for r in expected}
    assert all(by_guid[r["marketoGUID"]] == r for r in everything)


def test_rows_show_both_date_forms_missing_ids_and_numeric_attributes(api):
    rows, _ = api.walk(
        ACTIVITIES, api.paging_token("2024-04-12T08:00:00Z"), activityTypeIds=[1, 6, 10, 11, 2]
    )
    assert any(r["activityDate"].endswith("Z") for r in rows)
    assert any(r["activityDate"].endswith("+0000") for r in rows)
    assert any("id" not in r for r in rows)
    assert any(isinstance(r.get("id"), int) and r["id"] > 2**31 - 1 for r in rows)
    assert len(set(guids(rows))) == len(rows)
    values = [a["value"] for r in rows for a in r["attributes"]]
    assert any(isinstance(v, int) and not isinstance(v, bool) for v in values)
    assert all(v not in ("", None) for v in values)
    web = [r for r in rows if r["activityTypeId"] == 1]
    names = [{a["name"] for a in r["attributes"]} for r in web]
    assert any("Query Parameters" not in n for n in names)  # empty values are omitted


def test_repeated_and_comma_separated_activity_type_ids_are_the_same(api):
    token = api.paging_token("2024-04-12T12:00:00Z")
    comma, _ = api.walk(ACTIVITIES, token, activityTypeIds="1,6,12")
    repeated, _ = api.walk(ACTIVITIES, token, activityTypeIds=[1, 6, 12])
    mixed, _ = api.walk(ACTIVITIES, token, activityTypeIds=["1,6", "12"])
    assert guids(comma) == guids(repeated) == guids(mixed)
    assert comma


def test_late_commits_appear_behind_later_rows_and_only_once_committed(sim, api):
    since = "2024-04-12T12:00:00Z"
    fourteen = datetime(2024, 4, 12, 14, tzinfo=UTC)
    late = next(
        r
        for r in WORLD.rows()
        if r.activity_type_id == 6
        and r.activity_date < datetime(2024, 4, 12, 13, 50, tzinfo=UTC)
        and datetime(2024, 4, 12, 14, 3, tzinfo=UTC)
        <= r.committed_at
        <= datetime(2024, 4, 12, 14, 8, tzinfo=UTC)
    )
    early_rows, _ = api.walk(ACTIVITIES, api.paging_token(since), activityTypeIds=[1, 6, 7, 10])
    assert late.marketo_guid not in guids(early_rows)
    sim.clock.set(late.committed_at + timedelta(minutes=2))
    later_rows, _ = api.walk(ACTIVITIES, api.paging_token(since), activityTypeIds=[1, 6, 7, 10])
    order = guids(later_rows)
    assert late.marketo_guid in order
    ahead = later_rows[: order.index(late.marketo_guid)]
    assert any(parse_activity_date(r["activityDate"]) > late.activity_date for r in ahead)
    dates = [parse_activity_date(r["activityDate"]) for r in later_rows]
    assert dates != sorted(dates)  # commit order, not activityDate order
    sim.clock.set(fourteen)


def test_the_final_token_picks_up_rows_committed_later(sim, api):
    rows_at_14, pages = api.walk(
        ACTIVITIES, api.paging_token("2024-04-12T12:00:00Z"), activityTypeIds=6
    )
    final = pages[-1]["nextPageToken"]
    assert pages[-1]["moreResult"] is False
    sim.clock.set("2024-04-12T14:30:00Z")
    newer, _ = api.walk(ACTIVITIES, final, activityTypeIds=6)
    assert newer
    assert not set(guids(newer)) & set(guids(rows_at_14))
    everything = sorted(guids(rows_at_14) + guids(newer))
    assert everything == sorted(
        guids(sim.expected("activities", type_ids=[6], since="2024-04-12T12:00:00Z"))
    )
    # Campaign 2 (13:45) was about half committed at 14:00: the seed article's missing sends.
    campaign2_late = [r for r in newer if r.get("campaignId") == 2002]
    campaign2_early = [r for r in rows_at_14 if r.get("campaignId") == 2002]
    assert 0.3 < len(campaign2_early) / (len(campaign2_early) + len(campaign2_late)) < 0.7


def test_scanning_in_blocks_yields_short_and_empty_pages_with_more_result(api):
    api.sim.scan_block = 25
    rows, pages = api.walk(
        ACTIVITIES, api.paging_token("2024-04-12T12:00:00Z"), activityTypeIds=100001, batchSize=300
    )
    assert any(not p["result"] and p["moreResult"] for p in pages)
    assert all(len(p["result"]) < 300 for p in pages)
    assert guids(rows) == guids(
        api.sim.expected("activities", type_ids=[100001], since="2024-04-12T12:00:00Z")
    )


def test_batch_size_limits_a_page(api):
    page = api.body(
        ACTIVITIES,
        nextPageToken=api.paging_token("2024-04-12T12:00:00Z"),
        activityTypeIds=6,
        batchSize=7,
    )
    assert len(page["result"]) == 7
    assert page["moreResult"] is True


def test_lead_ids_filter_and_its_limit(api):
    lead = WORLD.info(500).lead_id
    rows, _ = api.walk(
        ACTIVITIES,
        api.paging_token("2024-04-12T00:00:00Z"),
        activityTypeIds=[1, 6, 7, 10],
        leadIds=lead,
    )
    assert rows
    assert {r["leadId"] for r in rows} == {lead}
    too_many = api.body(
        ACTIVITIES,
        nextPageToken=api.paging_token("2024-04-12"),
        activityTypeIds=1,
        leadIds=",".join(str(n) for n in range(31)),
    )
    assert too_many["errors"][0]["code"] == "1003"
    assert "leadIds" in too_many["errors"][0]["message"]


@pytest.mark.parametrize(
    ("params", "code", "named"),
    [
        ({"activityTypeIds": ",".join(str(n) for n in range(1, 12))}, "1003", "activityTypeIds"),
        ({}, "1002", "activityTypeIds"),
        ({"activityTypeIds": "1", "batchSize": 301}, "1003", "batchSize"),
        ({"activityTypeIds": "one"}, "1001", "one"),
    ],
)
def test_activities_parameter_rules(api, params, code, named):
    body = api.body(ACTIVITIES, nextPageToken=api.paging_token("2024-04-12T12:00:00Z"), **params)
    assert body["success"] is False
    assert body["errors"][0]["code"] == code
    assert named in body["errors"][0]["message"]


def test_missing_and_foreign_tokens_are_refused(api):
    missing = api.body(ACTIVITIES, activityTypeIds=1)
    assert missing["errors"][0]["code"] == "1002"
    assert "nextPageToken" in missing["errors"][0]["message"]
    bogus = api.body(ACTIVITIES, activityTypeIds=1, nextPageToken="GIYDAOBNGEYS2MBWKQYDAORQ")
    assert bogus["errors"][0]["code"] == "1003"
    other_world = World.seed_afternoon(rows=100, seed=8)
    with MarketoSimulator(other_world) as other:
        foreign_client = Api(other)
        try:
            foreign = foreign_client.paging_token("2024-04-12T12:00:00Z")
        finally:
            foreign_client.close()
    assert (
        api.body(ACTIVITIES, activityTypeIds=1, nextPageToken=foreign)["errors"][0]["code"]
        == "1003"
    )


def test_reject_cursors_refuses_earlier_position_tokens_only(sim, api):
    date_token = api.paging_token("2024-04-12T12:00:00Z")
    page = api.body(ACTIVITIES, nextPageToken=date_token, activityTypeIds=1, batchSize=5)
    cursor = page["nextPageToken"]
    sim.reject_cursors()
    refused = api.body(ACTIVITIES, nextPageToken=cursor, activityTypeIds=1)
    assert refused["success"] is False
    assert refused["errors"] == [{"code": "1003", "message": "Invalid nextPageToken"}]
    again = api.body(ACTIVITIES, nextPageToken=date_token, activityTypeIds=1, batchSize=5)
    assert again["success"] is True
    assert api.body(ACTIVITIES, nextPageToken=again["nextPageToken"], activityTypeIds=1)["success"]
    sim.stale_token_code = "701"
    sim.reject_cursors()
    assert (
        api.body(ACTIVITIES, nextPageToken=again["nextPageToken"], activityTypeIds=1)["errors"][0][
            "code"
        ]
        == "701"
    )


# ------------------------------------------------------------------- lead changes, deletions
def test_lead_changes_return_new_leads_and_changes_of_requested_fields(api):
    token = api.paging_token("2024-04-12T08:00:00Z")
    rows, _ = api.walk(LEAD_CHANGES, token, fields="email,leadScore")
    assert {r["activityTypeId"] for r in rows} == {12, 13}
    changes = [r for r in rows if r["activityTypeId"] == 13]
    assert changes
    assert {f["name"] for r in changes for f in r["fields"]} <= {"email", "leadScore"}
    assert all(
        isinstance(f["id"], int) and isinstance(f["newValue"], str)
        for r in changes
        for f in r["fields"]
    )
    assert all(r["fields"] == [] for r in rows if r["activityTypeId"] == 12)
    assert any({"name": "Lead ID", "value": r["leadId"]} in r["attributes"] for r in changes)
    assert guids(rows) == guids(
        api.sim.expected(
            "lead_changes", fields=["email", "leadScore"], since="2024-04-12T08:00:00Z"
        )
    )
    everything, _ = api.walk(
        LEAD_CHANGES,
        token,
        fields=[
            "email",
            "firstName",
            "lastName",
            "company",
            "leadStatus",
            "leadScore",
            "title",
            "phone",
            "city",
            "country",
        ],
    )
    assert len(everything) > len(rows)


def test_lead_changes_field_rules(api):
    token = api.paging_token("2024-04-12T12:00:00Z")
    missing = api.body(LEAD_CHANGES, nextPageToken=token)
    assert missing["errors"][0]["code"] == "1002"
    assert "fields" in missing["errors"][0]["message"]
    unknown = api.body(LEAD_CHANGES, nextPageToken=token, fields="email,xyz")
    assert unknown["errors"] == [{"code": "1006", "message": "Field 'xyz' not found"}]


def test_deleted_leads_are_type_37_with_a_person_name(api):
    rows, _ = api.walk(DELETED, api.paging_token("2024-04-12T00:00:00Z"))
    assert rows
    for row in rows:
        assert row["activityTypeId"] == 37
        assert row["attributes"] == []
        assert len(row["primaryAttributeValue"].split()) == 2
    assert guids(rows) == guids(api.sim.expected("deleted_leads"))


# ----------------------------------------------------------------------------- 414 and _method=GET
def test_long_tokens_get_414_on_get_and_work_through_post_method_get():
    with MarketoSimulator(WORLD, long_tokens=True) as sim:
        api = Api(sim)
        try:
            token = api.paging_token("2024-04-12T12:00:00Z")
            assert len(token) > 8192
            too_long = api.get(ACTIVITIES, nextPageToken=token, activityTypeIds=6)
            assert too_long.status_code == 414
            assert too_long.content == b""
            rows = []
            while True:
                response = api.session.post(
                    sim.base_url + ACTIVITIES + "?_method=GET",
                    data={"nextPageToken": token, "activityTypeIds": ["6", "1"]},
                    headers={"Authorization": f"Bearer {api.token}"},
                    timeout=10,
                )
                body = response.json()
                assert_shape(body, "ResponseOfActivity")
                rows.extend(body["result"])
                token = body["nextPageToken"]
                if not body["moreResult"]:
                    break
        finally:
            api.close()
        assert guids(rows) == guids(
            sim.expected("activities", type_ids=[1, 6], since="2024-04-12T12:00:00Z")
        )
        counters = sim.counters
        assert counters.errors_by_code["HTTP414"] == 1
        assert counters.method_override_posts >= 2


def test_post_without_method_override_is_not_supported(sim, api):
    response = api.session.post(
        sim.base_url + TYPES, headers={"Authorization": f"Bearer {api.token}"}, timeout=5
    )
    assert response.json()["errors"][0]["code"] == "605"


def test_every_endpoint_answers_in_its_documented_shape(api):
    token = api.paging_token("2024-04-12T12:00:00Z")
    api.body(TYPES)
    api.body(ACTIVITIES, nextPageToken=token, activityTypeIds="1,2,6,12,13,22,46,100001")
    api.body(LEAD_CHANGES, nextPageToken=token, fields="email,firstName,leadScore")
    api.body(DELETED, nextPageToken=token)
    api.body("/rest/v1/stats/usage.json")


def test_leads_describe_names_exactly_the_fields_lead_changes_accepts(api):
    """Other extractors discover lead fields here (benchmarks/peers.py runs one)."""
    body = api.body("/rest/v1/leads/describe.json")  # checks the documented shape
    described = {field["rest"]["name"]: field for field in body["result"]}
    assert set(described) == cat.KNOWN_LEAD_FIELDS
    assert described["id"]["dataType"] == "integer"
    assert described["id"]["rest"]["readOnly"] is True
    assert described["updatedAt"]["dataType"] == "datetime"
    assert described["email"] == {
        "id": 48,
        "displayName": "Email Address",
        "dataType": "email",
        "length": 255,
        "rest": {"name": "email", "readOnly": False},
        "soap": {"name": "Email", "readOnly": False},
    }
    token = api.paging_token("2024-04-12T12:00:00Z")
    every_field = ",".join(described)
    assert api.body(LEAD_CHANGES, nextPageToken=token, fields=every_field)["success"]


def test_list_and_asset_filters_narrow_the_walk(api):
    token = api.paging_token("2024-04-12T00:00:00Z")
    everything, _ = api.walk(ACTIVITIES, token, activityTypeIds=[1, 6, 10])
    in_list, _ = api.walk(ACTIVITIES, token, activityTypeIds=[1, 6, 10], listId=1001)
    assert 0 < len(in_list) < len(everything)
    assert set(guids(in_list)) < set(guids(everything))
    pages = [r for r in everything if r["activityTypeId"] == 1]
    asset = pages[0]["primaryAttributeValueId"]
    same_asset, _ = api.walk(ACTIVITIES, token, activityTypeIds=1, assetIds=asset)
    assert same_asset
    assert {r["primaryAttributeValueId"] for r in same_asset} == {asset}


def test_identity_refuses_another_grant_type(sim):
    response = requests.get(
        sim.base_url + IDENTITY, params={**CREDENTIALS, "grant_type": "password"}, timeout=5
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_unknown_paths_and_wrong_content_types(sim, api):
    assert api.body("/rest/v1/leads/nothing.json")["errors"][0]["code"] == "610"
    wrong = api.session.post(
        sim.base_url + TYPES + "?_method=GET",
        data=b'{"a": 1}',
        headers={"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"},
        timeout=5,
    )
    assert wrong.json()["errors"][0]["code"] == "612"
    assert requests.get(sim.base_url + "/elsewhere", timeout=5).status_code == 404


def test_the_bad_since_code_is_configurable(sim, api):
    sim.bad_since_code = "704"
    body = api.body(PAGING, sinceDatetime="2024-13-45")
    assert body["errors"][0]["code"] == "704"
