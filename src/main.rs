//! `librechat-operator`: `run` (the controllers; the default), `crds`, `export`, `validate`,
//! and `kubectl`, the kubectl plugin's commands, which also run when the binary is started
//! as `kubectl-librechat` (see `librechat_operator::plugin`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use librechat_operator::api::duration::parse_duration;
use librechat_operator::api::instance::DEFAULT_RESYNC_PERIOD;
use librechat_operator::health::{self, Health, Readiness};
use librechat_operator::plugin::{self, Dispatch};
use librechat_operator::{api, controller, leader, telemetry};

#[derive(Parser)]
#[command(
    name = "librechat-operator",
    version,
    about = "LibreChat accounts, bans and invites as Kubernetes objects"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers (the default).
    Run(RunArgs),
    /// Print every CRD as YAML, or write one file per kind.
    Crds {
        /// Write `<group>_<plural>.yaml` files into this folder instead of printing.
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
    /// Print a LibreChatUser (with `adopt: true`) for every account of an existing LibreChat
    /// database: the way to put a deployment that already has users under management.
    Export {
        /// LibreChat's MONGO_URI (the database is the URI's path, default LibreChat).
        #[arg(long, env = "MONGODB_URI", hide_env_values = true)]
        mongodb_uri: String,
        /// The LibreChatInstance the manifests point at.
        #[arg(long, default_value = "librechat")]
        instance: String,
        /// The namespace of the manifests.
        #[arg(long = "target-namespace", default_value = "librechat")]
        target_namespace: String,
    },
    /// Check manifests offline with the controller's own validation and the rules between the
    /// objects of the set, for a GitOps repository's pre-commit hook and CI. Prints
    /// `file:line: kind/namespace/name: message` per problem; exits 1 on any.
    Validate {
        /// YAML files (several documents allowed) and folders (searched recursively for *.yaml
        /// and *.yml); repeat -f or list several after it.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
    },
    /// The kubectl plugin's commands (`status`, `whois`, `stats`); the same as running this
    /// binary as `kubectl-librechat`. See `librechat-operator kubectl --help`.
    #[command(disable_help_flag = true)]
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Watch only these namespaces, comma-separated (default: all namespaces).
    #[arg(long = "namespace", env = "WATCH_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Run LibreChatInstances only in these namespaces, comma-separated (default: in every
    /// watched namespace). Whoever may create an instance administers it: list the namespaces
    /// of the people who run LibreChat, not the teams'.
    #[arg(
        long = "instance-namespaces",
        env = "INSTANCE_NAMESPACES",
        value_delimiter = ','
    )]
    instance_namespaces: Vec<String>,
    /// Reconciles that may run at once, per kind [default: 8, or twice the passwords the
    /// bcrypt threads hash at once (2 x cores x 4) when that is more, up to 64, so that a
    /// burst of new accounts keeps every core hashing].
    #[arg(long, env = "CONCURRENCY")]
    concurrency: Option<u16>,
    /// Resync period for instances that do not declare one.
    #[arg(long, default_value = DEFAULT_RESYNC_PERIOD, env = "RESYNC_PERIOD")]
    resync_period: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = telemetry::LogFormat::Text, env = "LOG_FORMAT")]
    log_format: telemetry::LogFormat,
    /// Where /metrics, /healthz and /readyz are served; `off` serves nothing.
    #[arg(long, default_value = "0.0.0.0:8080", env = "HTTP_ADDR")]
    http_addr: String,
    /// Elect a leader on a coordination.k8s.io Lease, so that of several replicas one reconciles.
    #[arg(long, env = "LEADER_ELECT")]
    leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "librechat-operator", env = "LEASE_NAME")]
    lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// How long a leader's Lease holds without renewal.
    #[arg(long, default_value = "15s", env = "LEASE_DURATION")]
    lease_duration: String,
    /// The least time between two emails to one address (verification links, invitations).
    #[arg(long, default_value = "60s", env = "MAIL_PACE")]
    mail_pace: String,
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    if plugin::invoked_as_plugin(argv.first()) {
        return run_plugin(argv);
    }
    operator(Cli::parse_from(argv))
}

