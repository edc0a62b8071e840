//! The `lockgate` command line.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use lockgate_model::{
    ObjectKind,
    employee_csv::{self, ExportRow},
    system::{FixedSettings, LockingSystem},
};
use lockgate_store::{Actor, Scope, Store};

use crate::{
    config::Config,
    serve::{open_store, print_token_once, serve},
};

/// lockgate: integration gateway and management core for offline electromechanical locking systems.
#[derive(Debug, Parser)]
#[command(name = "lockgate", version)]
pub struct Cli {
    /// Configuration file (default: config/lockgate.toml when present, else built-in defaults).
    #[arg(long, short, env = "LOCKGATE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (migrates, and creates a first locking system on an empty database).
    Serve,
    /// Create a locking system with its fixed settings and print a super-administrator token once.
    Init(InitArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Validate the configuration (file and environment) and exit.
    CheckConfig,
    /// Import data.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Export data.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Issue an API token for a C-key (operator recovery; prints the token once).
    Token(TokenArgs),
    /// Licences: key pairs and signing for operators running their own trust root, installation.
    #[command(subcommand)]
    Licence(LicenceCommand),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Name of the locking system.
    #[arg(long)]
    pub name: String,
    /// Remote system: keys are updated at remote PDs.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub remote: bool,
    /// Cylinder-group system.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub cylinder_groups: bool,
    /// Base time zone (IANA name).
    #[arg(long, default_value = "UTC")]
    pub time_zone: String,
    /// Audit-trail requests need an approver.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub approvals: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import employees from a CSV file (UTF-8, comma or semicolon, header row).
    Employees {
        file: PathBuf,
        /// Check the file and report, without writing anything.
        #[arg(long)]
        dry_run: bool,
        /// Locking system id (needed when the database holds several).
        #[arg(long)]
        system: Option<i64>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Delimiter {
    Comma,
    Semicolon,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Export employees as CSV (import format plus Tags).
    Employees {
        /// Output file; standard output when omitted.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "comma")]
        delimiter: Delimiter,
        #[arg(long)]
        system: Option<i64>,
    },
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// C-key the token acts as.
    #[arg(long)]
    pub c_key: i64,
    /// What the token is for.
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub system: Option<i64>,
}

/// The configuration file in use: the one named, else `config/lockgate.toml` when present.
fn config_path(path: Option<&PathBuf>) -> Option<PathBuf> {
    let default = PathBuf::from("config/lockgate.toml");
    match path {
        Some(p) => Some(p.clone()),
        None if default.exists() => Some(default),
        None => None,
    }
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(Config::load(
        config_path(path).as_deref(),
        std::env::vars(),
    )?)
}

async fn pick_system(store: &Store, id: Option<i64>) -> anyhow::Result<LockingSystem> {
    if let Some(id) = id {
        return Ok(store.system(id).await?);
    }
    let mut all = store.systems().await?;
    match all.len() {
        0 => bail!("the database holds no locking system; run `lockgate init --name ...` first"),
        1 => Ok(all.remove(0)),
        n => bail!("the database holds {n} locking systems; choose one with --system ID"),
    }
}

fn operator() -> Actor {
    let mut a = Actor::system();
    a.label = "operator (CLI)".into();
    a
}

// ---- licence subcommands (docs/licences.md) ----

#[derive(Debug, Subcommand)]
pub enum LicenceCommand {
    /// Create a licence signing key pair from OS randomness: prints the public
    /// `key-id:base64url` entry for `[licence] trusted_keys` and the private signing key.
    Keygen {
        /// Id of the key (ASCII letters, digits, '.', '_', '-').
        #[arg(long, default_value = "local")]
        key_id: String,
        /// Write the private signing key to this new file (mode 0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sign a licence and print the licence file.
    Sign(LicenceSignArgs),
    /// Verify a licence file against `[licence] trusted_keys` and install it.
    Install {
        file: PathBuf,
        /// Locking system id (needed when the database holds several).
        #[arg(long)]
        system: Option<i64>,
    },
}

#[derive(Debug, Args)]
pub struct LicenceSignArgs {
    /// Private signing key file (`key-id:base64url seed` as `keygen` writes, or a bare seed).
    #[arg(long)]
    pub key_file: PathBuf,
    /// Name of the locking system the licence is for (exactly as the system is named).
    #[arg(long)]
    pub system_name: String,
    /// Licence number; only a higher number replaces an installed licence.
    #[arg(long)]
    pub number: u64,
    /// Comma-separated features, e.g. remote,domains,access_profiles (may be empty).
    #[arg(long)]
    pub features: String,
    /// Start of the warning state (RFC 3339).
    #[arg(long)]
    pub soft_expiry: Option<String>,
    /// Start of the locked state (RFC 3339).
    #[arg(long)]
    pub hard_expiry: Option<String>,
    /// Issue instant (RFC 3339; default now).
    #[arg(long)]
    pub issued_at: Option<String>,
    /// Maximum number of keys.
    #[arg(long)]
    pub max_keys: Option<u32>,
    /// Maximum number of cylinders.
    #[arg(long)]
    pub max_cylinders: Option<u32>,
    /// Key id written into the file (default: the id in the key file).
    #[arg(long)]
    pub key_id: Option<String>,
}

/// Run a `lockgate licence ...` command.
async fn run_licence(cfg: &Config, cmd: LicenceCommand) -> anyhow::Result<()> {
    use lockgate_api::licence as lic;
    match cmd {
        LicenceCommand::Keygen { key_id, out } => {
            let seed = lockgate_store::licences::random_seed()?;
            let (public, private) =
                lic::key_pair_lines(&key_id, seed).map_err(|e| anyhow::anyhow!("--key-id: {e}"))?;
            println!("# public key: add to [licence] trusted_keys\n{public}");
            match out {
                Some(path) => {
                    let mut o = std::fs::OpenOptions::new();
                    o.write(true).create_new(true);
                    #[cfg(unix)]
                    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
                    let mut f = o
                        .open(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    std::io::Write::write_all(&mut f, format!("{private}\n").as_bytes())?;
                    eprintln!(
                        "private signing key written to {} (keep it secret)",
                        path.display()
                    );
                }
                None => println!(
                    "# private signing key (keep it secret; for `lockgate licence sign --key-file`)\n{private}"
                ),
            }
            Ok(())
        }
        LicenceCommand::Sign(a) => {
            let text = std::fs::read_to_string(&a.key_file)
                .with_context(|| format!("reading {}", a.key_file.display()))?;
            let req = lic::SignRequest {
                system_name: a.system_name,
                number: a.number,
                features: a.features,
                issued_at: a.issued_at,
                soft_expiry: a.soft_expiry,
                hard_expiry: a.hard_expiry,
                max_keys: a.max_keys,
                max_cylinders: a.max_cylinders,
                key_id: a.key_id,
            };
            println!(
                "{}",
                lic::sign_with_key_file(&text, req).map_err(anyhow::Error::msg)?
            );
            Ok(())
        }
        LicenceCommand::Install { file, system } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let trusted = cfg.licence.trusted()?;
            if trusted.is_empty() {
                bail!(
                    "no licence key is trusted: add the signer's public key to [licence] trusted_keys"
                );
            }
            let store = open_store(cfg, cfg.database.migrate_on_start).await?;
            let sys = pick_system(&store, system).await?;
            let licence = lic::install(&store, &trusted, sys.id, &sys.name, &bytes, &operator())
                .await
                .map_err(|p| anyhow::anyhow!("{}: {}", file.display(), p.detail))?;
            let features: Vec<&str> = licence.features.iter().map(|f| f.as_str()).collect();
            println!(
                "licence number {} installed for locking system {} ('{}'); features: {}",
                licence.number,
                sys.id,
                sys.name,
                features.join(", ")
            );
            Ok(())
        }
    }
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = load_config(cli.config.as_ref())?;
    match cli.command {
        Command::CheckConfig => {
            if cfg.pds.enabled {
                cfg.pds.sealing_key(|k| std::env::var(k).ok())?;
            }
            println!(
                "configuration is valid (database {})",
                cfg.redacted_database_url()
            );
            Ok(())
        }
        Command::Serve => serve(cfg, config_path(cli.config.as_ref())).await,
        Command::Licence(cmd) => run_licence(&cfg, cmd).await,
        Command::Migrate => {
            open_store(&cfg, true).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::Init(a) => {
            let store = open_store(&cfg, true).await?;
            let fixed = FixedSettings {
                remote: a.remote,
                cylinder_groups: a.cylinder_groups,
                base_time_zone: a.time_zone,
                audit_trail_approvals: a.approvals,
            };
            let b = store.init_system(&a.name, fixed).await?;
            print_token_once(&b.system.name, &b.token);
            println!(
                "system id {}, master C-key id {}, default domain id {}",
                b.system.id, b.master_c_key_id, b.default_domain_id
            );
            Ok(())
        }
        Command::Token(a) => {
            let store = open_store(&cfg, false).await?;
            let sys = pick_system(&store, a.system).await?;
            let c_key: Result<lockgate_store::Stored<lockgate_model::ckey::CKey>, _> = store
                .get(sys.id, ObjectKind::CKey, a.c_key, &Scope::all())
                .await;
            if c_key.is_err() {
                bail!("locking system {} has no C-key {}", sys.id, a.c_key);
            }
            let (info, secret) = store
                .create_token(sys.id, a.c_key, a.c_key, &a.name, None)
                .await?;
            println!(
                "token {} for C-key {} (shown once):\n\n    {secret}\n",
                info.id, info.c_key_id
            );
            Ok(())
        }
        Command::Import(ImportCommand::Employees {
            file,
            dry_run,
            system,
        }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let store = open_store(&cfg, false).await?;
            let sys = pick_system(&store, system).await?;
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} rows {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let progress = |done: usize, total: usize| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            };
            let app = lockgate_app::App::new(store.clone());
            let cx = app.context(&sys, &Scope::all(), &operator());
            let report = app
                .import_persons(&cx, ObjectKind::Employee, &bytes, dry_run, &progress)
                .await?;
            bar.finish_and_clear();
            for row in &report.invalid {
                for e in &row.errors {
                    eprintln!("line {}: {}: {}", row.line, e.field, e.message);
                }
            }
            for s in &report.skipped {
                eprintln!("line {}: skipped: {}", s.line, s.reason);
            }
            println!(
                "{}{} valid rows: {} created, {} updated, {} unchanged; {} skipped, {} invalid",
                if dry_run { "dry run: " } else { "" },
                report.valid_rows,
                report.created,
                report.updated,
                report.unchanged,
                report.skipped.len(),
                report.invalid.len()
            );
            Ok(())
        }
        Command::Export(ExportCommand::Employees {
            output,
            delimiter,
            system,
        }) => {
            let store = open_store(&cfg, false).await?;
            let sys = pick_system(&store, system).await?;
            let rows = store
                .export_persons(&sys, ObjectKind::Employee, &Scope::all())
                .await?;
            let d = match delimiter {
                Delimiter::Comma => b',',
                Delimiter::Semicolon => b';',
            };
            let it = rows.iter().map(|(p, dn)| ExportRow {
                person: p,
                domain: dn,
            });
            match output {
                Some(path) => {
                    let f = std::fs::File::create(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    employee_csv::write_export(f, d, it)?;
                    eprintln!("{} employees written to {}", rows.len(), path.display());
                }
                None => employee_csv::write_export(std::io::stdout().lock(), d, it)?,
            }
            Ok(())
        }
    }
}
