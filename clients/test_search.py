"""Unmodified fhirpy searches against a running FHIR Notary: parameters, chaining, includes,
reverse includes, sorting and paging through the server's `next` links, and a transaction
Bundle sent with fhirpy's `execute`.

The server's base URL comes from FHIR_BASE and a bearer token from FHIR_TOKEN (clients/run
starts a server, mints an admin token and sets both). Every
test makes its own resources under a family name unique to the session, so its expected
results are exact even on a server that holds other data.
"""

import os
import uuid

import pytest
from fhirpy import SyncFHIRClient

FHIR_BASE = os.environ.get("FHIR_BASE", "").rstrip("/")
FHIR_TOKEN = os.environ.get("FHIR_TOKEN", "")

if not FHIR_BASE:
    pytest.exit("FHIR_BASE is not set: run clients/run, which starts a server", returncode=2)
if not FHIR_TOKEN:
    pytest.exit("FHIR_TOKEN is not set: run clients/run, which mints one", returncode=2)

RUN = uuid.uuid4().hex[:8]
LOINC = "http://loinc.org"


@pytest.fixture(scope="module")
def client():
    return SyncFHIRClient(FHIR_BASE, authorization=f"Bearer {FHIR_TOKEN}")


@pytest.fixture(scope="module")
def family(client):
    """Five Patients of one family, each with two Observations (heart rate, weight)."""
    name = f"Searchfam{RUN}"
    for i in range(5):
        patient = client.resource(
            "Patient",
            name=[{"family": name, "given": [f"Child{i}"]}],
            gender="female" if i % 2 else "male",
            birthDate=f"200{i}-01-15",
        )
        patient.save()
        for code, value, unit in (("8867-4", 60 + i, "/min"), ("29463-7", 20 + i, "kg")):
            client.resource(
                "Observation",
                status="final",
                code={"coding": [{"system": LOINC, "code": code}]},
                subject=patient.to_reference(),
                effectiveDateTime=f"2020-0{i + 1}-01T10:00:00Z",
                valueQuantity={"value": value, "unit": unit},
            ).save()
    return name


def test_search_by_parameters(client, family):
    patients = client.resources("Patient").search(family=family).fetch_all()
    assert len(patients) == 5
    girls = client.resources("Patient").search(family=family, gender="female").fetch_all()
    assert sorted(p["name"][0]["given"][0] for p in girls) == ["Child1", "Child3"]
    born = client.resources("Patient").search(family=family, birthdate__ge="2003").fetch_all()
    assert sorted(p["birthDate"] for p in born) == ["2003-01-15", "2004-01-15"]
    assert client.resources("Patient").search(family=family).count() == 5


def test_chained_search(client, family):
    observations = (
        client.resources("Observation")
        .search(**{"subject:Patient.family": family, "code": f"{LOINC}|8867-4"})
        .fetch_all()
    )
    assert sorted(o["valueQuantity"]["value"] for o in observations) == [60, 61, 62, 63, 64]


def test_include_and_revinclude(client, family):
    bundle = (
        client.resources("Observation")
        .search(**{"subject:Patient.family": family, "code": f"{LOINC}|29463-7"})
        .include("Observation", "subject")
        .fetch_raw()
    )
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes.count("match") == 5 and modes.count("include") == 5
    included = {e["resource"]["resourceType"] for e in bundle["entry"] if e["search"]["mode"] == "include"}
    assert included == {"Patient"}

    bundle = (
        client.resources("Patient")
        .search(family=family, given="Child2")
        .revinclude("Observation", "subject")
        .fetch_raw()
    )
    types = sorted(e["resource"]["resourceType"] for e in bundle["entry"])
    assert types == ["Observation", "Observation", "Patient"]


def test_sort_and_paging(client, family):
    # fetch_all follows the server's `next` links page by page.
    pages = client.resources("Patient").search(family=family).sort("-birthdate").limit(2)
    patients = pages.fetch_all()
    assert [p["birthDate"][:4] for p in patients] == ["2004", "2003", "2002", "2001", "2000"]
    first_page = pages.fetch()
    assert len(first_page) == 2


def test_transaction_bundle(client):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:8c1b2f54-3f0d-4a54-a8f4-7e0c5e0a2f11",
                "resource": {"resourceType": "Patient", "name": [{"family": f"Txn{RUN}"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "note"},
                    "subject": {"reference": "urn:uuid:8c1b2f54-3f0d-4a54-a8f4-7e0c5e0a2f11"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = client.execute("", method="post", data=bundle)
    assert response["type"] == "transaction-response"
    assert [e["response"]["status"] for e in response["entry"]] == ["201 Created"] * 2
    found = (
        client.resources("Observation")
        .search(**{"subject:Patient.family": f"Txn{RUN}"})
        .fetch_all()
    )
    assert len(found) == 1
