//! `lockgate-sim`: the PD and key simulator's command line (see the crate documentation and
//! `docs/pds/simulator.md`).

use std::time::Duration;

use clap::Parser;

/// Plays remote PDs and keys against a running lockgate gateway.
#[derive(Debug, Parser)]
#[command(name = "lockgate-sim", version)]
struct Args {
    /// The gateway's API root.
    #[arg(long, default_value = "http://127.0.0.1:8080/api/v1")]
    api: String,
    /// An API token with remote PDs, keys, cylinders and jobs at Full (environment:
    /// LOCKGATE_SIM_TOKEN).
    #[arg(long, env = "LOCKGATE_SIM_TOKEN", hide_env_values = true)]
    token: String,
    /// The PD listener.
    #[arg(long, default_value = "127.0.0.1:7443")]
    pd_addr: String,
    /// The name in the PD listener's certificate (`[pds] server_names`).
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// PDs, generations in turn (wall gen 1, wall gen 2, mobile).
    #[arg(long, default_value_t = 3)]
    pds: usize,
    #[arg(long, default_value_t = 30)]
    keys: usize,
    #[arg(long, default_value_t = 6)]
    cylinders: usize,
    /// How long the PDs serve insertions, e.g. `60s`, `2m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Pause of each PD between insertions, e.g. `20ms`.
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    insert_every: Duration,
    /// Heartbeat interval of the simulated PDs.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    heartbeat_every: Duration,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Inject faults and check the gateway's answers.
    #[arg(long)]
    faults: bool,
    /// Key/cylinder pairs checked against can-open at the end (0: all).
    #[arg(long, default_value_t = 2000)]
    check_pairs: usize,
    /// Requests the set-up makes at once.
    #[arg(long, default_value_t = 8)]
    setup_concurrency: usize,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .ok_or_else(|| format!("`{s}`: give a unit (ms, s, m)"))?;
    let n: u64 = n.parse().map_err(|_| format!("`{s}` is no duration"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("`{s}`: the unit is ms, s or m")),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let a = Args::parse();
    let opts = lockgate_sim::Options {
        api: a.api,
        token: a.token,
        pd_addr: a.pd_addr,
        server_name: a.server_name,
        pds: a.pds,
        keys: a.keys,
        cylinders: a.cylinders,
        duration: a.duration,
        insert_every: a.insert_every,
        heartbeat_every: a.heartbeat_every,
        seed: a.seed,
        faults: a.faults,
        check_pairs: a.check_pairs,
        progress_every: Some(Duration::from_secs(1)),
        setup_concurrency: a.setup_concurrency,
    };
    match lockgate_sim::run(opts).await {
        Ok(summary) => {
            println!("{summary}");
            if summary.clean() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("lockgate-sim: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
