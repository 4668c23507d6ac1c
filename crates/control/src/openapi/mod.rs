//! The OpenAPI 3.1 document of control (`GET /openapi.json`, checked in as
//! `proto-docs/openapi.json`): schemas come from the protocol DTOs
//! (`ToSchema`, feature `openapi`), operations from the lists in
//! [`operations`] (core routes) and `chat` (`http::chat_routes`) — one entry
//! per route and method, in route-table order. A new endpoint is one more
//! entry there (a test fails until it is).

mod chat;
mod extensions;
mod files;
mod operations;
mod sync;
mod webhooks;

pub use operations::operations;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use tandem_protocol::ErrorBody;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, Content, HeaderBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathItem,
    PathsBuilder, Ref, RefOr, Required, ResponseBuilder,
};
use utoipa::ToSchema;

use crate::observe::REQUEST_ID_HEADER;

/// The document as served (built once).
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        // Serializing a tree of maps and strings cannot fail.
        serde_json::to_string_pretty(&document()).unwrap_or_default() + "\n"
    })
}

/// Kinds of resources, as path segments (`/{kind}/{id}`).
pub const KINDS: [&str; 3] = ["documents", "diagrams", "tasks"];
/// Things with members (`/{scope}/{id}/members`).
pub const SCOPES: [&str; 4] = ["workspaces", "projects", "documents", "diagrams"];

/// Who may call an operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    Public,
    /// A session token or an identity-provider JWT.
    User,
    /// The relay's shared secret.
    Relay,
    /// A one-time collaboration token, presented by a relay with its secret.
    RelayWithToken,
    /// Public, or the metrics token when `TANDEM_METRICS_TOKEN` is set.
    Metrics,
}

/// One operation being described.
pub struct Op {
    method: HttpMethod,
    path: String,
    auth: Auth,
    builder: OperationBuilder,
    errors: Vec<u16>,
    schemas: Vec<(String, RefOr<Schema>)>,
}

fn op(method: HttpMethod, path: &str, id: &str, summary: &str) -> Op {
    let tag = path.split('/').nth(1).unwrap_or_default();
    let mut builder = OperationBuilder::new()
        .operation_id(Some(id))
        .summary(Some(summary))
        .tag(tag);
    for name in path.split('{').skip(1).filter_map(|s| s.split_once('}')) {
        builder = builder.parameter(
            ParameterBuilder::new()
                .name(name.0)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    Op {
        method,
        path: path.to_string(),
        auth: Auth::User,
        builder,
        errors: vec![503],
        schemas: Vec::new(),
    }
}

fn get(path: &str, id: &str, summary: &str) -> Op {
    op(HttpMethod::Get, path, id, summary)
}
fn post(path: &str, id: &str, summary: &str) -> Op {
    op(HttpMethod::Post, path, id, summary)
}
fn put(path: &str, id: &str, summary: &str) -> Op {
    op(HttpMethod::Put, path, id, summary)
}
fn patch(path: &str, id: &str, summary: &str) -> Op {
    op(HttpMethod::Patch, path, id, summary)
}
fn delete(path: &str, id: &str, summary: &str) -> Op {
    op(HttpMethod::Delete, path, id, summary)
}

/// A `$ref` to a component schema.
fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn typed(t: Type) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(t)
}

fn json_content(schema: impl Into<RefOr<Schema>>) -> Content {
    Content::new(Some(schema))
}

fn request_id_header() -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(typed(Type::String))
        .description(Some(
            "The request's id (yours if sane, see proto-docs/http-api.md)",
        ))
        .build()
}

impl Op {
    fn public(mut self) -> Self {
        self.auth = Auth::Public;
        self
    }

    /// Answers without the database (never 503).
    fn static_answer(mut self) -> Self {
        self.errors.retain(|&s| s != 503);
        self
    }

    fn relay(mut self) -> Self {
        self.auth = Auth::Relay;
        self
    }

    fn metrics(mut self) -> Self {
        self.auth = Auth::Metrics;
        self
    }

    fn relay_with_token(mut self) -> Self {
        self.auth = Auth::RelayWithToken;
        self
    }

    fn describe(mut self, text: &str) -> Self {
        self.builder = self.builder.description(Some(text));
        self
    }

    fn errors(mut self, statuses: &[u16]) -> Self {
        self.errors.extend_from_slice(statuses);
        self
    }

