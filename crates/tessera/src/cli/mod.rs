//! The command line: `serve`, `migrate`, `check`, `config`. Each command returns an exit code;
//! errors are printed as one clear message, never a backtrace.

mod audit;
mod check;
mod clients;
mod flags;
mod keys;
mod migrate;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::Application;
use crate::config::{self, Config};
use crate::telemetry;

/// Exit code for an invalid configuration (and for usage errors, as clap does).
pub const EXIT_CONFIG: u8 = 2;

/// Tessera: identity, sessions, tokens, permissions, flags and real-time events for a platform.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about, propagate_version = true)]
pub struct Cli {
    /// Config file (TOML). Without it, ./tessera.toml is read when present.
    #[arg(long, global = true, env = "TESSERA_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (migrates the database first unless configured not to).
    Serve,
    /// Apply, roll back or list database migrations.
    Migrate {
        /// Which way.
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Preflight: config valid, database reachable, schema current. Non-zero exit on failure.
    Check {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List or rotate the keys that sign access tokens.
    Keys {
        /// What to do.
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Operator tasks on accounts.
    Users {
        /// What to do.
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Operator tasks on service accounts (OAuth clients).
    Clients {
        /// What to do.
        #[command(subcommand)]
        action: ClientsAction,
    },
    /// The audit log: verify its chain, export it.
    Audit {
        /// What to do.
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Feature flags: what is declared and stored, and where each value comes from.
    Flags {
        /// What to do.
        #[command(subcommand)]
        action: FlagsAction,
    },
    /// Generated configuration documentation and the effective configuration.
    Config {
        /// Which document.
        #[command(subcommand)]
        action: ConfigAction,
    },
}

/// `tessera migrate …`
#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Roll back the most recent migrations.
    Down {
        /// How many to roll back.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

/// `tessera users …`
#[derive(Debug, Subcommand)]
pub enum UsersAction {
    /// Create an account (role `user` unless --role is given).
    Create {
        /// Email address (unique per tenant, case-insensitive).
        #[arg(long)]
        email: String,
        /// Tenant slug (default: the default tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Login name.
        #[arg(long)]
        username: Option<String>,
        /// Given name.
        #[arg(long)]
        first_name: Option<String>,
        /// Family name.
        #[arg(long)]
        last_name: Option<String>,
        /// Role to grant; repeat for several.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Read the password from the first line of standard input (otherwise one is
        /// generated and printed).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable an account: it can no longer log in.
    Disable {
        /// The account's email.
        email: String,
        /// Tenant slug (default: the default tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Set a new password (generated and printed unless --password-stdin).
    ResetPassword {
        /// The account's email.
        email: String,
        /// Tenant slug (default: the default tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Import accounts from JSON lines: `{"email", "username"?, "first_name"?, "last_name"?,
    /// "roles"?, and "password" or "password_hash" (Argon2, PBKDF2-SHA256 PHC or Django,
    /// bcrypt)}`. All lines or none.
    Import {
        /// File to read, or `-` for standard input.
        file: String,
        /// Tenant slug (default: the default tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// `tessera flags …`
#[derive(Debug, Subcommand)]
pub enum FlagsAction {
    /// Every flag with its type, default, visibility and the source of its value.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `tessera audit …`
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Checks every sealed event's link; exits non-zero naming the first broken one.
    Verify {
        /// A chain tip recorded earlier (`SEQ:HASH`, as the server logs it after sealing):
        /// the chain must still hold it, so removing or rewriting its end is found too.
        #[arg(long, value_name = "SEQ:HASH")]
        tip: Option<String>,
    },
    /// Writes events as JSON lines to stdout, oldest first.
    Export {
        /// Only this tenant's events (its id).
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// `tessera clients …`
#[derive(Debug, Subcommand)]
pub enum ClientsAction {
    /// Create a service account; prints its client_id and secret (shown only this once).
    Create {
        /// What the client is, for people.
        #[arg(long)]
        name: String,
        /// Tenant slug (default: the default tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// A scope its tokens may carry (`resource:action`); repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// Replace a client's secret (the old one stops working at once); prints the new one.
    RotateSecret {
        /// The client_id.
        client_id: String,
    },
    /// Disable a client: it obtains no more tokens.
    Disable {
        /// The client_id.
        client_id: String,
    },
}

/// `tessera keys …`
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Every signing key with its state (pending, active, retired, expired).
    List,
    /// Create a new signing key: published at once, signing after the rotation delay.
    Rotate {
        /// Seconds before the new key signs (default: token.rotation_delay_secs).
        #[arg(long, value_name = "SECS")]
        delay: Option<u64>,
        /// Key algorithm (default: token.algorithm).
        #[arg(long, value_enum)]
        algorithm: Option<KeyAlgorithm>,
    },
}

/// Algorithms `keys rotate` can generate.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KeyAlgorithm {
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDsa,
    /// ECDSA P-256.
    #[value(name = "ES256")]
    Es256,
}

impl From<KeyAlgorithm> for config::SigningAlgorithm {
    fn from(value: KeyAlgorithm) -> Self {
        match value {
            KeyAlgorithm::EdDsa => Self::EdDSA,
            KeyAlgorithm::Es256 => Self::ES256,
        }
    }
}

/// `tessera config …`
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// A complete commented tessera.toml with every key and its default.
    Example,
    /// Every TESSERA_* environment variable with type, default and meaning: a Markdown table,
    /// or a commented `.env.example` (`--format dotenv`).
    Env {
        /// `markdown` (a table) or `dotenv` (a commented `.env.example`).
        #[arg(long, value_enum, default_value_t = EnvFormat::Markdown)]
        format: EnvFormat,
    },
    /// The effective configuration, secrets redacted.
    Show,
}

/// How `tessera config env` writes the variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnvFormat {
    /// A Markdown table.
    Markdown,
    /// A commented `.env.example`.
    Dotenv,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Config {
            action: ConfigAction::Example,
        } => {
            print!("{}", config::example_toml());
            ExitCode::SUCCESS
        }
        Command::Config {
            action: ConfigAction::Env { format },
        } => {
            match format {
                EnvFormat::Markdown => print!("{}", config::env_table()),
                EnvFormat::Dotenv => print!("{}", config::env_dotenv()),
            }
            ExitCode::SUCCESS
        }
        Command::Check { json } => check::run(cli.config.as_deref(), json).await,
        command => {
            let config = match load(cli.config.as_deref()) {
                Ok(config) => config,
                Err(code) => return code,
            };
            telemetry::init(&config.log);
            let outcome = match command {
                Command::Serve => serve(config).await,
                Command::Migrate { action } => migrate::run(&config, action).await,
                Command::Keys { action } => keys::run(&config, action).await,
                Command::Users { action } => users::run(&config, action).await,
                Command::Clients { action } => clients::run(&config, action).await,
                Command::Audit { action } => audit::run(&config, action).await,
                Command::Flags { action } => flags::run(&config, action).await,
                Command::Config { .. } => {
                    print!("{}", config::show_toml(&config));
                    print!("{}", crate::flags::set::show_declared(&config));
                    Ok(())
                }
                Command::Check { .. } => unreachable!("handled above"),
            };
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Loads the config or prints every problem and returns the exit code.
/// The configuration, with its declared flags checked too (the flags capability owns their
/// rules), every problem listed at once.
fn checked_config(path: Option<&std::path::Path>) -> Result<Config, config::ConfigError> {
    let config = config::load(path)?;
    match crate::flags::Declared::from_config(&config) {
        Ok(_) => Ok(config),
        Err(problems) => Err(config::ConfigError { problems }),
    }
}

fn load(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    checked_config(path).map_err(|e| {
        eprint!("{e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

async fn serve(config: Config) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let bind = config.http.bind;
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind} (http.bind)"))?;
    let mut app = Application::build(config).await?;
    if let Some(admin) = app.take_bootstrap() {
        match admin.generated_password {
            Some(password) => println!(
                "created the first admin {} with password {password}\n\
                 (shown only now: sign in and change it)",
                admin.email
            ),
            None => println!("created the first admin {}", admin.email),
        }
    }
    let address = listener.local_addr()?;
    tracing::info!(%address, "listening");
    println!("tessera listening on http://{address}");
    if let Some(metrics) = app.metrics_address() {
        tracing::info!(%metrics, "metrics listening");
    }
    app.run(listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