/// The plugin's commands; `export` and `validate` come back as the operator's own.
fn run_plugin(argv: Vec<OsString>) -> ExitCode {
    match plugin::dispatch(argv) {
        Dispatch::Exit(code) => code,
        Dispatch::Operator(args) => operator(Cli::parse_from(args)),
    }
}

fn operator(cli: Cli) -> ExitCode {
    match cli.command {
        Some(Command::Kubectl { args }) => run_plugin(
            std::iter::once(plugin::PLUGIN_NAME.into())
                .chain(args)
                .collect(),
        ),
        Some(Command::Crds { output_dir }) => crds(output_dir),
        Some(Command::Validate { files }) => validate(&files),
        Some(Command::Export {
            mongodb_uri,
            instance,
            target_namespace,
        }) => export(&mongodb_uri, &instance, &target_namespace),
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

fn crds(output_dir: Option<PathBuf>) -> ExitCode {
    let result = match output_dir {
        None => api::crds_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(|e| e.to_string()),
        Some(dir) => api::crd_files()
            .map_err(|e| e.to_string())
            .and_then(|files| {
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                files.iter().try_for_each(|(name, text)| {
                    std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))
                })
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: could not write the CRDs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    telemetry::init(args.log_format);
    let durations = (
        parse_positive("--resync-period", &args.resync_period),
        parse_lease_duration(&args.lease_duration),
        parse_positive("--mail-pace", &args.mail_pace),
    );
    let (default_resync, lease_duration, mail_pace) = match durations {
        (Ok(r), Ok(l), Ok(m)) => (r, l, m),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let health = Health::default();
        if args.http_addr != "off" {
            if let Err(e) = health::serve(&args.http_addr, health.clone()).await {
                tracing::error!(error = %e, addr = %args.http_addr, "cannot serve /metrics, /healthz, /readyz: choose another --http-addr");
                return ExitCode::FAILURE;
            }
        }
        let clients = match controller::clients::Clients::infer().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot reach Kubernetes: set KUBECONFIG or run in a cluster");
                return ExitCode::FAILURE;
            }
        };
        let settings = controller::Settings {
            default_resync,
            concurrency: args.concurrency.unwrap_or_else(default_concurrency).max(1),
            namespaces: distinct_namespaces(args.namespaces),
            mail_pace,
            instance_namespaces: distinct_namespaces(args.instance_namespaces),
        };
        let metrics = librechat_operator::metrics::global();
        if !args.leader_elect {
            metrics.set_leader(true);
            return run_until_drained(controller::run(clients, settings, health)).await;
        }

        let config = leader::LeaseConfig {
            name: args.lease_name,
            namespace: args.lease_namespace.unwrap_or_else(own_namespace),
            identity: std::env::var("POD_NAME").unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id())),
            duration: lease_duration,
        };
        // A standby learns of missing CRDs or permissions now, not when it first leads.
        if let Err(e) = controller::preflight(&clients.request, &settings).await {
            return finish(Err(e));
        }
        health.set(Readiness::Standby);
        tracing::info!(lease = %config.name, namespace = %config.namespace, identity = %config.identity, "waiting to lead");
        let mut leadership = tokio::select! {
            held = leader::acquire(&clients.request, config) => match held {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::FAILURE;
                }
            },
            _ = shutdown_signal() => return ExitCode::SUCCESS,
        };
        metrics.set_leader(true);
        let outcome = tokio::select! {
            outcome = run_until_drained(controller::run(clients, settings, health)) => outcome,
            _ = leadership.lost() => {
                tracing::error!("lost the Lease: stopping so that only one replica writes");
                ExitCode::from(4)
            }
        };
        metrics.set_leader(false);
        leadership.release().await;
        outcome
    })
}

/// How long reconciles may go on after SIGTERM. Each may run for up to its own deadline (2
/// min), longer than the pod's default grace period (30 s): the kubelet would kill the process
/// before it releases its Lease, and a standby would wait the Lease out. Every reconcile is
/// safe to cut short (what it owes is recorded before it writes), so after this they stop.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(20);

