//! Logging: `RUST_LOG` filters, `--log-format json` for log pipelines.

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The filter without `RUST_LOG`. kube's client logs every failed request at ERROR, which the
/// operator reports itself with the object and what to do (a WARN per failed reconcile or
/// watch): during an API server restart that target alone wrote tens of thousands of lines a
/// minute, so it is off unless asked for.
pub const DEFAULT_FILTER: &str = "info,kube=warn,kube_client::client::builder=off";

pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_filter_parses_and_silences_only_kubes_request_log() {
        let filter = tracing_subscriber::EnvFilter::try_new(super::DEFAULT_FILTER).unwrap();
        let text = filter.to_string();
        assert!(text.contains("kube_client::client::builder=off"), "{text}");
        assert!(text.contains("kube=warn"), "{text}");
    }
}
