//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`, generated
//! from the code (utoipa).
//!
//! Every handler in `http` carries `#[utoipa::path]` with its parameters,
//! bodies and answers; every type it accepts or returns derives `ToSchema`
//! or `IntoParams`; and `http` registers handlers only through
//! `utoipa_axum::routes!`, which puts a route on the router and in the
//! document in one step. This module adds what is common to many paths:
//! the document's info, the bearer scheme, the reusable error answers, and —
//! for every route behind the token check, so it follows the middleware
//! rather than each handler's memory — the security requirement and the
//! 401 and 503 answers. Codes kept as strings in the store (alarm kinds,
//! levels, …) are listed here as enumerations, each checked against its
//! Chinese label in the tests below.

use super::ErrorBody;
use crate::domain::labels;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi, Ref, RefOr, Schema};
use utoipa::{Modify, ToResponse};

/// Name of the bearer security scheme.
pub const BEARER: &str = "bearer";

// The codes kept as strings in the store, and their schemas, are domain
// types (the store's rows use the schemas).
pub use crate::domain::codes::*;

/// Schema of the `state` filter of the alarm list.
pub fn alarm_filter() -> Object {
    let mut o = codes(
        "standing (default: active or latched), active, latched, cleared, all",
        super::ALARM_FILTERS,
        None,
        false,
    );
    o.default = Some("standing".into());
    o
}

/// Schema of the ticket `status` filter: `open`, `closed`, `all`, or one
/// status code.
pub fn ticket_filter() -> Object {
    let groups = ["open", "closed", "all"];
    let statuses = crate::domain::labels::TICKET_STATUSES
        .iter()
        .map(|(c, _)| *c);
    let all: Vec<&str> = groups
        .into_iter()
        .chain(statuses.filter(|c| !groups.contains(c)))
        .collect();
    let mut o = codes(
        "open (not closed), closed, all (default), or one status code",
        &all,
        Some(|c| match c {
            "open" => "未销号",
            "all" => "全部",
            status => labels::ticket_status(status),
        }),
        false,
    );
    o.default = Some("all".into());
    o
}

/// The bytes of a file (the request or response body is the file itself).
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl utoipa::ToSchema for Binary {}

/// Invalid request: a parameter, path segment or body that does not parse
/// or is out of range (`bad_request`, `bad_limit`, `bad_state`, `bad_status`,
/// `bad_note`, `too_long`).
#[derive(ToResponse)]
#[allow(dead_code)] // documentation only
pub struct BadRequest(ErrorBody);

/// No such record (`not_found`), or one outside the caller's jurisdiction:
/// both answer alike, so an id never tells that it exists at another site.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct NotFound(ErrorBody);

/// A site (named in the path or query) outside the caller's jurisdiction, or
/// a role that may not act (`forbidden`). A record asked for by its id
/// outside the jurisdiction answers 404 instead.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct Forbidden(ErrorBody);

/// No valid token (`unauthenticated`): none, unknown, or expired.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct Unauthenticated(ErrorBody);

/// The database is unavailable (`store_unavailable`); retry later.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct StoreUnavailable(ErrorBody);

/// What the whole API has in common.
const DESCRIPTION: &str = "HTTP API v1. Codes (status, level, kind, …) are stable English \
     identifiers for programs; each has a *_label field in Simplified Chinese \
     for people. Times are milliseconds since the Unix epoch (UTC), with \
     *_text fields in RFC 3339, China Standard Time. Every path but /healthz, \
     /metrics, /api/v1/openapi.json, /api/v1/login and the web console (/ \
     and /console/{file}) needs `Authorization: \
     Bearer <token>` from /api/v1/login (401 otherwise), and keeps to the \
     caller's jurisdiction (403 for a record of another site; lists are \
     filtered). Errors are JSON: a stable code in `error` and a message in \
     Chinese in `message`.";

/// The document's info, the bearer scheme and the reusable answers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Fire-monitoring gateway API (智慧用电/消防设施监测网关)",
        version = "1.0.0",
        description = DESCRIPTION,
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(
        schemas(ErrorBody),
        responses(BadRequest, NotFound, Forbidden, Unauthenticated, StoreUnavailable)
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "system", description = "Health, counters and this document"),
        (name = "auth", description = "Logging in"),
        (name = "alarms", description = "报警: list, acknowledge (确认), reset (复位)"),
        (name = "tickets", description = "隐患工单: the closed loop and its evidence (整改佐证)"),
        (name = "reports", description = "台账 and 月报"),
        (name = "sites", description = "Institutions and their nodes"),
        (name = "registration", description = "安装调试: registering sites and nodes, node MQTT credentials (installers and administrators)"),
        (name = "events", description = "Server-sent events"),
        (name = "console", description = "The web console (值班台、隐患工单、监管端): its page and embedded files"),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("A token from POST /api/v1/login, valid 12 h"))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

fn operations(doc: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
    })
}

/// Marks every operation of `doc` as behind the token check: the bearer
/// requirement, and the 401 and 503 answers the check itself gives.
fn behind_token(doc: &mut OpenApi) {
    for op in operations(doc) {
        op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
        let answers = &mut op.responses.responses;
        answers
            .entry("401".into())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Unauthenticated")));
        answers
            .entry("503".into())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name("StoreUnavailable")));
    }
}

/// The whole document: the routes open to all, and those behind the token
/// check.
pub fn document(public: OpenApi, protected: OpenApi) -> OpenApi {
    let mut protected = protected;
    behind_token(&mut protected);
    let mut doc = <ApiDoc as utoipa::OpenApi>::openapi();
    doc.merge(public);
    doc.merge(protected);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_code_has_its_label() {
        for (codes, label) in [
            (ALARM_KINDS, labels::alarm_kind as fn(&str) -> &'static str),
            (ALARM_LEVELS, labels::level),
            (ALARM_STATES, labels::alarm_state),
            (TICKET_SOURCES, labels::ticket_source),
            (TICKET_CATEGORIES, labels::category),
        ] {
            for c in codes {
                assert!(!label(c).is_empty(), "{c} has no label");
            }
        }
    }

    #[test]
    fn ticket_statuses_are_one_list() {
        let machine: Vec<&str> = crate::tickets::Status::ALL
            .iter()
            .map(|s| s.code())
            .collect();
        let store: Vec<&str> = crate::domain::labels::TICKET_STATUSES
            .iter()
            .map(|(c, _)| *c)
            .collect();
        assert_eq!(machine, store);
    }
}
