"""Real, unmodified third-party FHIR clients against a running FHIR Notary.

Each client does what a user of it would: create a Patient and an Observation that
references it, read, update, vread, page the instance and type history with `_count` by
following the Bundle's `next` links, and delete (after which a read must fail with 410).

The server's base URL comes from FHIR_BASE and a bearer token from FHIR_TOKEN (clients/run
starts a server, mints an admin token with `fhir-notary token` and sets both).
Search has its own suite, test_search.py (fhirpy); nothing here uses the
clients' search APIs (fhirpy's `client.resources(...)`, fhirclient's `FHIRSearch`).
"""

import os
import uuid

import pytest
import requests
from fhirclient import client as fhirclient_client
from fhirclient.models.bundle import Bundle
from fhirclient.models.fhirreference import FHIRReference
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRNotFoundException
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

FHIR_BASE = os.environ.get("FHIR_BASE", "").rstrip("/")
FHIR_TOKEN = os.environ.get("FHIR_TOKEN", "")

if not FHIR_BASE:
    pytest.exit("FHIR_BASE is not set: run clients/run, which starts a server", returncode=2)
if not FHIR_TOKEN:
    pytest.exit("FHIR_TOKEN is not set: run clients/run, which mints one", returncode=2)

# A family name per test session, so the type history can be told apart from any other
# session's Patients when the same server is reused.
RUN = uuid.uuid4().hex[:8]

LOINC_WEIGHT = {
    "coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]
}


# --------------------------------------------------------------------------------------
# fhirpy (SyncFHIRClient)
# --------------------------------------------------------------------------------------


@pytest.fixture
def fhirpy_client():
    return SyncFHIRClient(FHIR_BASE, authorization=f"Bearer {FHIR_TOKEN}")


def fhirpy_pages(client, path, count):
    """Every page of a history Bundle, fetched with fhirpy's `execute` and following the
    `next` links the server returns (absolute URLs under the client's base, which fhirpy
    accepts as they are)."""
    bundle = client.execute(path, method="get", params={"_count": count})
    pages = [bundle]
    while True:
        next_url = next((l["url"] for l in bundle.get("link", []) if l["relation"] == "next"), None)
        if next_url is None:
            return pages
        assert len(pages) < 100, "history paging does not end"
        bundle = client.execute(next_url, method="get")
        pages.append(bundle)


def check_history_pages(pages, count):
    """Checks the Bundle shape and returns (resourceType, id, versionId, method) per entry,
    in order, across all pages."""
    seen = []
    for page in pages:
        assert page["resourceType"] == "Bundle"
        assert page["type"] == "history"
        assert len(page.get("entry", [])) <= count
        assert any(l["relation"] == "self" for l in page["link"])
        for entry in page.get("entry", []):
            method = entry["request"]["method"]
            if method == "DELETE":
                assert "resource" not in entry
                # The deleted version's identity is in request.url / response.etag.
                rtype, rid = entry["request"]["url"].split("/")[:2]
                version = entry["response"]["etag"].removeprefix('W/"').removesuffix('"')
            else:
                resource = entry["resource"]
                rtype, rid = resource["resourceType"], resource["id"]
                version = resource["meta"]["versionId"]
                assert entry["response"]["etag"] == f'W/"{version}"'
            seen.append((rtype, rid, version, method))
    assert len(seen) == len(set(seen)), f"an entry appears twice across pages: {seen}"
    return seen


