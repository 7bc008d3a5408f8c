//! The OpenAPI 3.1 document of the whole HTTP API, served at `GET /openapi.json`, and the
//! Swagger UI at `GET /docs/` (its files ship inside the binary: nothing loads from a CDN).
//!
//! The document is generated, not written per type: [`INTERACTIONS`] has one row per
//! interaction (method, path template, summary, body, replies, errors, parameters), and a
//! row whose path contains `[type]` is emitted once for every R4 resource type, with the
//! type's schema ([`schemas`], from the vendored model) and, for searches, its indexed search
//! parameters (from [`fhir::search::r4_search`]). Everything used more than once (error
//! responses, parameters, headers, schemas) is a component, referenced with `$ref`.
//!
//! The document is built once, on first request; `openapi/openapi.json` in the repository is
//! the same document pretty-printed, and `tests/openapi.rs` fails when the two differ.

mod schemas;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use fhir::search::{r4_search, ParamType, SearchParam};
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Components, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required,
};
use utoipa_swagger_ui::{Config, SwaggerUi};

use schemas::schema_ref;

const FHIR_JSON: &str = "application/fhir+json";
const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// The name of the bearer security scheme.
const BEARER: &str = "smart";

/// What a request body carries.
#[derive(Debug, Clone, Copy)]
enum Body {
    None,
    /// One of these (media type, component schema) pairs; `[type]` names the row's type.
    Json(&'static [(&'static str, &'static str)]),
    /// Search parameters, form-encoded.
    SearchForm,
}

/// The row's resource as FHIR JSON.
const RESOURCE_BODY: Body = Body::Json(&[(FHIR_JSON, "[type]")]);
const PATCH_BODY: Body = Body::Json(&[
    ("application/json-patch+json", "JsonPatch"),
    (FHIR_JSON, "Parameters"),
]);

/// A successful reply: a status, what its body is (component schema names, `[type]` for the
/// row's type; several mean one of them; none means no body) and its headers.
struct Reply {
    status: u16,
    description: &'static str,
    media: &'static str,
    schemas: &'static [&'static str],
    headers: &'static [&'static str],
}

/// Which search parameters a row takes as query parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Search {
    None,
    /// The indexed parameters of the row's resource type.
    Type,
    /// The indexed parameters every resource type has (`_id`, `_lastUpdated`, …).
    System,
}

/// One interaction of the API.
struct Interaction {
    method: HttpMethod,
    /// The path; `[type]` makes the row one operation per resource type.
    path: &'static str,
    /// The operation id; `-<type>` is appended for per-type rows.
    operation: &'static str,
    /// `[type]` is replaced by the resource type.
    summary: &'static str,
    /// The tag for rows that are not per type (those are tagged with their type).
    tag: &'static str,
    body: Body,
    /// Parameter components (see [`parameters`]) this interaction takes.
    params: &'static [&'static str],
    search: Search,
    replies: &'static [Reply],
    /// Error statuses, each an OperationOutcome (see [`error_responses`]).
    errors: &'static [u16],
    /// Whether the bearer scheme applies.
    secured: bool,
}

const VERSION_HEADERS: &[&str] = &["ETag", "Last-Modified"];
const WRITE_HEADERS: &[&str] = &["Location", "ETag", "Last-Modified"];
/// What a create or update answers, by `Prefer: return=…`: the resource (default), an
/// OperationOutcome, or nothing (`minimal`).
const WRITTEN: &[&str] = &["[type]", "OperationOutcome"];
const FORMAT: &[&str] = &["_format", "_pretty"];
const HISTORY: &[&str] = &["_count", "_since", "_at", "_format", "_pretty"];
const SEARCH_RESULT: &[&str] = &[
    "_count",
    "_sort",
    "_total",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_format",
    "_pretty",
    "Prefer-handling",
];
const SYSTEM_SEARCH_RESULT: &[&str] = &[
    "_type",
    "_count",
    "_sort",
    "_total",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_format",
    "_pretty",
    "Prefer-handling",
];

const OUTCOME: Reply = Reply {
    status: 200,
    description: "The validation's OperationOutcome (its errors, or one information issue)",
    media: FHIR_JSON,
    schemas: &["OperationOutcome"],
    headers: &[],
};

const BUNDLE: Reply = Reply {
    status: 200,
    description: "A Bundle",
    media: FHIR_JSON,
    schemas: &["Bundle"],
    headers: &[],
};

