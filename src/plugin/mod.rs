//! `kubectl librechat`: the operator's binary run as a kubectl plugin. Installed (or
//! symlinked) as `kubectl-librechat` on the PATH, kubectl runs it for `kubectl librechat …`;
//! the operator's binary also offers the same commands as `librechat-operator kubectl …`.
//!
//! The plugin only reads: the cluster with the caller's own credentials, and, for `whois` and
//! `stats`, LibreChat's MongoDB through the URI Secret the instance references (the caller
//! must be allowed to read it). Nothing it prints repeats a Secret's value.

pub mod cluster;
pub mod error;
pub mod reach;
pub mod stats;
pub mod status;
pub mod table;
pub mod usage;
pub mod whois;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use cluster::{Cluster, Connection};
use error::PluginError;
use reach::Reach;

/// The name kubectl finds the plugin by.
pub const PLUGIN_NAME: &str = "kubectl-librechat";
/// How the plugin names itself in usage and help.
pub const DISPLAY_NAME: &str = "kubectl librechat";

/// Whether the binary was started under the plugin's name (argv[0]'s file name).
pub fn invoked_as_plugin(argv0: Option<&OsString>) -> bool {
    argv0
        .and_then(|a| std::path::Path::new(a).file_stem())
        .is_some_and(|stem| stem == PLUGIN_NAME)
}