def test_fhirpy_crud_vread_history_delete(fhirpy_client):
    client = fhirpy_client

    # create
    patient = client.resource(
        "Patient",
        name=[{"family": f"Fhirpy-{RUN}", "given": ["Peter"]}],
        birthDate="1974-12-25",
        active=True,
    )
    patient.save()
    assert patient.id
    assert patient["meta"]["versionId"] == "1"
    pid = patient.id

    observation = client.resource(
        "Observation",
        status="final",
        code=LOINC_WEIGHT,
        subject=patient.to_reference(),
        valueQuantity={"value": 72.50, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    )
    observation.save()
    assert observation.id
    assert observation["meta"]["versionId"] == "1"

    # read
    read = client.reference("Patient", pid).to_resource()
    assert read.id == pid
    assert read["name"][0]["family"] == f"Fhirpy-{RUN}"
    assert read["birthDate"] == "1974-12-25"
    assert client.get("Patient", pid)["meta"]["versionId"] == "1"
    obs_read = client.get("Observation", observation.id)
    assert obs_read["subject"]["reference"] == f"Patient/{pid}"
    assert obs_read["valueQuantity"]["value"] == 72.5
    # The Observation's subject resolves to the Patient through the client's reference API.
    assert client.resource("Observation", **obs_read)["subject"].to_resource().id == pid

    # update: versions increment and meta.versionId follows
    read["gender"] = "male"
    read.save()
    assert read["meta"]["versionId"] == "2"
    read["birthDate"] = "1974-12-26"
    read.update()
    assert read["meta"]["versionId"] == "3"
    assert client.get("Patient", pid)["gender"] == "male"

    # refresh: fhirpy sends If-None-Match with the current version; either a 304 (kept) or
    # a 200 with the same resource is fine.
    read.refresh()
    assert read["meta"]["versionId"] == "3"

    # vread of each earlier version
    v1 = client.execute(f"Patient/{pid}/_history/1", method="get")
    assert v1["meta"]["versionId"] == "1"
    assert "gender" not in v1
    v2 = client.execute(f"Patient/{pid}/_history/2", method="get")
    assert v2["meta"]["versionId"] == "2"
    assert v2["gender"] == "male" and v2["birthDate"] == "1974-12-25"

    # delete: Observation first (it references the Patient), then the Patient
    observation.delete()
    patient.delete()
    with pytest.raises(ResourceNotFound):
        client.get("Patient", pid)
    with pytest.raises(ResourceNotFound):
        client.reference("Observation", observation.id).to_resource()
    # Older versions stay readable after a delete.
    assert client.execute(f"Patient/{pid}/_history/3", method="get")["meta"]["versionId"] == "3"

    # instance history, two entries a page: 3 versions + the deletion, newest first
    seen = check_history_pages(fhirpy_pages(client, f"Patient/{pid}/_history", 2), 2)
    assert [(v, m) for (_, _, v, m) in seen] == [
        ("4", "DELETE"),
        ("3", "PUT"),
        ("2", "PUT"),
        ("1", "POST"),
    ]

    # type history, three entries a page: every version of this Patient exactly once
    seen = check_history_pages(fhirpy_pages(client, "Patient/_history", 3), 3)
    ours = sorted(v for (t, i, v, _) in seen if t == "Patient" and i == pid)
    assert ours == ["1", "2", "3", "4"]


def test_fhirpy_update_as_create_with_client_id(fhirpy_client):
    # fhirpy saves a resource that already has an id with PUT: the server creates it (201).
    pid = f"fhirpy-{RUN}"
    patient = fhirpy_client.resource("Patient", id=pid, name=[{"family": f"Fhirpy-{RUN}"}])
    patient.save()
    assert patient.id == pid
    assert patient["meta"]["versionId"] == "1"
    patient["active"] = False
    patient.save()
    assert patient["meta"]["versionId"] == "2"
    assert fhirpy_client.get("Patient", pid)["active"] is False
    patient.delete()
    with pytest.raises(ResourceNotFound):
        fhirpy_client.get("Patient", pid)


# --------------------------------------------------------------------------------------
# fhirclient (SMART on FHIR Python client)
# --------------------------------------------------------------------------------------


@pytest.fixture
def smart():
    settings = {"app_id": "fhir-notary-client-tests", "api_base": FHIR_BASE}
    smart = fhirclient_client.FHIRClient(settings=settings)
    # fhirclient sends every request through its requests.Session; a token obtained outside
    # fhirclient's own OAuth flow goes into that session's headers.
    smart.server.session.headers["Authorization"] = f"Bearer {FHIR_TOKEN}"
    # Fetches /metadata and parses it with fhirclient's strict CapabilityStatement model.
    smart.prepare()
    assert smart.server.capabilityStatement.fhirVersion == "4.0.1"
    return smart


def fhirclient_pages(server, path):
    """Every page of a history Bundle: the first with `FHIRServer.request_json`, parsed by
    fhirclient's strict Bundle model, then each `next` link read with `Bundle.read_from`
    (what fhirclient's own search paging does)."""
    bundle = Bundle(server.request_json(path))
    pages = [bundle]
    while True:
        next_url = next((l.url for l in bundle.link or [] if l.relation == "next"), None)
        if next_url is None:
            return pages
        assert len(pages) < 100, "history paging does not end"
        bundle = Bundle.read_from(next_url, server)
        pages.append(bundle)


def test_fhirclient_crud_vread_history_delete(smart):
    server = smart.server

    # create: fhirclient returns the response body (the created resource)
    new = Patient(
        {
            "name": [{"family": f"Fhirclient-{RUN}", "given": ["Ada"]}],
            "birthDate": "1815-12-10",
            "gender": "female",
        }
    )
    created = Patient(new.create(server))
    assert created.id
    assert created.meta.versionId == "1"
    pid = created.id

    obs = Observation(
        {
            "status": "final",
            "code": LOINC_WEIGHT,
            "valueQuantity": {"value": 61, "unit": "kg"},
        }
    )
    obs.subject = FHIRReference({"reference": f"Patient/{pid}"})
    obs_created = Observation(obs.create(server))
    assert obs_created.id and obs_created.meta.versionId == "1"

    # read
    patient = Patient.read(pid, server)
    assert patient.id == pid
    assert patient.name[0].family == f"Fhirclient-{RUN}"
    assert patient.birthDate.isostring == "1815-12-10"
    assert patient.meta.versionId == "1"
    obs_read = Observation.read(obs_created.id, server)
    assert obs_read.subject.reference == f"Patient/{pid}"
    assert obs_read.valueQuantity.value == 61

    # update, twice
    patient.active = True
    v2 = Patient(patient.update())
    assert v2.meta.versionId == "2"
    patient.gender = "other"
    v3 = Patient(patient.update())
    assert v3.meta.versionId == "3"
    assert Patient.read(pid, server).gender == "other"

    # vread
    old = Patient.read_from(f"Patient/{pid}/_history/1", server)
    assert old.meta.versionId == "1"
    assert old.active is None and old.gender == "female"

    # delete; a later read is 410 Gone, an unknown id is 404
    obs_read.delete()
    patient.delete()
    with pytest.raises(requests.HTTPError) as gone:
        Patient.read(pid, server)
    assert gone.value.response.status_code == 410
    with pytest.raises(requests.HTTPError) as gone:
        Observation.read(obs_created.id, server)
    assert gone.value.response.status_code == 410
    with pytest.raises(FHIRNotFoundException):
        Patient.read(f"missing-{RUN}", server)
    assert Patient.read_from(f"Patient/{pid}/_history/2", server).active is True

    # instance history, one entry a page
    pages = fhirclient_pages(server, f"Patient/{pid}/_history?_count=1")
    seen = check_history_pages([p.as_json() for p in pages], 1)
    assert [(v, m) for (_, _, v, m) in seen] == [
        ("4", "DELETE"),
        ("3", "PUT"),
        ("2", "PUT"),
        ("1", "POST"),
    ]
    # The parsed entries are fhirclient model objects of the right class.
    resources = [e.resource for p in pages for e in p.entry or [] if e.resource]
    assert all(isinstance(r, Patient) for r in resources)

    # type history of Observation, two entries a page: this one's two versions exactly once
    pages = fhirclient_pages(server, "Observation/_history?_count=2")
    seen = check_history_pages([p.as_json() for p in pages], 2)
    ours = sorted(v for (t, i, v, _) in seen if t == "Observation" and i == obs_created.id)
    assert ours == ["1", "2"]
    if pages[0].total is not None:
        assert pages[0].total == len(seen)
