//! Path segments that name a kind of thing: `documents|diagrams|tasks` and
//! `workspaces|projects|documents|diagrams` (for members). The route table
//! constrains them with a pattern, so parsing here cannot fail for a routed
//! request; anything else is a 404 from the router.

use serde::Deserialize;
use tandem_protocol::ResourceType;

use crate::authz::ResourceKind;

/// `documents`, `diagrams` or `tasks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Documents,
    Diagrams,
    Tasks,
}

impl Kind {
    pub fn resource_type(self) -> ResourceType {
        match self {
            Kind::Documents => ResourceType::Doc,
            Kind::Diagrams => ResourceType::Diagram,
            Kind::Tasks => ResourceType::Task,
        }
    }

    pub fn from_type(t: ResourceType) -> Kind {
        match t {
            ResourceType::Doc => Kind::Documents,
            ResourceType::Diagram => Kind::Diagrams,
            ResourceType::Task => Kind::Tasks,
        }
    }

    pub fn authz_kind(self) -> ResourceKind {
        self.resource_type().into()
    }

    /// The `scope_kind` stored with grants on this kind.
    pub fn scope_kind(self) -> &'static str {
        self.resource_type().as_str()
    }

    pub fn noun(self) -> &'static str {
        match self {
            Kind::Documents => "document",
            Kind::Diagrams => "diagram",
            Kind::Tasks => "task",
        }
    }
}

/// A scope that has members: `workspaces`, `projects`, `documents`, `diagrams`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Workspaces,
    Projects,
    Documents,
    Diagrams,
}

impl Scope {
    pub fn noun(self) -> &'static str {
        match self {
            Scope::Workspaces => "workspace",
            Scope::Projects => "project",
            Scope::Documents => "document",
            Scope::Diagrams => "diagram",
        }
    }
}