/// Runs the controllers until they stop by themselves (on SIGTERM, once their reconciles
/// finish) or [`DRAIN`] after SIGTERM, whichever comes first.
async fn run_until_drained(
    controllers: impl std::future::Future<Output = Result<(), controller::StartError>>,
) -> ExitCode {
    let drained = async {
        shutdown_signal().await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        result = controllers => finish(result),
        _ = drained => {
            tracing::warn!("reconciles still running {}s after SIGTERM: stopping them (each resumes where it stopped)", DRAIN.as_secs());
            ExitCode::SUCCESS
        }
    }
}

fn finish(result: Result<(), controller::StartError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(3)
        }
    }
}

/// 8, or what keeps the bcrypt threads busy, up to 64 (a pod with no CPU limit on a large
/// node would otherwise run hundreds of reconciles at once against one MongoDB).
fn default_concurrency() -> u16 {
    let hashing = librechat_operator::librechat::password::concurrency_to_keep_hashing();
    u16::try_from(hashing.clamp(8, 64)).unwrap_or(64)
}

fn parse_positive(flag: &str, text: &str) -> Result<std::time::Duration, String> {
    match parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("{flag} must be more than zero")),
        Err(e) => Err(format!("{flag}: {e}")),
    }
}

/// The Lease's duration: whole seconds (the Lease stores seconds, and a standby judges it by
/// them: a fraction dropped there would let it take over before this leader gives up), at
/// least 3 s (renewals every third of it) and at most an hour.
fn parse_lease_duration(text: &str) -> Result<std::time::Duration, String> {
    let flag = "--lease-duration";
    let d = parse_positive(flag, text)?;
    if d.subsec_nanos() != 0 || !(3..=3600).contains(&d.as_secs()) {
        return Err(format!(
            "{flag} must be a whole number of seconds from 3s to 1h, e.g. 15s (got {text})"
        ));
    }
    Ok(d)
}

/// The pod's namespace in a cluster, else `default`.
fn own_namespace() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "default".into())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "librechat-operator".into())
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn export(uri: &str, instance: &str, namespace: &str) -> ExitCode {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("error: cannot start the async runtime");
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let users = match librechat_operator::librechat::connect_mongo(uri.trim()).await {
            Ok((_client, db)) => librechat_operator::librechat::Store::new(db, None)
                .list_users()
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let users = match users {
            Ok(u) => u,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let (manifests, notes) = librechat_operator::export::manifests(&users, instance, namespace);
        for note in notes {
            eprintln!("note: {note}");
        }
        match librechat_operator::export::to_yaml(&manifests) {
            Ok(yaml) => {
                print!("{yaml}");
                eprintln!("exported {} accounts; review, then apply", manifests.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn validate(paths: &[PathBuf]) -> ExitCode {
    match api::offline::validate_paths(paths) {
        Ok((objects, findings)) => {
            for finding in &findings {
                println!("{finding}");
            }
            if findings.is_empty() {
                eprintln!("ok: {objects} objects valid");
                ExitCode::SUCCESS
            } else {
                eprintln!("{} problems in {objects} objects", findings.len());
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The namespaces to watch, each once and none empty: a namespace named twice would get two
/// controllers reconciling its objects side by side.
fn distinct_namespaces(named: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    named
        .into_iter()
        .filter(|n| !n.is_empty() && seen.insert(n.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{distinct_namespaces, parse_lease_duration};

    #[test]
    fn a_lease_is_whole_seconds_between_3s_and_an_hour() {
        assert_eq!(parse_lease_duration("15s").unwrap().as_secs(), 15);
        assert_eq!(parse_lease_duration("1m").unwrap().as_secs(), 60);
        for refused in ["1500ms", "2s", "0s", "2h", "100000d", "15"] {
            assert!(parse_lease_duration(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_namespace_named_twice_is_watched_once() {
        let named = ["team-a", "", "team-b", "team-a"]
            .map(String::from)
            .to_vec();
        assert_eq!(distinct_namespaces(named), ["team-a", "team-b"]);
    }
}
