//! Loading a thing by id (and its chain) for a handler: a missing thing is a
//! 404 with the right noun, and an id that cannot exist is a 404 too.

use super::paths::Kind;
use crate::authz::ConversationFacts;
use crate::db::DbConnection;
use crate::error::ApiError;
use crate::store::conversations::{self, ConversationRow};
use crate::store::{facts, Chain, ProjectRow, ResourceRow};

fn checked<'a>(id: &'a str, noun: &'static str) -> Result<&'a str, ApiError> {
    crate::validate::id(id).map_err(|_| ApiError::NotFound(noun))
}

pub fn workspace(c: &mut DbConnection, id: &str) -> Result<Chain, ApiError> {
    let w =
        facts::workspace(c, checked(id, "workspace")?)?.ok_or(ApiError::NotFound("workspace"))?;
    Ok(Chain::for_workspace(w))
}

pub fn project(c: &mut DbConnection, id: &str) -> Result<(ProjectRow, Chain), ApiError> {
    facts::project(c, checked(id, "project")?)?.ok_or(ApiError::NotFound("project"))
}

/// A resource of the given kind: a task id under `/documents/` is a 404.
pub fn resource(
    c: &mut DbConnection,
    id: &str,
    kind: Kind,
) -> Result<(ResourceRow, Chain), ApiError> {
    facts::resource(c, checked(id, kind.noun())?)?
        .filter(|(r, _)| r.kind == kind.resource_type().as_str())
        .ok_or(ApiError::NotFound(kind.noun()))
}

/// A conversation and the user's facts on it.
pub fn conversation(
    c: &mut DbConnection,
    id: &str,
    user_id: &str,
) -> Result<(ConversationRow, ConversationFacts), ApiError> {
    conversations::load(c, checked(id, "conversation")?, user_id)?
        .ok_or(ApiError::NotFound("conversation"))
}
