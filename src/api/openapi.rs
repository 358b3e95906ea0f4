//! The OpenAPI document: the handlers' `#[utoipa::path]` annotations in, `/api/v1/openapi.json`
//! out. The router is built from the same annotated handlers (utoipa-axum), so the document
//! cannot list a route the server lacks or miss one it has.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "orchestrator API",
        description = "Submit tasks and add context to them through Git: every write is a commit \
                       that the sync applies. Write endpoints take `Authorization: Bearer <token>`."
    ),
    modifiers(&BearerScheme),
    components(schemas(crate::api::model::WrittenData, crate::api::model::TaskSummary,
                        crate::api::model::OperationData,
                        crate::api::routes::status::StatusView)),
    tags(
        (name = "tasks", description = "Task folders as commits; TaskRuns from the cache"),
        (name = "status", description = "Sync and health of a revision"),
        (name = "webhook", description = "Push notifications from a Git host"),
        (name = "health", description = "Liveness, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