    fn register<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let name = T::name().to_string();
        self.schemas.push((name.clone(), T::schema()));
        T::schemas(&mut self.schemas);
        reference(&name)
    }

    /// A JSON body of type `T` (and the errors reading one can give).
    fn body<T: ToSchema>(mut self) -> Self {
        let schema = self.register::<T>();
        self.body_with("application/json", json_content(schema))
            .errors(&[400, 413, 415, 422])
    }

    /// Like [`Self::body`], for a body that may be left out.
    fn optional_body<T: ToSchema>(mut self) -> Self {
        let schema = self.register::<T>();
        self.request_body("application/json", json_content(schema), Required::False)
            .errors(&[400, 413, 415, 422])
    }

    fn body_with(self, content_type: &str, content: Content) -> Self {
        self.request_body(content_type, content, Required::True)
    }

    fn request_body(mut self, content_type: &str, content: Content, required: Required) -> Self {
        let body = RequestBodyBuilder::new()
            .content(content_type, content)
            .required(Some(required))
            .build();
        self.builder = self.builder.request_body(Some(body));
        self
    }

    fn query(mut self, name: &str, t: Type, description: &str) -> Self {
        self.builder = self.builder.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(typed(t))),
        );
        self.errors(&[400])
    }

    fn answer(mut self, status: u16, description: &str, content: Option<(&str, Content)>) -> Self {
        let mut res = ResponseBuilder::new()
            .description(description)
            .header(REQUEST_ID_HEADER, request_id_header());
        if let Some((content_type, content)) = content {
            res = res.content(content_type, content);
        }
        self.builder = self.builder.response(status.to_string(), res);
        self
    }

    /// Answers `T` as JSON with `status`.
    fn ok<T: ToSchema>(mut self, status: u16) -> Self {
        let schema = self.register::<T>();
        self.answer(
            status,
            "Success",
            Some(("application/json", json_content(schema))),
        )
    }

    /// Takes `?limit&cursor` (422 for a bad limit, 400 for a bad cursor).
    fn paging(self) -> Self {
        self.query(
            "limit",
            Type::Integer,
            "Items per page, 1–200 (50 when absent; outside the range: 422)",
        )
        .query(
            "cursor",
            Type::String,
            "`nextCursor` of the previous page (opaque; one this server did not make: 400)",
        )
        .errors(&[422])
    }

    /// Answers one page of `T`, `{items, nextCursor}` (component `{T}Page`),
    /// and takes `?limit&cursor`.
    fn page<T: ToSchema>(mut self) -> Self {
        let item = self.register::<T>();
        let name = format!("{}Page", T::name());
        let next = ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .description(Some(
                "Pass as `cursor` for the next page; `null` on the last page.",
            ));
        let page = ObjectBuilder::new()
            .description(Some(format!("One page of {}.", T::name())))
            .property("items", ArrayBuilder::new().items(item))
            .required("items")
            .property("nextCursor", next)
            .required("nextCursor");
        self.schemas.push((name.clone(), page.into()));
        self.paging().answer(
            200,
            "Success",
            Some(("application/json", json_content(reference(&name)))),
        )
    }

    /// Answers a small JSON object described here.
    fn ok_object(self, status: u16, object: ObjectBuilder) -> Self {
        self.answer(
            status,
            "Success",
            Some(("application/json", json_content(object))),
        )
    }

    fn no_content(self) -> Self {
        self.answer(204, "Done; no body", None)
    }
}

