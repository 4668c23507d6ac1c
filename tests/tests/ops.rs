//! The relay's ops address (`TANDEM_RELAY_OPS_LISTEN`): health, readiness
//! and metrics on a thread of their own, answered while the node's workers
//! are busy; `/metrics` behind `TANDEM_METRICS_TOKEN` and off the client port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tandem_e2e::{raw_http, Stack, SECRET};
use tandem_relay::{Application, RelayConfig};

/// One HTTP/1.1 request on a fresh connection: the status and the body.
async fn call(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.1\r\nhost: relay\r\n{auth}connection: close\r\n\r\n");
    let answer = raw_http(&format!("127.0.0.1:{port}"), &req).await;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_address_answers_while_the_relays_workers_are_busy() {
    let stack = Stack::start().await;
    let mut config = RelayConfig::for_tests(&stack.control_url, SECRET);
    config.ops_listen = Some("127.0.0.1:0".parse().unwrap());
    config.metrics_token = Some("metrics-token".into());
    // This relay runs on a runtime of one thread, which the test keeps busy
    // on demand, as a storm of upgrades would.
    let (ports_tx, ports_rx) = std::sync::mpsc::channel();
    let (block_tx, mut block_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let relay = Application::build(config).await.unwrap();
            let stop = relay.shutdown_token();
            ports_tx
                .send((relay.port(), relay.ops_port().unwrap(), stop))
                .unwrap();
            tokio::spawn(async move {
                while let Some(busy) = block_rx.recv().await {
                    std::thread::sleep(busy);
                }
            });
            relay.run_until_stopped().await.unwrap();
        });
    });
    let (port, ops, stop) = ports_rx.recv().unwrap();

    // The ops address.
    assert_eq!(call(ops, "GET", "/healthz", None).await.0, 200);
    assert_eq!(call(ops, "GET", "/readyz", None).await.0, 200);
    let (status, body) = call(ops, "GET", "/metrics", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("unauthorized"), "{body}");
    assert_eq!(call(ops, "GET", "/metrics", Some("wrong")).await.0, 401);
    let (status, body) = call(ops, "GET", "/metrics", Some("metrics-token")).await;
    assert_eq!(status, 200);
    assert!(body.contains("tandem_relay_connections"), "{body}");
    assert_eq!(call(ops, "GET", "/doc-abc", None).await.0, 404);
    assert_eq!(call(ops, "POST", "/healthz", None).await.0, 405);
    // The client port: health and readiness stay, metrics moved.
    assert_eq!(call(port, "GET", "/healthz", None).await.0, 200);
    assert_eq!(call(port, "GET", "/readyz", None).await.0, 200);
    let (status, body) = call(port, "GET", "/metrics", Some("metrics-token")).await;
    assert_eq!(status, 404, "{body}");

    // The relay's only worker busy for 1.5 s: the ops address still answers
    // at once; the client port answers when the worker is free again.
    block_tx.send(Duration::from_millis(1500)).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    let health = call(ops, "GET", "/healthz", None).await.0;
    let ready = call(ops, "GET", "/readyz", None).await.0;
    let ops_took = t.elapsed();
    let t = Instant::now();
    let client_port = call(port, "GET", "/healthz", None).await.0;
    let client_port_took = t.elapsed();
    eprintln!("while busy: ops address {ops_took:?}, client port {client_port_took:?}");
    assert_eq!((health, ready, client_port), (200, 200, 200));
    assert!(
        ops_took < Duration::from_millis(750),
        "the ops address took {ops_took:?} while the workers were busy"
    );
    assert!(
        client_port_took > Duration::from_millis(500),
        "the worker was not kept busy ({client_port_took:?}): the test proves nothing"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_probes_ask_control_at_most_once_a_second() {
    let stack = Stack::start().await;
    let port: u16 = stack.relay_url.rsplit(':').next().unwrap().parse().unwrap();
    let before = stack.control_requests("/readyz").await;
    // 50 probes at once on the public client port: one question to control.
    let probes = (0..50).map(|_| call(port, "GET", "/readyz", None));
    let answers = futures_util::future::join_all(probes).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    let asked = stack.control_requests("/readyz").await - before;
    assert!(
        (1..=2).contains(&asked),
        "50 probes asked control {asked} times"
    );
    // A second later the answer is asked afresh (control going down would show).
    tokio::time::sleep(tandem_relay::transport::ops::READY_TTL + Duration::from_millis(100)).await;
    assert_eq!(call(port, "GET", "/readyz", None).await.0, 200);
    assert_eq!(stack.control_requests("/readyz").await - before, asked + 1);
}
