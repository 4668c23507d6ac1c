//! A small typed client for control's HTTP API: what tests, examples and the
//! load generator need (sign up, create things, share, get collaboration
//! tokens). Errors carry the status and the error body.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tandem_protocol::collab::{TokenRequest, TokenResponse};
use tandem_protocol::http::{
    AddMember, AuthResponse, CreateProject, CreateResource, Member, Project, Resource, Role,
    SessionContext, SignupRequest, UpdateMember, WorkspaceType,
};
use tandem_protocol::{ErrorBody, ResourceType};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("HTTP {status}: {body:?}")]
    Status {
        status: u16,
        body: Option<ErrorBody>,
    },
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            ApiError::Transport(_) => None,
        }
    }
}

#[derive(Clone)]
pub struct ControlApi {
    base: String,
    http: reqwest::Client,
}

/// A signed-in user: their id and session token.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub token: String,
}

fn plural(t: ResourceType) -> &'static str {
    match t {
        ResourceType::Doc => "documents",
        ResourceType::Diagram => "diagrams",
        ResourceType::Task => "tasks",
    }
}

impl ControlApi {
    pub fn new(base: &str) -> ControlApi {
        ControlApi {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ApiError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await?;
        let status = res.status().as_u16();
        if !(200..300).contains(&status) {
            let body = res.json::<ErrorBody>().await.ok();
            return Err(ApiError::Status { status, body });
        }
        if status == 204 {
            // Only `()` (or an Option) can be read from "no content".
            return serde_json::from_str("null")
                .map_err(|_| ApiError::Status { status, body: None });
        }
        Ok(res.json().await?)
    }

    pub async fn signup(
        &self,
        email: &str,
        password: &str,
        name: &str,
    ) -> Result<Session, ApiError> {
        let body = SignupRequest {
            email: email.into(),
            password: password.into(),
            display_name: name.into(),
        };
        let res: AuthResponse = self
            .call(reqwest::Method::POST, "/auth/signup", None, Some(&body))
            .await?;
        Ok(Session {
            user_id: res.user.id,
            token: res.session_token,
        })
    }

    /// Uses an email verification link's token (`POST /auth/verify-email`).
    pub async fn verify_email(&self, token: &str) -> Result<SessionContext, ApiError> {
        let body = tandem_protocol::identity::VerifyEmailRequest {
            token: token.into(),
        };
        self.call(
            reqwest::Method::POST,
            "/auth/verify-email",
            None,
            Some(&body),
        )
        .await
    }

    pub async fn session(&self, s: &Session) -> Result<SessionContext, ApiError> {
        self.call(
            reqwest::Method::GET,
            "/auth/session",
            Some(&s.token),
            None::<&()>,
        )
        .await
    }

    /// The id of the user's workspace of the given type.
    pub async fn workspace(&self, s: &Session, kind: WorkspaceType) -> Result<String, ApiError> {
        let ctx = self.session(s).await?;
        ctx.workspaces
            .into_iter()
            .find(|w| w.kind == kind)
            .map(|w| w.id)
            .ok_or(ApiError::Status {
                status: 404,
                body: None,
            })
    }

    pub async fn create_project(
        &self,
        s: &Session,
        workspace: &str,
        name: &str,
    ) -> Result<Project, ApiError> {
        let body = CreateProject { name: name.into() };
        let path = format!("/workspaces/{workspace}/projects");
        self.call(reqwest::Method::POST, &path, Some(&s.token), Some(&body))
            .await
    }

    /// A new project in the user's workspace of the given type.
    pub async fn project_in(
        &self,
        s: &Session,
        kind: WorkspaceType,
        name: &str,
    ) -> Result<Project, ApiError> {
        let ws = self.workspace(s, kind).await?;
        self.create_project(s, &ws, name).await
    }

    pub async fn create_resource(
        &self,
        s: &Session,
        project: &str,
        t: ResourceType,
        title: &str,
    ) -> Result<Resource, ApiError> {
        let body = CreateResource {
            title: title.into(),
        };
        let path = format!("/projects/{project}/{}", plural(t));
        self.call(reqwest::Method::POST, &path, Some(&s.token), Some(&body))
            .await
    }

    pub async fn delete_resource(
        &self,
        s: &Session,
        t: ResourceType,
        id: &str,
    ) -> Result<(), ApiError> {
        let path = format!("/{}/{id}", plural(t));
        self.call(reqwest::Method::DELETE, &path, Some(&s.token), None::<&()>)
            .await
    }

    /// Grants `role` on a scope: `scope` is `workspaces`, `projects`, `documents` or `diagrams`.
    pub async fn add_member(
        &self,
        s: &Session,
        scope: &str,
        id: &str,
        user_id: &str,
        role: Role,
    ) -> Result<Member, ApiError> {
        let body = AddMember {
            user_id: Some(user_id.into()),
            email: None,
            role,
        };
        let path = format!("/{scope}/{id}/members");
        self.call(reqwest::Method::POST, &path, Some(&s.token), Some(&body))
            .await
    }

    pub async fn set_member_role(
        &self,
        s: &Session,
        scope: &str,
        id: &str,
        user_id: &str,
        role: Role,
    ) -> Result<Member, ApiError> {
        let body = UpdateMember { role };
        let path = format!("/{scope}/{id}/members/{user_id}");
        self.call(reqwest::Method::PATCH, &path, Some(&s.token), Some(&body))
            .await
    }

    pub async fn remove_member(
        &self,
        s: &Session,
        scope: &str,
        id: &str,
        user_id: &str,
    ) -> Result<(), ApiError> {
        let path = format!("/{scope}/{id}/members/{user_id}");
        self.call(reqwest::Method::DELETE, &path, Some(&s.token), None::<&()>)
            .await
    }

    /// A one-time token for the relay.
    pub async fn collab_token(
        &self,
        s: &Session,
        t: ResourceType,
        id: &str,
    ) -> Result<TokenResponse, ApiError> {
        let body = TokenRequest {
            resource_type: t,
            resource_id: id.into(),
        };
        self.call(
            reqwest::Method::POST,
            "/collaboration/token",
            Some(&s.token),
            Some(&body),
        )
        .await
    }
}