/// `{"<name>": integer}`.
fn count_object(name: &str, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .property(name, typed(Type::Integer).description(Some(description)))
        .required(name)
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn bytes() -> Content {
    Content::new(Some(
        typed(Type::String).content_media_type("application/octet-stream"),
    ))
}

/// The error answers, one shared response per status.
fn error_responses() -> Vec<(u16, &'static str, &'static str)> {
    vec![
        (
            400,
            "BadRequest",
            "The request could not be read (malformed JSON, bad query or path)",
        ),
        (
            401,
            "Unauthorized",
            "No credentials, or credentials that are not valid",
        ),
        (
            403,
            "Forbidden",
            "Authenticated, but not allowed to do this (also `guest_access_denied`: the workspace's guest access does not let someone from outside its org in, or not with this role)",
        ),
        (
            404,
            "NotFound",
            "No such thing, or not visible to the caller",
        ),
        (409, "Conflict", "Conflicts with existing state"),
        (
            410,
            "Gone",
            "It existed but can no longer be used (revoked or expired)",
        ),
        (
            413,
            "PayloadTooLarge",
            "The body (or a file: `file_too_large`) is larger than the configured limit",
        ),
        (
            415,
            "UnsupportedMediaType",
            "The body is not `application/json`",
        ),
        (
            416,
            "RangeNotSatisfiable",
            "The `Range` is outside the file",
        ),
        (
            422,
            "ValidationFailed",
            "Well-formed JSON whose fields are missing, mistyped or invalid (also `hash_mismatch`, `size_mismatch` of uploads)",
        ),
        (
            429,
            "RateLimited",
            "Too many requests: retry after `Retry-After` seconds",
        ),
        (
            500,
            "Internal",
            "A fault on the server, or a configuration it cannot work with (`misconfigured`)",
        ),
        (
            503,
            "Unavailable",
            "A dependency (the database) is unavailable; retry later",
        ),
        (
            507,
            "InsufficientStorage",
            "The workspace's file quota would be exceeded (`quota_exceeded`)",
        ),
    ]
}

/// Builds the whole document.
pub fn document() -> OpenApi {
    let mut schemas: BTreeMap<String, RefOr<Schema>> = BTreeMap::new();
    let mut paths = PathsBuilder::new();
    let names: BTreeMap<u16, &str> = error_responses().iter().map(|e| (e.0, e.1)).collect();
    for mut op in operations() {
        let mut errors = op.errors.clone();
        if op.auth != Auth::Public {
            errors.push(401);
        }
        errors.sort_unstable();
        errors.dedup();
        for status in errors {
            let name = names.get(&status).copied().unwrap_or("Internal");
            op.builder = op.builder.response(
                status.to_string(),
                Ref::new(format!("#/components/responses/{name}")),
            );
        }
        op.builder = match op.auth {
            Auth::Public => op.builder,
            Auth::User => op
                .builder
                .security(SecurityRequirement::new("user", Vec::<String>::new())),
            Auth::Relay => op
                .builder
                .security(SecurityRequirement::new("relay", Vec::<String>::new())),
            Auth::Metrics => op
                .builder
                .security(SecurityRequirement::default())
                .security(SecurityRequirement::new("metrics", Vec::<String>::new())),
            Auth::RelayWithToken => op.builder.security(
                SecurityRequirement::new("collaborationToken", Vec::<String>::new())
                    .add("relaySecretHeader", Vec::<String>::new()),
            ),
        };
        schemas.extend(op.schemas.drain(..));
        paths = paths.path(op.path.clone(), PathItem::new(op.method, op.builder));
    }
    let mut components = ComponentsBuilder::new().schema_from::<ErrorBody>();
    let mut error_deps = Vec::new();
    ErrorBody::schemas(&mut error_deps);
    for (name, schema) in error_deps.into_iter().chain(schemas) {
        components = components.schema(name, schema);
    }
    for (status, name, description) in error_responses() {
        let mut res = ResponseBuilder::new()
            .description(format!("{status}: {description}"))
            .header(REQUEST_ID_HEADER, request_id_header())
            .content("application/json", json_content(reference("ErrorBody")));
        if status == 429 {
            let retry = HeaderBuilder::new()
                .schema(typed(Type::Integer))
                .description(Some("Seconds to wait before trying again"))
                .build();
            res = res.header("retry-after", retry);
        }
        components = components.response(name, res);
    }
    let components = components
        .security_scheme("user", bearer("A session token (from signup or login) or, when TANDEM_JWKS is set, an identity provider's JWT"))
        .security_scheme("relay", bearer("The relay's shared secret (TANDEM_RELAY_SECRET); relays only"))
        .security_scheme("metrics", bearer("TANDEM_METRICS_TOKEN, when it is set (then required)"))
        .security_scheme("collaborationToken", bearer("A one-time collaboration token, as the relay received it from a client"))
        .security_scheme(
            "relaySecretHeader",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                tandem_protocol::collab::RELAY_SECRET_HEADER,
                "The relay's shared secret, beside a collaboration token",
            ))),
        )
        .build();
    let info = InfoBuilder::new()
        .title("Tandem control")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Identity, tenancy, permissions, collaboration tokens and chats. JSON bodies with \
             camelCase fields; errors are `{\"error\":{\"code\",\"message\",\"requestId\"}}`; \
             every answer carries `x-request-id`. See proto-docs/http-api.md.",
        ))
        .build();
    OpenApiBuilder::new()
        .info(info)
        .paths(paths.build())
        .components(Some(components))
        .build()
}

fn bearer(description: &str) -> SecurityScheme {
    let mut http = Http::new(HttpAuthScheme::Bearer);
    http.description = Some(description.to_string());
    SecurityScheme::Http(http)
}

/// Every documented `(METHOD, path)`, for the route-table test.
pub fn documented_routes() -> Vec<(String, String)> {
    operations()
        .iter()
        .map(|op| (method_name(&op.method).to_string(), op.path.clone()))
        .collect()
}

fn method_name(m: &HttpMethod) -> &'static str {
    match m {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Options => "OPTIONS",
        HttpMethod::Head => "HEAD",
        HttpMethod::Trace => "TRACE",
    }
}
