//! `tandem dev`: everything on one laptop, no other services. Control runs on
//! an SQLite file under `./data`, in development mode (a random relay secret
//! unless one is given).

use tandem_control::{Application, ControlConfig};

/// Starts control with `config` and serves until Ctrl-C / SIGTERM.
pub async fn run(config: ControlConfig) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    let listen = app.state().config.listen;
    println!("Tandem dev is running:");
    println!("  control  http://{}:{}", listen.ip(), app.port());
    println!("  database {}", app.state().config.database_url);
    println!("Press Ctrl-C to stop.");
    app.run_until_stopped().await?;
    Ok(())
}