/// Every interaction the server answers. To document a new endpoint, add its row here (and
/// any new parameter to [`parameters`], any new error status to [`ERRORS`], any new
/// schema to [`api_schemas`]).
const INTERACTIONS: &[Interaction] = &[
    Interaction {
        method: HttpMethod::Get,
        path: "/healthz",
        operation: "healthz",
        summary: "Liveness: answers while the process runs",
        tag: "Health",
        body: Body::None,
        params: &[],
        search: Search::None,
        replies: &[Reply {
            status: 200,
            description: "The process is alive",
            media: JSON,
            schemas: &["Health"],
            headers: &[],
        }],
        errors: &[500],
        secured: false,
    },
    Interaction {
        method: HttpMethod::Get,
        path: "/readyz",
        operation: "readyz",
        summary: "Readiness: answers 200 while the database answers",
        tag: "Health",
        body: Body::None,
        params: &[],
        search: Search::None,
        replies: &[Reply {
            status: 200,
            description: "The database answers",
            media: JSON,
            schemas: &["Health"],
            headers: &[],
        }],
        errors: &[503],
        secured: false,
    },
    Interaction {
        method: HttpMethod::Get,
        path: "/fhir/metadata",
        operation: "capabilities",
        summary: "The CapabilityStatement: every resource type, interaction and search parameter",
        tag: "System",
        body: Body::None,
        params: FORMAT,
        search: Search::None,
        replies: &[Reply {
            status: 200,
            description: "The server's CapabilityStatement",
            media: FHIR_JSON,
            schemas: &["CapabilityStatement"],
            headers: &[],
        }],
        errors: &[400, 406, 500],
        secured: false,
    },
    Interaction {
        method: HttpMethod::Post,
        path: "/fhir",
        operation: "transaction",
        summary: "Process a transaction (all or nothing) or batch Bundle",
        tag: "System",
        body: Body::Json(&[(FHIR_JSON, "Bundle")]),
        params: &["Prefer-return", "_format", "_pretty"],
        search: Search::None,
        replies: &[Reply {
            status: 200,
            description: "The transaction-response or batch-response Bundle",
            media: FHIR_JSON,
            schemas: &["Bundle"],
            headers: &[],
        }],
        errors: &[400, 404, 406, 409, 410, 412, 413, 415, 422, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Get,
        path: "/fhir",
        operation: "search-system",
        summary: "Search across resource types (_type limits them)",
        tag: "System",
        body: Body::None,
        params: SYSTEM_SEARCH_RESULT,
        search: Search::System,
        replies: &[BUNDLE],
        errors: &[400, 406, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Get,
        path: "/fhir/Patient/{id}/{type}",
        operation: "search-compartment",
        summary: "Search a resource type within a Patient's compartment",
        tag: "Patient",
        body: Body::None,
        params: &["id", "type", "_count", "_sort", "_total", "_include", "_revinclude",
                  "_summary", "_elements", "_format", "_pretty", "Prefer-handling"],
        search: Search::None,
        replies: &[BUNDLE],
        errors: &[400, 404, 406, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Post,
        path: "/fhir/_search",
        operation: "search-system-post",
        summary: "Search across resource types, parameters form-encoded in the body",
        tag: "System",
        body: Body::SearchForm,
        params: SYSTEM_SEARCH_RESULT,
        search: Search::System,
        replies: &[BUNDLE],
        errors: &[400, 406, 413, 415, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Get,
        path: "/fhir/_history",
        operation: "history-system",
        summary: "The history of every resource, newest first",
        tag: "System",
        body: Body::None,
        params: HISTORY,
        search: Search::None,
        replies: &[BUNDLE],
        errors: &[400, 406, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Get,
        path: "/fhir/[type]",
        operation: "search-type",
        summary: "Search [type] resources",
        tag: "",
        body: Body::None,
        params: SEARCH_RESULT,
        search: Search::Type,
        replies: &[BUNDLE],
        errors: &[400, 406, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Post,
        path: "/fhir/[type]/_search",
        operation: "search-type-post",
        summary: "Search [type] resources, parameters form-encoded in the body",
        tag: "",
        body: Body::SearchForm,
        params: SEARCH_RESULT,
        search: Search::Type,
        replies: &[BUNDLE],
        errors: &[400, 406, 413, 415, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Post,
        path: "/fhir/[type]",
        operation: "create",
        summary: "Create a [type]; the server assigns the id (conditionally with If-None-Exist)",
        tag: "",
        body: RESOURCE_BODY,
        params: &["If-None-Exist", "Prefer-return", "_format", "_pretty"],
        search: Search::None,
        replies: &[
            Reply {
                status: 201,
                description: "Created: version 1",
                media: FHIR_JSON,
                schemas: WRITTEN,
                headers: WRITE_HEADERS,
            },
            Reply {
                status: 200,
                description: "If-None-Exist matched one resource: that resource, nothing created",
                media: FHIR_JSON,
                schemas: WRITTEN,
                headers: WRITE_HEADERS,
            },
        ],
        errors: &[400, 406, 412, 413, 415, 422, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Put,
        path: "/fhir/[type]",
        operation: "conditional-update",
        summary: "Conditional update: the one [type] matching the search, or a new one when none does",
        tag: "",
        body: RESOURCE_BODY,
        params: &["If-Match", "Prefer-return", "_format", "_pretty"],
        search: Search::Type,
        replies: &[
            Reply {
                status: 200,
                description: "The match, updated: a new version",
                media: FHIR_JSON,
                schemas: WRITTEN,
                headers: WRITE_HEADERS,
            },
            Reply {
                status: 201,
                description: "Nothing matched: created",
                media: FHIR_JSON,
                schemas: WRITTEN,
                headers: WRITE_HEADERS,
            },
        ],
        errors: &[400, 406, 409, 412, 413, 415, 422, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Patch,
        path: "/fhir/[type]",
        operation: "conditional-patch",
        summary: "Conditional patch: patch the one [type] matching the search",
        tag: "",
        body: PATCH_BODY,
        params: &["If-Match", "Prefer-return", "_format", "_pretty"],
        search: Search::Type,
        replies: &[Reply {
            status: 200,
            description: "Patched: a new version",
            media: FHIR_JSON,
            schemas: WRITTEN,
            headers: WRITE_HEADERS,
        }],
        errors: &[400, 404, 406, 409, 410, 412, 413, 415, 422, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Delete,
        path: "/fhir/[type]",
        operation: "conditional-delete",
        summary: "Conditional delete: delete every [type] matching the search (up to 1,000)",
        tag: "",
        body: Body::None,
        params: &[],
        search: Search::Type,
        replies: &[Reply {
            status: 204,
            description: "Deleted, or nothing matched",
            media: "",
            schemas: &[],
            headers: &["ETag"],
        }],
        errors: &[400, 409, 412, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Post,
        path: "/fhir/[type]/$validate",
        operation: "validate",
        summary: "$validate a [type] (the body, or a Parameters with resource and mode): nothing is stored",
        tag: "",
        body: RESOURCE_BODY,
        params: &["_format", "_pretty"],
        search: Search::None,
        replies: &[OUTCOME],
        errors: &[400, 406, 413, 415, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Post,
        path: "/fhir/[type]/{id}/$validate",
        operation: "validate-instance",
        summary: "$validate a [type] as an update of this id (mode=delete: whether it can be deleted)",
        tag: "",
        body: RESOURCE_BODY,
        params: &["id", "_format", "_pretty"],
        search: Search::None,
        replies: &[OUTCOME],
        errors: &[400, 406, 413, 415, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Get,
        path: "/fhir/[type]/_history",
        operation: "history-type",
        summary: "The history of every [type], newest first",
        tag: "",
        body: Body::None,
        params: HISTORY,
        search: Search::None,
        replies: &[BUNDLE],
        errors: &[400, 406, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Get,
        path: "/fhir/[type]/{id}",
        operation: "read",
        summary: "Read the current version of a [type]",
        tag: "",
        body: Body::None,
        params: &[
            "id",
            "If-None-Match",
            "If-Modified-Since",
            "_summary",
            "_elements",
            "_format",
            "_pretty",
        ],
        search: Search::None,
        replies: &[
            Reply {
                status: 200,
                description: "The current version",
                media: FHIR_JSON,
                schemas: &["[type]"],
                headers: VERSION_HEADERS,
            },
            Reply {
                status: 304,
                description: "Not modified since the version or time the client named",
                media: "",
                schemas: &[],
                headers: VERSION_HEADERS,
            },
        ],
        errors: &[400, 404, 406, 410, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Put,
        path: "/fhir/[type]/{id}",
        operation: "update",
        summary: "Update a [type], or create it with this id",
        tag: "",
        body: RESOURCE_BODY,
        params: &["id", "If-Match", "Prefer-return", "_format", "_pretty"],
        search: Search::None,
        replies: &[
            Reply {
                status: 200,
                description: "Updated: a new version",
                media: FHIR_JSON,
                schemas: WRITTEN,
                headers: WRITE_HEADERS,
            },
            Reply {
                status: 201,
                description: "Created with the id of the URL",
                media: FHIR_JSON,
                schemas: WRITTEN,
                headers: WRITE_HEADERS,
            },
        ],
        errors: &[400, 406, 409, 412, 413, 415, 422, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Patch,
        path: "/fhir/[type]/{id}",
        operation: "patch",
        summary: "Patch a [type]: JSON Patch, or FHIRPath Patch (a Parameters resource)",
        tag: "",
        body: PATCH_BODY,
        params: &["id", "If-Match", "Prefer-return", "_format", "_pretty"],
        search: Search::None,
        replies: &[Reply {
            status: 200,
            description: "Patched: a new version",
            media: FHIR_JSON,
            schemas: WRITTEN,
            headers: WRITE_HEADERS,
        }],
        errors: &[400, 404, 406, 409, 410, 412, 413, 415, 422, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Delete,
        path: "/fhir/[type]/{id}",
        operation: "delete",
        summary: "Delete a [type] (a versioned delete: earlier versions stay readable)",
        tag: "",
        body: Body::None,
        params: &["id", "If-Match"],
        search: Search::None,
        replies: &[Reply {
            status: 204,
            description: "Deleted, or there was nothing to delete",
            media: "",
            schemas: &[],
            headers: &["ETag"],
        }],
        errors: &[400, 409, 412, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Get,
        path: "/fhir/[type]/{id}/_history",
        operation: "history-instance",
        summary: "The versions of a [type], newest first",
        tag: "",
        body: Body::None,
        params: &["id", "_count", "_since", "_at", "_format", "_pretty"],
        search: Search::None,
        replies: &[BUNDLE],
        errors: &[400, 404, 406, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Get,
        path: "/fhir/[type]/{id}/_history/{vid}",
        operation: "vread",
        summary: "Read one version of a [type]",
        tag: "",
        body: Body::None,
        params: &["id", "vid", "_summary", "_elements", "_format", "_pretty"],
        search: Search::None,
        replies: &[Reply {
            status: 200,
            description: "That version",
            media: FHIR_JSON,
            schemas: &["[type]"],
            headers: VERSION_HEADERS,
        }],
        errors: &[400, 404, 406, 410, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Get,
        path: "/ledger/head",
        operation: "ledger-head",
        summary: "The newest block and how many entries wait to be sealed",
        tag: "Ledger",
        body: Body::None,
        params: &[],
        search: Search::None,
        replies: &[Reply {
            status: 200,
            description: "The head of the chain",
            media: JSON,
            schemas: &["LedgerHead"],
            headers: &[],
        }],
        errors: &[500, 503],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Get,
        path: "/ledger/blocks",
        operation: "ledger-blocks",
        summary: "Up to 100 block headers from height `from` to `to`, to walk the chain",
        tag: "Ledger",
        body: Body::None,
        params: &["from", "to"],
        search: Search::None,
        replies: &[Reply {
            status: 200,
            description: "The blocks, with a `next` URL while more follow",
            media: JSON,
            schemas: &["LedgerBlocks"],
            headers: &[],
        }],
        errors: &[400, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Get,
        path: "/ledger/blocks/{height}",
        operation: "ledger-block",
        summary: "A block: header, hash, signature and the leaf hashes of its entries",
        tag: "Ledger",
        body: Body::None,
        params: &["height"],
        search: Search::None,
        replies: &[Reply {
            status: 200,
            description: "The block",
            media: JSON,
            schemas: &["LedgerBlock"],
            headers: &[],
        }],
        errors: &[400, 404, 500],
        secured: true,
    },
    Interaction {
        method: HttpMethod::Get,
        path: "/ledger/proof/{type}/{id}/{version}",
        operation: "ledger-proof",
        summary: "A self-contained proof that a version was notarized (verify offline with `fhir-notary ledger verify-proof`)",
        tag: "Ledger",
        body: Body::None,
        params: &["type", "id", "version"],
        search: Search::None,
        replies: &[
            Reply {
                status: 200,
                description: "The proof (docs/ledger.md, section 8)",
                media: JSON,
                schemas: &["LedgerProof"],
                headers: &[],
            },
            Reply {
                status: 202,
                description: "Notarized, but its block is not sealed yet: ask again after Retry-After",
                media: FHIR_JSON,
                schemas: &["OperationOutcome"],
                headers: &["Retry-After"],
            },
        ],
        errors: &[400, 404, 500],
        secured: true,
    },
];

/// Error statuses every operation under the bearer scheme can answer, besides its own.
const SECURED_ERRORS: &[u16] = &[401, 403];

/// Error statuses: component name and description. Each is an OperationOutcome.
const ERRORS: &[(u16, &str, &str)] = &[
    (
        400,
        "BadRequest",
        "Malformed request or structurally invalid resource (issue.expression names the element)",
    ),
    (
        401,
        "Unauthorized",
        "No bearer token, or one that is invalid or expired (WWW-Authenticate says why)",
    ),
    (
        403,
        "Forbidden",
        "The token's role, scopes or patient compartment do not allow this",
    ),
    (
        404,
        "NotFound",
        "No such resource, version, block or endpoint",
    ),
    (406, "NotAcceptable", "The requested format is not JSON"),
    (409, "Conflict", "A concurrent write conflicted; retry"),
    (410, "Gone", "The resource (or this version) was deleted"),
    (
        412,
        "PreconditionFailed",
        "If-Match names a version that is not the current one",
    ),
    (
        413,
        "PayloadTooLarge",
        "The body exceeds the server's limit",
    ),
    (
        415,
        "UnsupportedMediaType",
        "The body's Content-Type is not supported",
    ),
    (
        422,
        "Unprocessable",
        "Required elements are missing, or a rule of this server is broken",
    ),
    (
        500,
        "InternalError",
        "An internal failure; logged with its cause, answered without internals",
    ),
    (
        503,
        "Unavailable",
        "Not ready: the database does not answer, or the ledger has no block yet",
    ),
];

/// The document as compact JSON, built on first use.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    // Serializing a tree of maps and strings cannot fail.
    serde_json::to_string(&document()).expect("the OpenAPI document serializes")
});

/// The OpenAPI document of this server.
pub fn document() -> OpenApi {
    let defs = fhir::definitions::r4();
    let types: Vec<&str> = defs.resource_types().collect();
    let mut components = Components::new();
    components.schemas = schemas::fhir_schemas(defs);
    components.schemas.extend(api_schemas());
    components.parameters = parameters(&types);
    components.responses = error_responses();
    components.headers = headers();
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(SCOPES))
                .build(),
        ),
    );

    let mut paths = Paths::new();
    let system_params = system_search_params(&types);
    for row in INTERACTIONS {
        if row.path.contains("[type]") {
            for ty in &types {
                let search: Vec<String> = match row.search {
                    Search::Type => r4_search()
                        .params_for(ty)
                        .iter()
                        .filter(|p| p.is_indexed())
                        .map(param_key)
                        .collect(),
                    _ => Vec::new(),
                };
                add(&mut paths, row, Some(ty), &search);
            }
        } else {
            let search = if row.search == Search::System {
                system_params.clone()
            } else {
                Vec::new()
            };
            add(&mut paths, row, None, &search);
        }
    }

    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("FHIR Notary")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .build(),
        )
        .paths(paths)
        .build();
    doc.components = Some(components);
    doc
}

/// Adds the operation of `row` (for resource type `ty`, when the row is per type).
fn add(paths: &mut Paths, row: &Interaction, ty: Option<&str>, search: &[String]) {
    let fill = |s: &str| match ty {
        Some(ty) => s.replace("[type]", ty),
        None => s.to_owned(),
    };
    let path = fill(row.path);
    let operation_id = match ty {
        Some(ty) => format!("{}-{ty}", row.operation),
        None => row.operation.to_owned(),
    };
    let mut op = OperationBuilder::new()
        .operation_id(Some(operation_id))
        .summary(Some(fill(row.summary)))
        .tag(ty.unwrap_or(row.tag));
    for name in row.params {
        op = op.parameter_ref(Ref::new(format!("#/components/parameters/{name}")));
    }
    for key in search {
        op = op.parameter_ref(Ref::new(format!("#/components/parameters/{key}")));
    }
    let schema = |name: &str| schema_ref(&fill(name));
    match row.body {
        Body::None => {}
        Body::Json(kinds) => {
            let mut body = RequestBodyBuilder::new().required(Some(Required::True));
            for (media, name) in kinds {
                body = body.content(
                    *media,
                    ContentBuilder::new().schema(Some(schema(name))).build(),
                );
            }
            op = op.request_body(Some(body.build()));
        }
        Body::SearchForm => {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .description(Some(
                        "Search parameters, as in the query string of the GET search; both are applied",
                    ))
                    .content(
                        FORM,
                        ContentBuilder::new().schema(Some(schema("SearchForm"))).build(),
                    )
                    .build(),
            ));
        }
    }
    for reply in row.replies {
        let mut response = ResponseBuilder::new().description(reply.description);
        match reply.schemas {
            [] => {}
            [one] => {
                response = response.content(
                    reply.media,
                    ContentBuilder::new().schema(Some(schema(one))).build(),
                );
            }
            several => {
                let mut one_of = OneOfBuilder::new();
                for name in several {
                    one_of = one_of.item(schema(name));
                }
                response = response.content(
                    reply.media,
                    ContentBuilder::new().schema(Some(one_of)).build(),
                );
            }
        }
        for name in reply.headers {
            response = response.header_ref(*name, Ref::new(format!("#/components/headers/{name}")));
        }
        op = op.response(reply.status.to_string(), response.build());
    }
    let secured_errors = if row.secured { SECURED_ERRORS } else { &[] };
    let mut errors: Vec<u16> = row.errors.iter().chain(secured_errors).copied().collect();
    errors.sort_unstable();
    errors.dedup();
    for status in &errors {
        let name = ERRORS
            .iter()
            .find(|(s, ..)| s == status)
            .map(|(_, name, _)| *name)
            .unwrap_or_else(|| panic!("no error response for status {status}"));
        op = op.response(
            status.to_string(),
            RefOr::Ref(Ref::from_response_name(name)),
        );
    }
    if row.secured {
        op = op.security(SecurityRequirement::new(BEARER, Vec::<String>::new()));
    }
    let op: Operation = op.build();
    match paths.paths.get_mut(&path) {
        Some(item) => item.merge_operations(PathItem::new(row.method.clone(), op)),
        None => {
            paths
                .paths
                .insert(path, PathItem::new(row.method.clone(), op));
        }
    }
}

/// The component key of a search parameter: its definition's id (`Patient-family`,
/// `clinical-patient`), so a definition shared by many types is described once.
fn param_key(param: &SearchParam) -> String {
    let id = param.url.rsplit('/').next().unwrap_or(&param.code);
    format!("search-{id}")
}

/// The indexed search parameters every resource type has, for system search.
fn system_search_params(types: &[&str]) -> Vec<String> {
    let mut common: Option<BTreeSet<String>> = None;
    for ty in types {
        let keys: BTreeSet<String> = r4_search()
            .params_for(ty)
            .iter()
            .filter(|p| p.is_indexed())
            .map(param_key)
            .collect();
        common = Some(match common {
            None => keys,
            Some(c) => c.intersection(&keys).cloned().collect(),
        });
    }
    common.unwrap_or_default().into_iter().collect()
}

fn string_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn query(name: &str, schema: impl Into<RefOr<Schema>>, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

fn in_path(name: &str, schema: impl Into<RefOr<Schema>>, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

fn in_header(name: &str, schema: impl Into<RefOr<Schema>>, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

/// The parameter components: the shared ones by name, and every indexed search parameter by
/// [`param_key`].
fn parameters(types: &[&str]) -> BTreeMap<String, RefOr<Parameter>> {
    let enum_of = |values: &[&str]| string_schema().enum_values(Some(values.to_vec()));
    let count = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
    };
    let shared = [
        in_path("id", schema_ref("id"), "The logical id of the resource"),
        in_path("vid", schema_ref("id"), "The version id (meta.versionId)"),
        in_path(
            "type",
            enum_of(types),
            "The resource type",
        ),
        in_path(
            "version",
            ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)),
            "The version number",
        ),
        in_path("height", count(), "The block height (0 is genesis)"),
        query("from", count(), "The first block height (default 0)"),
        query("to", count(), "The last block height (default: the head)"),
        query(
            "_format",
            string_schema(),
            "The response format; only JSON (json, application/fhir+json, application/json) is served, anything else is 406",
        ),
        query(
            "_pretty",
            ObjectBuilder::new().schema_type(Type::Boolean),
            "Indent the JSON",
        ),
        query(
            "_summary",
            enum_of(&["true", "text", "data", "count", "false"]),
            "Return only a summary of each resource (count: only the total, for searches)",
        ),
        query(
            "_elements",
            string_schema(),
            "Comma-separated element names to return (plus the mandatory ones)",
        ),
        query(
            "_count",
            count(),
            "Page size (history: default 50, at most 1000)",
        ),
        query(
            "_since",
            schema_ref("instant"),
            "Only versions written at or after this instant",
        ),
        query(
            "_at",
            schema_ref("dateTime"),
            "Only versions that were current at some point in this period",
        ),
        query(
            "_sort",
            string_schema(),
            "Comma-separated search parameter names to sort by; a leading - sorts descending",
        ),
        query(
            "_total",
            enum_of(&["none", "estimate", "accurate"]),
            "Whether to count all matches into Bundle.total",
        ),
        query(
            "_include",
            string_schema(),
            "Also return resources the matches reference: Type:param[:Target]; _include:iterate follows them further",
        ),
        query(
            "_revinclude",
            string_schema(),
            "Also return resources that reference the matches: Type:param[:Target]",
        ),
        query(
            "_type",
            string_schema(),
            "Comma-separated resource types to search",
        ),
        in_header(
            "If-Match",
            string_schema(),
            "Version-aware write: only when the current version is this ETag (W/\"3\"); 412 otherwise",
        ),
        in_header(
            "If-None-Match",
            string_schema(),
            "Conditional read: 304 when the current version is this ETag (W/\"3\") or *",
        ),
        in_header(
            "If-None-Exist",
            string_schema(),
            "Conditional create: a search (identifier=sys|val); one match is answered 200 \
             with it and nothing is created, several are 412",
        ),
        in_header(
            "If-Modified-Since",
            string_schema(),
            "Conditional read: 304 unless modified after this HTTP date",
        ),
    ];
    let mut params: BTreeMap<String, RefOr<Parameter>> = shared
        .into_iter()
        .map(|p| (p.name.clone(), RefOr::T(p)))
        .collect();
    params.insert(
        "Prefer-return".into(),
        RefOr::T(in_header(
            "Prefer",
            enum_of(&[
                "return=representation",
                "return=minimal",
                "return=OperationOutcome",
            ]),
            "What a write answers with: the resource (default), no body, or an OperationOutcome",
        )),
    );
    params.insert(
        "Prefer-handling".into(),
        RefOr::T(in_header(
            "Prefer",
            enum_of(&["handling=lenient", "handling=strict"]),
            "Unknown parameters: ignored and reported in an outcome entry (lenient, default) or 400 (strict)",
        )),
    );
    for ty in types {
        for param in r4_search().params_for(ty).iter().filter(|p| p.is_indexed()) {
            params
                .entry(param_key(param))
                .or_insert_with(|| RefOr::T(search_parameter(param)));
        }
    }
    params
}

/// A search parameter as a query parameter; its FHIR type, modifiers and prefixes are in the
/// description, since OpenAPI names cannot carry `:modifier`.
fn search_parameter(param: &SearchParam) -> Parameter {
    let mut description = format!("FHIR search parameter of type `{}`.", param.kind.as_str());
    if !param.modifiers.is_empty() {
        let modifiers: Vec<String> = param.modifiers.iter().map(|m| format!("`:{m}`")).collect();
        description.push_str(&format!(" Modifiers: {}.", modifiers.join(", ")));
    }
    if param.kind.is_ordered() && !param.comparators.is_empty() {
        description.push_str(&format!(" Prefixes: {}.", param.comparators.join(", ")));
    }
    if param.kind == ParamType::Composite {
        description.push_str(" Components are joined with `$`.");
    }
    if !param.description.is_empty() {
        description.push_str("\n\n");
        description.push_str(&param.description);
    }
    query(&param.code, string_schema(), &description)
}

fn error_responses() -> BTreeMap<String, RefOr<Response>> {
    ERRORS
        .iter()
        .map(|(_, name, description)| {
            (
                (*name).to_owned(),
                RefOr::T(
                    ResponseBuilder::new()
                        .description(*description)
                        .content(
                            FHIR_JSON,
                            ContentBuilder::new()
                                .schema(Some(schema_ref("OperationOutcome")))
                                .build(),
                        )
                        .build(),
                ),
            )
        })
        .collect()
}

fn headers() -> BTreeMap<String, RefOr<Header>> {
    let header = |description: &str| {
        let mut h = Header::new(string_schema());
        h.description = Some(description.to_owned());
        RefOr::T(h)
    };
    BTreeMap::from([
        ("ETag".into(), header("The version as a weak ETag: W/\"3\"")),
        (
            "Last-Modified".into(),
            header("When the version was written (HTTP date)"),
        ),
        (
            "Location".into(),
            header("[base]/[type]/[id]/_history/[vid] of the version written"),
        ),
        (
            "Retry-After".into(),
            header("Seconds to wait before asking again"),
        ),
    ])
}

/// Schemas of what the server answers outside FHIR: health and the ledger
/// (`docs/ledger.md`), and the form body of POST searches.
fn api_schemas() -> BTreeMap<String, RefOr<Schema>> {
    let hex = |bytes: usize, what: &str| -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            string_schema()
                .pattern(Some(format!("^[0-9a-f]{{{}}}$", bytes * 2)))
                .description(Some(what))
                .build(),
        ))
    };
    let hex_list = |what: &str| -> RefOr<Schema> {
        RefOr::T(Schema::Array(
            ArrayBuilder::new().items(hex(32, what)).build(),
        ))
    };
    let uint = |what: &str| -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .description(Some(what))
                .build(),
        ))
    };
    let text = |what: &str| -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            string_schema().description(Some(what)).build(),
        ))
    };
    let object = |description: &str,
                  properties: Vec<(&str, RefOr<Schema>)>,
                  optional: &[&str]|
     -> RefOr<Schema> {
        let mut o = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(description));
        for (name, schema) in properties {
            if !optional.contains(&name) {
                o = o.required(name);
            }
            o = o.property(name, schema);
        }
        RefOr::T(Schema::Object(o.build()))
    };
    let json_patch = RefOr::T(Schema::Array(
        ArrayBuilder::new()
            .items(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property(
                        "op",
                        string_schema().enum_values(Some(vec![
                            "add", "remove", "replace", "move", "copy", "test",
                        ])),
                    )
                    .property("path", string_schema())
                    .property("from", string_schema())
                    .property("value", ObjectBuilder::new())
                    .required("op")
                    .required("path"),
            )
            .description(Some("A JSON Patch document (RFC 6902)"))
            .build(),
    ));
    BTreeMap::from([
        ("JsonPatch".into(), json_patch),
        (
            "Health".into(),
            object("A probe's answer", vec![("status", text("ok, ready"))], &[]),
        ),
        (
            "SearchForm".into(),
            RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .additional_properties(Some(string_schema()))
                    .description(Some("Search parameters by name"))
                    .build(),
            )),
        ),
        (
            "LedgerHead".into(),
            object(
                "The newest block",
                vec![
                    ("height", uint("Height of the newest block")),
                    ("blockHash", hex(32, "Its block hash")),
                    ("sealedAt", text("When it was sealed (FHIR instant)")),
                    ("signer", hex(32, "The Ed25519 key that signed it")),
                    ("sealedEntries", uint("Entries in all sealed blocks")),
                    ("pendingEntries", uint("Entries waiting to be sealed")),
                ],
                &[],
            ),
        ),
        (
            "LedgerBlockHeader".into(),
            object(
                "A block header (docs/ledger.md, section 5)",
                vec![
                    ("height", uint("0 for genesis, then +1 per block")),
                    ("prevHash", hex(32, "Block hash of the previous header")),
                    ("merkleRoot", hex(32, "RFC 6962 root over the leaf hashes")),
                    ("entryCount", uint("Entries in the block")),
                    ("firstIndex", uint("Ledger-wide index of its first entry")),
                    ("sealedAt", text("When it was sealed (FHIR instant)")),
                    ("signer", hex(32, "The Ed25519 key that signed it")),
                    ("members", hex_list("Keys allowed to sign (genesis only)")),
                ],
                &["members"],
            ),
        ),
        (
            "LedgerBlock".into(),
            object(
                "A block",
                vec![
                    ("header", schema_ref("LedgerBlockHeader")),
                    ("blockHash", hex(32, "SHA-256 of the header bytes")),
                    (
                        "signature",
                        hex(64, "Ed25519 signature (docs/ledger.md, section 6)"),
                    ),
                    (
                        "leafHashes",
                        hex_list("Leaf hashes of its entries, in order (single block only)"),
                    ),
                ],
                &["leafHashes"],
            ),
        ),
        (
            "LedgerBlocks".into(),
            object(
                "A run of blocks",
                vec![
                    (
                        "blocks",
                        RefOr::T(Schema::Array(
                            ArrayBuilder::new().items(schema_ref("LedgerBlock")).build(),
                        )),
                    ),
                    (
                        "next",
                        text("The URL of the following blocks, while more follow"),
                    ),
                ],
                &["next"],
            ),
        ),
        (
            "LedgerEntry".into(),
            object(
                "A ledger entry (docs/ledger.md, section 3)",
                vec![
                    ("resourceType", text("FHIR resource type")),
                    ("id", text("Logical id")),
                    ("version", uint("The version (meta.versionId)")),
                    (
                        "operation",
                        RefOr::T(Schema::Object(
                            string_schema()
                                .enum_values(Some(["create", "update", "patch", "delete"]))
                                .build(),
                        )),
                    ),
                    (
                        "contentHash",
                        hex(32, "SHA-256 of the version's canonical JSON"),
                    ),
                    ("actor", text("Who wrote")),
                    ("recordedAt", text("When (FHIR instant)")),
                    ("requestId", text("The request id the server logged")),
                ],
                &[],
            ),
        ),
        (
            "LedgerProof".into(),
            object(
                "A proof file (docs/ledger.md, section 8)",
                vec![
                    (
                        "format",
                        RefOr::T(Schema::Object(
                            string_schema()
                                .enum_values(Some(["fhir-notary-proof/1"]))
                                .build(),
                        )),
                    ),
                    ("entry", schema_ref("LedgerEntry")),
                    ("leafIndex", uint("The entry's position in the block")),
                    ("auditPath", hex_list("Sibling hashes, bottom first")),
                    ("block", schema_ref("LedgerBlockHeader")),
                    ("signature", hex(64, "Ed25519 signature over the header")),
                    (
                        "publicKey",
                        hex(32, "The key that signed; equals block.signer"),
                    ),
                ],
                &[],
            ),
        ),
    ])
}

const DESCRIPTION: &str = "An HL7 FHIR R4 (4.0.1) REST server whose every write is \
notarized, in the same transaction, into a signed, hash-chained Merkle ledger.\n\n\
Every R4 resource type supports read, vread, create, update (also update-as-create), \
versioned delete, instance and type history and search with its indexed search parameters; \
the schemas are generated from the R4 StructureDefinitions. Errors are OperationOutcomes. \
The ledger endpoints serve blocks and proofs that verify offline \
(`fhir-notary ledger verify-proof`; format: docs/ledger.md). Every response carries \
`X-Request-Id`.";

const SCOPES: &str = "An OAuth 2.0 access token (a JWT) in `Authorization: Bearer …`. \
Access is granted by SMART on FHIR scopes: a context (`patient/` for the patient in the \
token's `patient` claim, `user/` for what the user may see, `system/` for backend \
services), a resource type or `*`, and permissions, either SMART v1 (`.read`, `.write`, \
`.*`) or SMART v2 letters `.cruds` (create, read, update, delete, search; any subset in \
that order), e.g. `patient/Observation.rs`, `user/*.read`, `system/*.cruds`.";

/// `GET /openapi.json`.
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, JSON))
        .body(DOCUMENT.as_str())
}

