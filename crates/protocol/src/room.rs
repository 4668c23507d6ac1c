//! Room ids: `"{resourceType}-{resourceId}"`, e.g. `doc-01h…`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest room id accepted anywhere (prefix, dash and resource id).
pub const MAX_ROOM_ID_LEN: usize = 128;

/// The kinds of resource that have a live room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    Doc,
    Diagram,
    Task,
}

impl ResourceType {
    pub const ALL: [ResourceType; 3] =
        [ResourceType::Doc, ResourceType::Diagram, ResourceType::Task];

    /// The prefix used in room ids and in `resourceType` fields.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Doc => "doc",
            ResourceType::Diagram => "diagram",
            ResourceType::Task => "task",
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResourceType {
    type Err = RoomIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResourceType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(RoomIdError::UnknownPrefix)
    }
}

/// Why a string is not a room id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoomIdError {
    #[error("room id must look like `doc-<id>`, `diagram-<id>` or `task-<id>`")]
    UnknownPrefix,
    #[error("resource id must be 1 to 100 characters of [A-Za-z0-9_-]")]
    BadResourceId,
    #[error("room id is longer than {MAX_ROOM_ID_LEN} bytes")]
    TooLong,
}

/// A parsed room id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomId {
    pub resource_type: ResourceType,
    pub resource_id: String,
}

impl RoomId {
    pub fn new(resource_type: ResourceType, resource_id: impl Into<String>) -> Self {
        RoomId {
            resource_type,
            resource_id: resource_id.into(),
        }
    }

    /// Parses `"{type}-{id}"`; the id may itself contain dashes.
    pub fn parse(s: &str) -> Result<RoomId, RoomIdError> {
        if s.len() > MAX_ROOM_ID_LEN {
            return Err(RoomIdError::TooLong);
        }
        let (prefix, id) = s.split_once('-').ok_or(RoomIdError::UnknownPrefix)?;
        let resource_type = prefix.parse()?;
        if !is_valid_resource_id(id) {
            return Err(RoomIdError::BadResourceId);
        }
        Ok(RoomId::new(resource_type, id))
    }
}

/// Resource ids are opaque, but bounded and URL-safe.
pub fn is_valid_resource_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.resource_type, self.resource_id)
    }
}

impl FromStr for RoomId {
    type Err = RoomIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RoomId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_prefix_and_round_trips() {
        for t in ResourceType::ALL {
            let s = format!("{t}-abc-123");
            let room = RoomId::parse(&s).unwrap();
            assert_eq!(room.resource_type, t);
            assert_eq!(room.resource_id, "abc-123");
            assert_eq!(room.to_string(), s);
        }
    }

    #[test]
    fn rejects_bad_room_ids() {
        assert_eq!(RoomId::parse("chat-1"), Err(RoomIdError::UnknownPrefix));
        assert_eq!(RoomId::parse("doc"), Err(RoomIdError::UnknownPrefix));
        assert_eq!(RoomId::parse("doc-"), Err(RoomIdError::BadResourceId));
        assert_eq!(RoomId::parse("doc-a/b"), Err(RoomIdError::BadResourceId));
        assert_eq!(RoomId::parse("doc-a b"), Err(RoomIdError::BadResourceId));
        let long = format!("doc-{}", "a".repeat(200));
        assert_eq!(RoomId::parse(&long), Err(RoomIdError::TooLong));
    }
}
