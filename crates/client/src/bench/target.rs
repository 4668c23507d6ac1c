//! The servers the generator can drive, and how a client gets into a room on
//! each: Tandem (a document per room, a one-time token per connection from
//! control), y-websocket and y-sweet (the room is in the URL, no auth), and
//! Hocuspocus (one URL, the room named in every message).

use std::sync::Arc;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use tandem_protocol::http::WorkspaceType;
use tandem_protocol::ResourceType;

use super::wire::Framing;
use crate::api::{ControlApi, Session};

/// Concurrent HTTP calls to control while preparing (documents, tokens).
const SETUP_CONCURRENCY: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Tandem's relay, with tokens from control.
    Tandem,
    /// `@y/websocket-server` (room in the path).
    YWebsocket,
    /// `@hocuspocus/server` (room in every message).
    Hocuspocus,
    /// y-sweet without an auth key (`/d/{doc}/ws/{doc}`).
    YSweet,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Tandem => "tandem",
            Kind::YWebsocket => "y-websocket",
            Kind::Hocuspocus => "hocuspocus",
            Kind::YSweet => "y-sweet",
        }
    }
}

pub enum Target {
    Tandem {
        api: ControlApi,
        relay: String,
        session: Session,
    },
    Peer {
        kind: Kind,
        base: String,
    },
}

/// A room the scenario uses: its name on the server.
#[derive(Debug, Clone)]
pub struct RoomRef {
    /// Tandem: the document id; peers: the room name.
    pub name: String,
}

impl Target {
    /// Connects to the server; for Tandem signs up a fresh bench user.
    pub async fn open(kind: Kind, url: &str, control: Option<&str>) -> anyhow::Result<Target> {
        let base = url.trim_end_matches('/').to_string();
        if kind != Kind::Tandem {
            return Ok(Target::Peer { kind, base });
        }
        let control = control.ok_or_else(|| anyhow::anyhow!("--control is required for tandem"))?;
        let api = ControlApi::new(control);
        let email = format!("bench-{}@bench.tandem.dev", run_id());
        let session = api
            .signup(&email, "bench-password-1", "Bench")
            .await
            .map_err(|e| anyhow::anyhow!("signup at control: {e}"))?;
        Ok(Target::Tandem {
            api,
            relay: base,
            session,
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Target::Tandem { .. } => Kind::Tandem,
            Target::Peer { kind, .. } => *kind,
        }
    }

    /// Creates `n` rooms (documents at control for Tandem; names for peers).
    pub async fn rooms(&self, n: usize, tag: &str) -> anyhow::Result<Vec<RoomRef>> {
        let Target::Tandem { api, session, .. } = self else {
            let run = run_id();
            let rooms: Vec<RoomRef> = (0..n)
                .map(|i| RoomRef {
                    name: format!("bench-{tag}-{run}-{i}"),
                })
                .collect();
            if let Target::Peer {
                kind: Kind::YSweet,
                base,
            } = self
            {
                ysweet_create(base, &rooms).await?;
            }
            return Ok(rooms);
        };
        let project = api
            .project_in(session, WorkspaceType::Personal, tag)
            .await
            .map_err(|e| anyhow::anyhow!("project: {e}"))?;
        let project = Arc::new(project.id);
        stream::iter(0..n)
            .map(|i| {
                let project = project.clone();
                async move {
                    let doc = api
                        .create_resource(
                            session,
                            &project,
                            ResourceType::Doc,
                            &format!("{tag} {i}"),
                        )
                        .await
                        .map_err(|e| anyhow::anyhow!("document: {e}"))?;
                    Ok::<_, anyhow::Error>(RoomRef { name: doc.id })
                }
            })
            .buffered(SETUP_CONCURRENCY)
            .try_collect()
            .await
    }

    /// How messages are framed in `room`.
    pub fn framing(&self, room: &RoomRef) -> Framing {
        match self {
            Target::Peer {
                kind: Kind::Hocuspocus,
                ..
            } => Framing::Hocuspocus {
                doc: room.name.clone(),
            },
            _ => Framing::Plain,
        }
    }

    /// A URL for one connection to `room` (for Tandem with a fresh token).
    pub async fn url(&self, room: &RoomRef) -> anyhow::Result<String> {
        match self {
            Target::Tandem {
                api,
                relay,
                session,
            } => {
                let t = api
                    .collab_token(session, ResourceType::Doc, &room.name)
                    .await
                    .map_err(|e| anyhow::anyhow!("token: {e}"))?;
                Ok(format!("{relay}/{}?token={}", t.room_id, t.token))
            }
            Target::Peer { kind, base } => Ok(match kind {
                Kind::YSweet => format!("{base}/d/{0}/ws/{0}", room.name),
                Kind::Hocuspocus => format!("{base}/"),
                _ => format!("{base}/{}", room.name),
            }),
        }
    }

    /// URLs for many connections, in order (tokens fetched concurrently).
    pub async fn urls(&self, rooms: &[&RoomRef]) -> anyhow::Result<Vec<String>> {
        stream::iter(rooms.iter().copied())
            .map(|r| self.url(r))
            .buffered(SETUP_CONCURRENCY)
            .try_collect()
            .await
    }
}

/// y-sweet creates documents through its HTTP API (`POST /doc/new`) before
/// clients connect; connecting first races two creations of the same document.
async fn ysweet_create(base: &str, rooms: &[RoomRef]) -> anyhow::Result<()> {
    let http_base = base.replacen("ws://", "http://", 1);
    let http = reqwest::Client::new();
    stream::iter(rooms)
        .map(|room| {
            let (http, url) = (&http, format!("{http_base}/doc/new"));
            async move {
                let res = http
                    .post(url)
                    .json(&serde_json::json!({ "docId": room.name }))
                    .send()
                    .await?;
                anyhow::ensure!(
                    res.status().is_success(),
                    "y-sweet /doc/new: {}",
                    res.status()
                );
                Ok(())
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// A tag unique to this process, so runs against a long-lived server never share rooms.
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", nanos, std::process::id())
}
