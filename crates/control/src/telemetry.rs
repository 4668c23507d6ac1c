//! Logging setup shared by the binaries: `RUST_LOG`-style filter (default
//! `info`), text or JSON lines on stderr. The filter can be replaced while
//! running ([`set_filter`]: SIGHUP and `POST /admin/config/reload`).

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// Swaps the filter of a subscriber built with [`filter_layer`].
pub type FilterHandle = reload::Handle<EnvFilter, Registry>;

/// The handle of the global subscriber's filter, once [`init`] installed it.
static FILTER: OnceLock<FilterHandle> = OnceLock::new();

/// The filter at startup: `RUST_LOG`, else `info`.
pub fn initial_filter() -> String {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|f| EnvFilter::try_new(f).is_ok())
        .unwrap_or_else(|| "info".to_string())
}

/// Parses a filter (`RUST_LOG` syntax), with a message for people.
pub fn parse_filter(filter: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(filter).map_err(|e| format!("invalid log filter: {e}"))
}

/// A reloadable filter layer and its handle.
pub fn filter_layer(filter: EnvFilter) -> (reload::Layer<EnvFilter, Registry>, FilterHandle) {
    reload::Layer::new(filter)
}

/// Installs the global subscriber; a second call is a no-op.
pub fn init(format: &str) {
    let filter = parse_filter(&initial_filter()).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = filter_layer(filter);
    let output = if format.eq_ignore_ascii_case("json") {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    };
    if Registry::default()
        .with(filter)
        .with(output)
        .try_init()
        .is_ok()
    {
        let _ = FILTER.set(handle);
    }
}

/// Replaces the global filter (when [`init`] installed the subscriber; an
/// embedding program with its own subscriber keeps its filter).
pub fn set_filter(filter: &str) -> Result<(), String> {
    let parsed = parse_filter(filter)?;
    match FILTER.get() {
        Some(handle) => reload_with(handle, parsed),
        None => Ok(()),
    }
}

/// Replaces the filter behind `handle`.
pub fn reload_with(handle: &FilterHandle, filter: EnvFilter) -> Result<(), String> {
    handle
        .reload(filter)
        .map_err(|e| format!("cannot replace the log filter: {e}"))
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Registry;

    use super::{filter_layer, parse_filter, reload_with};

    #[test]
    fn the_filter_changes_while_running() {
        let (layer, handle) = filter_layer(parse_filter("warn").unwrap_or_default());
        let subscriber = Registry::default().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            assert!(!tracing::enabled!(tracing::Level::DEBUG));
            assert!(tracing::enabled!(tracing::Level::WARN));
            let debug = parse_filter("debug").unwrap_or_default();
            assert!(reload_with(&handle, debug).is_ok());
            assert!(tracing::enabled!(tracing::Level::DEBUG));
        });
        assert!(parse_filter("tandem_control=nonsense").is_err());
    }
}
