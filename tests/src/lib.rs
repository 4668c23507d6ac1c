//! Harness for end-to-end tests: a [`Stack`] is a real control (fresh SQLite
//! file) and a real relay, both on port 0, talking over loopback; tests drive
//! them through `tandem-client` as an application would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use actix_web::dev::ServerHandle;
use tandem_client::api::{ControlApi, Session};
use tandem_client::collab::{CollabClient, ConnectError};
use tandem_control::ControlConfig;
use tandem_protocol::http::{Role, WorkspaceType};
use tandem_protocol::ResourceType;
use tandem_relay::RelayConfig;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-relay-secret";
pub const PASSWORD: &str = "password123";
/// Generous bound for things that happen "at once" on a loaded CI machine.
pub const SOON: Duration = Duration::from_secs(10);

pub struct Stack {
    pub api: ControlApi,
    pub control_url: String,
    pub relay_url: String,
    pub db_path: std::path::PathBuf,
    control: Option<ServerHandle>,
    relay: CancellationToken,
    relay_done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(|_| {}).await
    }

    /// Starts control and a relay configured by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut RelayConfig)) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("tandem.db");
        let mut config = ControlConfig::for_tests(format!("sqlite://{}", db_path.display()));
        config.relay_secret = Some(SECRET.into());
        let control = tandem_control::Application::build(config).await.unwrap();
        let control_url = format!("http://127.0.0.1:{}", control.port());
        let handle = control.handle();
        tokio::spawn(control.run_until_stopped());

        let mut rc = RelayConfig::for_tests(&control_url, SECRET);
        tweak(&mut rc);
        let relay = tandem_relay::Application::build(rc).await.unwrap();
        let relay_url = format!("ws://127.0.0.1:{}", relay.port());
        let stop = relay.shutdown_token();
        let done = tokio::spawn(relay.run_until_stopped());
        Stack {
            api: ControlApi::new(&control_url),
            control_url,
            relay_url,
            db_path,
            control: Some(handle),
            relay: stop,
            relay_done: Some(done),
            _dir: dir,
        }
    }

    /// Stops control (the relay keeps running).
    pub async fn stop_control(&mut self) {
        if let Some(h) = self.control.take() {
            h.stop(false).await;
        }
    }

    /// Shuts the relay down gracefully and waits for it.
    pub async fn stop_relay(&mut self) {
        self.relay.cancel();
        if let Some(done) = self.relay_done.take() {
            done.await.unwrap().unwrap();
        }
    }

    pub async fn user(&self, email: &str, name: &str) -> Session {
        self.api.signup(email, PASSWORD, name).await.unwrap()
    }

    /// A document in `owner`'s team workspace (owner must have a work email).
    pub async fn team_doc(&self, owner: &Session) -> String {
        let ws = self
            .api
            .workspace(owner, WorkspaceType::Team)
            .await
            .unwrap();
        let p = self
            .api
            .create_project(owner, &ws, "Project")
            .await
            .unwrap();
        self.api
            .create_resource(owner, &p.id, ResourceType::Doc, "Doc")
            .await
            .unwrap()
            .id
    }

    /// Shares a document with `user` as `role`.
    pub async fn share(&self, owner: &Session, doc: &str, user: &Session, role: Role) {
        self.api
            .add_member(owner, "documents", doc, &user.user_id, role)
            .await
            .unwrap();
    }

    /// `ws://relay/doc-{id}?token=…` with a fresh token.
    pub async fn url(&self, user: &Session, doc: &str) -> String {
        let t = self
            .api
            .collab_token(user, ResourceType::Doc, doc)
            .await
            .unwrap();
        format!("{}/{}?token={}", self.relay_url, t.room_id, t.token)
    }

    pub async fn connect(&self, user: &Session, doc: &str) -> CollabClient {
        let client = self.try_connect(user, doc).await.unwrap();
        assert!(
            client.wait_status(SOON, |s| s.synced).await.is_some(),
            "client did not sync"
        );
        client
    }

    pub async fn try_connect(
        &self,
        user: &Session,
        doc: &str,
    ) -> Result<CollabClient, ConnectError> {
        CollabClient::connect(&self.url(user, doc).await).await
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.relay.cancel();
        if let Some(h) = self.control.take() {
            tokio::spawn(async move { h.stop(false).await });
        }
    }
}

/// Appends text to the shared `Y.Text` named `t`.
pub fn type_text(client: &CollabClient, s: &str) {
    use yrs::{Text, Transact};
    let doc = client.doc();
    let text = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    let len = text.len(&txn);
    text.insert(&mut txn, len, s);
}

pub fn text_of(client: &CollabClient) -> String {
    use yrs::{GetString, Transact};
    let doc = client.doc();
    let text = doc.get_or_insert_text("t");
    let s = text.get_string(&doc.transact());
    s
}
