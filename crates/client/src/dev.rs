//! `tandem dev`: everything on one laptop, no other services. Control runs on
//! an SQLite file under `./data` in development mode (a random relay secret
//! unless one is given); the relay runs in the same process and talks to it
//! over loopback like any other relay.
//!
//! Without SMTP, emails are printed to the console (`verify ada@x.com:
//! http://…/verify-email?token=…`), and links point at control itself unless
//! `--public-url` / `TANDEM_PUBLIC_URL` says otherwise, so a newcomer can
//! click through signup without a mail server.

use std::net::SocketAddr;

use clap::Parser;
use tandem_control::ControlConfig;
use tandem_relay::RelayConfig;

/// Browser origins `tandem dev` allows unless `TANDEM_CORS_ORIGINS` is set.
pub const DEV_CORS_ORIGINS: &str = "http://localhost:*,http://127.0.0.1:*";

/// Starts control and relay and serves until Ctrl-C / SIGTERM.
pub async fn run(
    mut control: ControlConfig,
    relay_listen: SocketAddr,
    recheck_secs: u64,
) -> anyhow::Result<()> {
    // On Ctrl-C/SIGTERM the relay stops first (closing sockets and saving its
    // rooms to control); control stops after it.
    control.handle_signals = false;
    if !public_url_given() {
        // Empty: control fills in its own address once it is listening.
        control.public_url = String::new();
    }
    // A web app on a dev server (any localhost port) may call control.
    if control.cors_origins.is_none() {
        control.cors_origins = Some(DEV_CORS_ORIGINS.into());
    }
    control.serve_demo = true;
    // Webhooks to a receiver on this machine (localhost) are the point of
    // trying them out here.
    control.webhook_allow_private = true;
    if control.settings_key.is_none() {
        control.settings_key = Some(dev_settings_key(&control.database_url)?);
    }
    let control_app = tandem_control::Application::build(control).await?;
    let state = control_app.state();
    let control_url = format!("http://{}:{}", state.config.listen.ip(), control_app.port());

    // Relay settings: defaults and TANDEM_* environment, then what dev decides.
    let mut relay = RelayConfig::parse_from(["tandem-relay"]);
    relay.listen = relay_listen;
    relay.recheck_secs = recheck_secs;
    relay.control_url = control_url.clone();
    relay.relay_secret = Some(state.relay_secret().to_string());
    // Browsers on this machine only, unless TANDEM_CORS_ORIGINS says otherwise.
    if relay.cors_origins.is_none() {
        relay.cors_origins = Some(DEV_CORS_ORIGINS.to_string());
    }
    let relay_app = tandem_relay::Application::build(relay).await?;
    let relay_url = format!("ws://{}:{}", relay_listen.ip(), relay_app.port());
    // The demo page connects here unless TANDEM_PUBLIC_RELAY_URL said otherwise
    // (listening on every interface: the page's own host name, this port).
    let for_pages = if relay_listen.ip().is_unspecified() {
        format!(":{}", relay_app.port())
    } else {
        relay_url.clone()
    };
    let _ = state.public_relay_url.set(for_pages);

    println!("Tandem dev is running:");
    println!("  control  {control_url}");
    println!("  relay    {relay_url}");
    println!("  database {}", state.config.database_url);
    println!("  links    {}", state.config.public_url);
    if state.config.smtp_url.is_none() {
        println!("Emails are printed here (no TANDEM_SMTP_URL), e.g. `verify EMAIL: LINK`.");
    }
    println!("  demo app {control_url}/");
    println!("Press Ctrl-C to stop.");
    let control_stop = control_app.shutdown_token();
    let relay_stop = relay_app.shutdown_token();
    let (c, r) = tokio::join!(
        async {
            let res = control_app.run_until_stopped().await;
            relay_stop.cancel();
            res
        },
        async {
            let res = relay_app.run_until_stopped().await;
            control_stop.cancel();
            res
        }
    );
    c?;
    r
}

/// Whether the person running `tandem dev` chose the public URL.
fn public_url_given() -> bool {
    std::env::var_os("TANDEM_PUBLIC_URL").is_some()
        || std::env::args().any(|a| a == "--public-url" || a.starts_with("--public-url="))
}

/// The settings key of a dev setup: kept beside the SQLite file (created on
/// first run, readable by its owner only), so stored API keys survive restarts.
fn dev_settings_key(database_url: &str) -> anyhow::Result<String> {
    let dir = database_url
        .strip_prefix("sqlite://")
        .and_then(|p| std::path::Path::new(p).parent().map(|d| d.to_path_buf()))
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| std::path::PathBuf::from("data"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("settings.key");
    if let Ok(key) = std::fs::read_to_string(&path) {
        return Ok(key.trim().to_string());
    }
    let key = tandem_control::crypto::new_settings_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&path)?, key.as_bytes())?;
    println!("  settings key created in {}", path.display());
    Ok(key)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dev_origins_are_the_local_dev_servers() {
        let list = tandem_protocol::origin::OriginList::parse(super::DEV_CORS_ORIGINS).unwrap();
        assert!(list.allows("http://localhost:5173"));
        assert!(list.allows("http://127.0.0.1:3000"));
        assert!(!list.allows("http://example.com:3000"));
    }
}
