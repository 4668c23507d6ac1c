//! `scripts/cluster`, the native twin of docker-compose.yml: clients that
//! only know the load balancer's address land on different relay nodes and
//! still edit one document together.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem_client::api::ControlApi;
use tandem_client::collab::CollabClient;
use tandem_e2e::{binary, postgres_database, text_of, type_text, PASSWORD, SOON};
use tandem_protocol::http::WorkspaceType;
use tandem_protocol::ResourceType;

struct Cluster(Child);

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGTERM: the script stops what it started.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn installed(cmd: &str) -> bool {
    Command::new("sh")
        .args([
            "-c",
            &format!("command -v {cmd} || test -x /usr/sbin/{cmd}"),
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn state(path: &std::path::Path) -> Option<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect(),
    )
}

async fn connections(node: &str) -> u64 {
    let port = node.rsplit(':').next().unwrap();
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix("tandem_relay_connections "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_the_load_balancer_share_a_document() {
    let required = std::env::var("TANDEM_TEST_REQUIRE_REDIS").is_ok();
    if !(installed("redis-server") && installed("nginx")) {
        assert!(!required, "scripts/cluster needs redis-server and nginx");
        eprintln!("skipping: redis-server or nginx is not installed");
        return;
    }
    let Some(database) = postgres_database() else {
        eprintln!("skipping: no PostgreSQL (TANDEM_TEST_POSTGRES_URL)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("cluster.env");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster");
    let bin_dir = binary("tandem-relay").parent().unwrap().to_path_buf();
    let child = Command::new(script)
        .env("TANDEM_CLUSTER_STATE", &state_file)
        .env("TANDEM_CLUSTER_BIN", &bin_dir)
        .env("TANDEM_CLUSTER_CONTROLS", "2")
        .env("TANDEM_CLUSTER_RELAYS", "2")
        .env("TANDEM_DATABASE_URL", &database)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _cluster = Cluster(child);
    let started = Instant::now();
    let vars = loop {
        if let Some(v) = state(&state_file) {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "scripts/cluster did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Through the balanced control and the balanced relays only.
    let api = ControlApi::new(&vars["CONTROL_URL"]);
    let owner = api.signup("owner@lb.dev", PASSWORD, "Owner").await.unwrap();
    let project = api
        .project_in(&owner, WorkspaceType::Personal, "P")
        .await
        .unwrap();
    let doc = api
        .create_resource(&owner, &project.id, ResourceType::Doc, "Doc")
        .await
        .unwrap()
        .id;
    let mut clients = Vec::new();
    for _ in 0..4 {
        let t = api
            .collab_token(&owner, ResourceType::Doc, &doc)
            .await
            .unwrap();
        let url = format!("{}/{}?token={}", vars["RELAY_URL"], t.room_id, t.token);
        let c = CollabClient::connect(&url).await.unwrap();
        assert!(c.wait_status(SOON, |s| s.synced).await.is_some());
        clients.push(c);
    }
    let nodes: Vec<&str> = vars["RELAY_NODES"].split(' ').collect();
    assert_eq!(nodes.len(), 2);
    for node in &nodes {
        assert!(
            connections(node).await >= 1,
            "the balancer sent no client to {node}"
        );
    }
    for (i, c) in clients.iter().enumerate() {
        type_text(c, &format!("<{i}>"));
    }
    for c in &clients {
        assert!(
            c.wait_doc(SOON, |_| (0..4)
                .all(|i| text_of(c).contains(&format!("<{i}>"))))
                .await,
            "a client has {}",
            text_of(c)
        );
    }
}
