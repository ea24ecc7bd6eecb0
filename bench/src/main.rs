//! `tessera-bench`: Tessera's load benchmark. It builds the `tessera` release binary, starts it
//! on a fresh SQLite database (and a fresh PostgreSQL schema when given a URL) beside a bare
//! axum hello server, prepares accounts, a client and tokens through the real API, and runs
//! each phase of [`phases::all`] in turn. Every figure is read as a share of the hello
//! server's throughput in the same run; a phase that saw an answer it did not expect is
//! reported INVALID and the command fails. A benchmark, never a test: slow numbers do not
//! fail it, wrong answers do.

mod cluster;
mod flags;
mod hello;
mod load;
mod phases;
mod realtime;
mod report;
mod scale;
mod server;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use crate::phases::{Load, Target, Workload};
use crate::report::{PhaseResult, Report, Run, Traffic};
use crate::server::{Database, Process, Tessera};

/// Tessera's load benchmark.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Short phases (1 s, 8 connections): checks every phase answers as it should, for CI.
    #[arg(long)]
    smoke: bool,
    /// Seconds each phase runs (default 5, or 1 with --smoke).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=600))]
    duration: Option<u64>,
    /// Connections per phase (default 64, or 8 with --smoke).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    connections: Option<u64>,
    /// Also run on this PostgreSQL database, in a fresh schema dropped afterwards.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Where the Markdown table, the JSON and the chart go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Also run the scale phase with this many imported accounts (and as many audit events):
    /// the admin and audit reads timed at that size. Default: off, or 500 with --smoke.
    #[arg(long, value_name = "USERS", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    scale: Option<u64>,
    /// Sequential samples per read in the scale phase (default 100, or 5 with --smoke).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    scale_samples: Option<u64>,
    /// Use the `tessera` binary beside this one as it is, without `cargo build --release`.
    #[arg(long, global = true)]
    no_build: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the bare hello server (the ceiling) on a free loopback port.
    Hello,
    /// The real-time hub: idle WebSockets (RSS per connection), fan-out latency, revoke to
    /// close latency.
    Realtime(realtime::Args),
    /// Two instances on one PostgreSQL database: cross-instance revoke → refused latency, and
    /// `/me`, refresh and introspection throughput on 1 vs 2 instances.
    Cluster(cluster::Args),
}

/// How a run is paced.
#[derive(Clone, Copy)]
struct Pace {
    duration: Duration,
    connections: usize,
    /// Pause before each Tessera phase, so work queued by the previous one (hashes) is done.
    settle: Duration,
    /// How long traffic beside a phase runs before and after it.
    lead: Duration,
    /// How long Tessera rests after the last phase before its memory is read again (none in
    /// smoke runs): idle hashing threads give their memory back after 20 s.
    rest: Option<Duration>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Some(Command::Hello) => runtime.block_on(hello::serve()),
        Some(Command::Realtime(args)) => {
            let binary = tessera_binary(cli.no_build)?;
            runtime.block_on(realtime::run(binary, args))
        }
        Some(Command::Cluster(args)) => {
            let binary = tessera_binary(cli.no_build)?;
            runtime.block_on(cluster::run(binary, args))
        }
        None => runtime.block_on(bench(cli)),
    }
}

async fn bench(cli: Cli) -> anyhow::Result<()> {
    let pace = Pace {
        duration: Duration::from_secs(cli.duration.unwrap_or(if cli.smoke { 1 } else { 5 })),
        connections: usize::try_from(cli.connections.unwrap_or(if cli.smoke { 8 } else { 64 }))?,
        settle: Duration::from_millis(if cli.smoke { 300 } else { 1000 }),
        lead: Duration::from_millis(if cli.smoke { 300 } else { 1000 }),
        rest: (!cli.smoke).then_some(Duration::from_secs(30)),
    };
    let binary = tessera_binary(cli.no_build)?;
    let hello = server::start_hello().await?;
    eprintln!("hello server on {}", hello.addr);

    let mut databases = vec![Database::Sqlite];
    if let Some(url) = &cli.postgres {
        databases.push(Database::postgres(url).await?);
    }
    let mut report = Report::new(pace_settings(&cli, &pace));
    for database in databases {
        let name = database.name();
        let mut outcome = run_on(&binary, &database, &hello, pace).await;
        if let (Ok(run), Some(users)) = (&mut outcome, scale_users(&cli)) {
            let samples = cli.scale_samples.unwrap_or(if cli.smoke { 5 } else { 100 });
            eprintln!("scale phase ({name}): importing {users} accounts");
            let fresh = database.fresh_like().await?;
            let scaled = scale::run(
                &binary,
                &fresh,
                usize::try_from(users)?,
                usize::try_from(samples)?,
            )
            .await;
            if let Err(e) = fresh.remove().await {
                eprintln!("could not drop the PostgreSQL scale schema: {e:#}");
            }
            match scaled {
                Ok(scale) => {
                    eprintln!("{}", scale.markdown());
                    run.scale = Some(scale);
                }
                Err(e) => run.scale_error = Some(format!("{e:#}")),
            }
        }
        if let Err(e) = database.remove().await {
            eprintln!("could not drop the PostgreSQL bench schema: {e:#}");
        }
        report
            .runs
            .push(outcome.unwrap_or_else(|e| Run::failed(name, format!("{e:#}"))));
    }
    hello.stop().await;

    let markdown = report.markdown();
    println!("{markdown}");
    report.write(&cli.out, &markdown)?;
    eprintln!(
        "wrote {0}/bench.md, {0}/bench.json and {0}/bench.png",
        cli.out.display()
    );
    let broken = report.broken();
    if !broken.is_empty() {
        bail!("invalid or failed: {}", broken.join(", "));
    }
    Ok(())
}