/// Registers `/openapi.json` and the Swagger UI under `/docs/`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/openapi.json").route(web::get().to(openapi_json)))
        .service(web::resource("/docs").route(web::get().to(|| async {
            HttpResponse::PermanentRedirect()
                .insert_header((header::LOCATION, "/docs/"))
                .finish()
        })))
        .service(
            SwaggerUi::new("/docs/{_:.*}").config(
                Config::from("/openapi.json")
                    // The public validator badge would fetch from the internet.
                    .validator_url("none")
                    .persist_authorization(true)
                    .filter(true)
                    // Over a thousand operations: expanding them all would stall the page.
                    .doc_expansion("none")
                    .try_it_out_enabled(true),
            ),
        );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_refers_to_known_components() {
        let doc = serde_json::to_value(document()).unwrap();
        let components = &doc["components"];
        let text = doc.to_string();
        for (kind, marker) in [
            ("schemas", "#/components/schemas/"),
            ("parameters", "#/components/parameters/"),
            ("responses", "#/components/responses/"),
            ("headers", "#/components/headers/"),
        ] {
            for reference in text.split(&format!("\"$ref\":\"{marker}")).skip(1) {
                let name = &reference[..reference.find('"').unwrap()];
                assert!(
                    components[kind].get(name).is_some(),
                    "{marker}{name} is not defined"
                );
            }
        }
    }

    #[test]
    fn search_parameter_keys_are_unique_per_definition() {
        let mut by_key: BTreeMap<String, &str> = BTreeMap::new();
        for ty in fhir::definitions::r4().resource_types() {
            for p in r4_search().params_for(ty) {
                let url = by_key.entry(param_key(p)).or_insert(&p.url);
                assert_eq!(*url, p.url, "two definitions share {}", param_key(p));
            }
        }
    }
}