#[derive(Parser, Debug)]
#[command(
    name = DISPLAY_NAME,
    bin_name = DISPLAY_NAME,
    version,
    about = "Inspect the LibreChat accounts, bans and invites that librechat-operator manages"
)]
pub struct PluginCli {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Reachability, counts, the objects pointing at an instance by Ready reason, blocked
    /// deletions and recent Warning events.
    Status {
        /// The LibreChatInstance (default: every instance in the namespace).
        instance: Option<String>,
        /// Every instance in every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// How many recent Warning events to show per instance (0: none).
        #[arg(long, default_value_t = 10, value_name = "N")]
        events: usize,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Which object owns the LibreChat account of EMAIL, from the operator's ownership record
    /// in MongoDB (needs `get` on the instance's MongoDB URI Secret).
    Whois {
        /// The account's email (matched trimmed and lower-cased, as stored).
        email: String,
        /// The LibreChatInstance (default: the only one in the namespace).
        instance: Option<String>,
        #[command(flatten)]
        reach: Reach,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// The instance's counts read now from MongoDB; with --per-user, conversations and
    /// messages per account as LibreChat's `user-stats` lists them (needs `get` on the
    /// instance's MongoDB URI Secret).
    Stats {
        /// One line per account: email, name, conversations, messages.
        #[arg(long)]
        per_user: bool,
        /// The LibreChatInstance (default: the only one in the namespace).
        instance: Option<String>,
        #[command(flatten)]
        reach: Reach,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// LibreChatUser manifests for every account of an existing database (the operator's
    /// `export`; see `kubectl librechat export --help`).
    #[command(disable_help_flag = true)]
    Export {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Check manifests offline (the operator's `validate`; see `kubectl librechat validate
    /// --help`).
    #[command(disable_help_flag = true)]
    Validate {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned text.
    #[default]
    Text,
    /// JSON.
    Json,
}

/// What the caller does next.
#[derive(Debug)]
pub enum Dispatch {
    /// The plugin ran; exit with this code.
    Exit(ExitCode),
    /// An operator command (`export`, `validate`): parse these arguments (argv[0] first) as
    /// the operator's own command line.
    Operator(Vec<OsString>),
}

/// Runs the plugin on `args` (argv[0] first, whatever it is).
pub fn dispatch(args: Vec<OsString>) -> Dispatch {
    // `export` and `validate` belong to the operator's command line; hand them over whole,
    // `--help` included, named as the plugin.
    if let Some(first) = args.get(1).and_then(|a| a.to_str()) {
        if first == "export" || first == "validate" {
            return Dispatch::Operator(
                std::iter::once(OsString::from(DISPLAY_NAME))
                    .chain(args.into_iter().skip(1))
                    .collect(),
            );
        }
    }
    let cli = match PluginCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return Dispatch::Exit(if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            });
        }
    };
    let forwarded = |sub: &str, rest: Vec<OsString>| {
        Dispatch::Operator(
            [OsString::from(DISPLAY_NAME), OsString::from(sub)]
                .into_iter()
                .chain(rest)
                .collect(),
        )
    };
    match cli.command {
        PluginCommand::Export { args } => forwarded("export", args),
        PluginCommand::Validate { args } => forwarded("validate", args),
        command => Dispatch::Exit(run(cli.connection, command)),
    }
}

fn run(connection: Connection, command: PluginCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(connection, command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(connection: Connection, command: PluginCommand) -> Result<ExitCode, PluginError> {
    let cluster = Cluster::connect(&connection).await?;
    match command {
        PluginCommand::Status {
            instance,
            all_namespaces,
            events,
            output,
        } => {
            let selection = status::Selection {
                all_namespaces,
                instance,
                events,
            };
            let reports = status::gather(&cluster, &selection).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
                Output::Text if reports.is_empty() => {
                    let where_ = if all_namespaces {
                        "any namespace".to_string()
                    } else {
                        format!("namespace '{}'", cluster.namespace)
                    };
                    eprintln!("No LibreChatInstance found in {where_}.");
                }
                Output::Text => {
                    print!("{}", status::render_text(&reports, jiff::Timestamp::now()))
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Whois {
            email,
            instance,
            reach,
            output,
        } => {
            let report = whois::gather(&cluster, instance.as_deref(), &email, &reach).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Text => print!("{}", whois::render_text(&report)),
            }
            Ok(if report.found() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PluginCommand::Stats {
            per_user,
            instance,
            reach,
            output,
        } => {
            let report = stats::gather(&cluster, instance.as_deref(), per_user, &reach).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Text => print!("{}", stats::render_text(&report)),
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Export { .. } | PluginCommand::Validate { .. } => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn the_plugin_is_recognised_by_its_file_name() {
        let is = |a: &str| invoked_as_plugin(Some(&OsString::from(a)));
        assert!(is("/home/me/.local/bin/kubectl-librechat"));
        assert!(is("kubectl-librechat"));
        assert!(!is("/usr/bin/librechat-operator"));
        assert!(!is("kubectl-librechat-other"));
        assert!(!invoked_as_plugin(None));
    }

    #[test]
    fn export_and_validate_go_to_the_operator_whole() {
        match dispatch(args("kubectl-librechat validate -f x.yaml --help")) {
            Dispatch::Operator(a) => assert_eq!(
                a,
                args("_ validate -f x.yaml --help")
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| if i == 0 { DISPLAY_NAME.into() } else { s })
                    .collect::<Vec<_>>()
            ),
            other => panic!("{other:?}"),
        }
        match dispatch(args("kubectl-librechat --context c export --instance lc")) {
            Dispatch::Operator(a) => {
                assert_eq!(a[1], "export");
                assert_eq!(a[2..], args("--instance lc")[..]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_read_like_kubectl() {
        let cli = PluginCli::try_parse_from(args(
            "kubectl-librechat status -A -o json --kubeconfig /k -n team",
        ))
        .unwrap();
        assert_eq!(cli.connection.namespace.as_deref(), Some("team"));
        assert_eq!(
            cli.connection.kubeconfig.as_deref(),
            Some(std::path::Path::new("/k"))
        );
        match cli.command {
            PluginCommand::Status {
                all_namespaces,
                output,
                ..
            } => assert!(all_namespaces && output == Output::Json),
            other => panic!("{other:?}"),
        }
        let cli = PluginCli::try_parse_from(args("kubectl-librechat stats --per-user lc")).unwrap();
        assert!(matches!(
            cli.command,
            PluginCommand::Stats { per_user: true, instance: Some(ref i), .. } if i == "lc"
        ));
    }
}