/// How many accounts the scale phase imports, if it runs.
fn scale_users(cli: &Cli) -> Option<u64> {
    cli.scale.or(cli.smoke.then_some(500))
}

fn pace_settings(cli: &Cli, pace: &Pace) -> report::Settings {
    report::Settings {
        smoke: cli.smoke,
        duration_s: pace.duration.as_secs(),
        connections: pace.connections,
        cores: std::thread::available_parallelism().map_or(0, usize::from),
    }
}

/// The `tessera` binary beside this one (same target folder, same profile), built first
/// with `cargo build -p tessera` in that profile unless told not to, so a run never measures
/// a stale build. `cargo run --release -p tessera-bench` therefore measures a release build.
fn tessera_binary(no_build: bool) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("path of this binary")?;
    let folder = exe.parent().context("folder of this binary")?;
    let binary = folder.join("tessera");
    if !no_build {
        let profile = match folder.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(other) => other,
            None => bail!("{} is not in a cargo profile folder", exe.display()),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        eprintln!("cargo build --profile {profile} -p tessera");
        let status = std::process::Command::new(cargo)
            .args(["build", "--profile", profile, "-p", "tessera"])
            .status()
            .context("run cargo build")?;
        if !status.success() {
            bail!("cargo build --profile {profile} -p tessera failed");
        }
    }
    if !binary.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p tessera`",
            binary.display()
        );
    }
    Ok(binary)
}

/// Every phase on one database.
async fn run_on(
    binary: &Path,
    database: &Database,
    hello: &Process,
    pace: Pace,
) -> anyhow::Result<Run> {
    let tessera = Tessera::prepare(binary, database).await?;
    let mut server = tessera.serve().await?;
    eprintln!("tessera ({}) on {}", database.name(), server.addr);
    let started_rss_mib = mib(server.rss_kib());
    let accounts = phases::accounts_needed(pace.connections);
    let ctx = phases::prepare(&tessera, server.addr, accounts, pace.connections)
        .await
        .with_context(|| {
            format!(
                "preparing the data failed; server log:\n{}",
                tessera.log_tail()
            )
        })?;

    let mut run = Run::new(database.name());
    run.started_rss_mib = started_rss_mib;
    run.idle_rss_mib = mib(server.rss_kib());
    let mut hello_rate = None;
    for phase in phases::all() {
        if !server.alive() {
            run.phases.push(PhaseResult::failed(
                phase.name,
                phase.what,
                format!("tessera exited; its log:\n{}", tessera.log_tail()),
            ));
            continue;
        }
        let addr = match phase.target {
            Target::Hello => hello.addr,
            Target::Tessera => {
                tokio::time::sleep(pace.settle).await;
                server.addr
            }
        };
        let result = match (phase.setup)(&ctx).await {
            Ok(load) => measure(addr, load, pace).await,
            Err(e) => Err(e),
        };
        let mut result = match result {
            Ok((measured, beside)) => {
                PhaseResult::measured(phase.name, phase.what, measured, beside)
            }
            Err(e) => PhaseResult::failed(phase.name, phase.what, format!("{e:#}")),
        };
        result.rss_mib = mib(server.rss_kib());
        result.load_avg = load_average();
        if phase.target == Target::Hello {
            hello_rate = Some(result.ok_per_sec);
        }
        result.share_of_hello = hello_rate.map(|h| result.ok_per_sec / h);
        eprintln!("{}", result.line());
        run.phases.push(result);
    }
    if let Some(rest) = pace.rest.filter(|_| server.alive()) {
        eprintln!("resting {} s before reading memory again", rest.as_secs());
        tokio::time::sleep(rest).await;
        run.rested_rss_mib = mib(server.rss_kib()).map(|m| (rest.as_secs(), m));
    }
    run.derive_notes(std::thread::available_parallelism().map_or(1, usize::from));
    server.stop().await;
    Ok(run)
}

/// Runs a phase's load: the traffic beside it first, then the measured traffic, then waits
/// for the traffic beside to end.
async fn measure(
    addr: std::net::SocketAddr,
    load: Load,
    pace: Pace,
) -> anyhow::Result<(Traffic, Option<Traffic>)> {
    let Load { measured, beside } = load;
    let background = beside.map(|w| {
        let duration = pace.duration + 2 * pace.lead;
        tokio::spawn(async move {
            let outcome = load::run(addr, w.connections, duration, &w.scripts).await;
            Traffic::from_outcome(&w, &outcome)
        })
    });
    if background.is_some() {
        tokio::time::sleep(pace.lead).await;
    }
    let outcome = run_workload(addr, &measured, pace.duration).await;
    let beside = match background {
        Some(task) => Some(task.await.context("the traffic beside the phase failed")?),
        None => None,
    };
    Ok((outcome, beside))
}

async fn run_workload(addr: std::net::SocketAddr, w: &Workload, duration: Duration) -> Traffic {
    let outcome = load::run(addr, w.connections, duration, &w.scripts).await;
    Traffic::from_outcome(w, &outcome)
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 / 1024.0)
}

/// The 1, 5 and 15 minute load averages of the machine.
fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut values = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [(); 3].map(|()| values.next().unwrap_or(0.0))
}
