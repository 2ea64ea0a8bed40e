//! The subcommands behind `main`: each loads what it needs and returns an
//! exit code; `anyhow` lives only here and in `main`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::config::{self, Config};
use crate::policy;
use crate::server::reload::{hangup_signal, on_hangup, ConfigFile};
use crate::server::{build, build_state, ServerHandle, ServerOptions};

/// Structured logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn")
    });
    use crate::server::handshake_log::{HandshakeErrors, NotHandshakeError};
    use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
    use tracing_subscriber::util::SubscriberInitExt as _;
    let output = tracing_subscriber::fmt::layer()
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        // Pingora's ERRORs for a client's failed handshake are counted and
        // logged at debug instead (`server::handshake_log`).
        .with_filter(tracing_subscriber::filter::FilterExt::and(
            filter,
            NotHandshakeError,
        ));
    let handshakes =
        HandshakeErrors.with_filter(tracing_subscriber::filter::Targets::new().with_targets(
            crate::server::handshake_log::TARGETS.map(|t| (t, tracing::Level::ERROR)),
        ));
    let _ = tracing_subscriber::registry()
        .with(output)
        .with(handshakes)
        .try_init();
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    config::load_file(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::FAILURE
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Flags of `portcullis run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Take the listening sockets over from the running portcullis (graceful
    /// upgrade): start this, then send SIGQUIT to the old process within
    /// 5 s. Both must have the same `upgrade_sock`.
    #[arg(long)]
    pub upgrade: bool,
}

/// `portcullis run -c FILE [--upgrade]`
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let file = match ConfigFile::read(&args.config.config) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let cfg = match file.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let rt = runtime()?;
    let opts = ServerOptions {
        upgrade: args.upgrade,
        config_file: Some(file),
    };
    let code = run_config_in(&rt, cfg, opts, None)?;
    drop(rt);
    Ok(code)
}

/// Start a proxy for `cfg` on `rt` (the demo's runtime also runs the dev
/// IdP) and block until SIGINT/SIGTERM (or SIGQUIT: handed over to a new
/// process). SIGHUP reloads. `banner` is printed once it is listening.
pub fn run_config_in(
    rt: &tokio::runtime::Runtime,
    cfg: Config,
    opts: ServerOptions,
    banner: Option<String>,
) -> Result<ExitCode> {
    // From here on SIGHUP no longer ends the process; one received before
    // the proxy runs is kept and reloads once it does.
    let hangup = {
        let _in_runtime = rt.enter();
        hangup_signal().context("installing the SIGHUP handler")?
    };
    let upgrade = opts.upgrade;
    let state = rt
        .block_on(build_state(cfg))
        .context("starting portcullis")?;
    if upgrade {
        tracing::info!(upgrade_sock = %state.cfg.upgrade_sock.display(), "Waiting for the running process's listening sockets (send it SIGQUIT)");
    }
    let built = build(state.clone(), opts).context("building the server")?;
    {
        let _in_runtime = rt.enter();
        on_hangup(hangup, built.reloader.clone());
    }
    for l in &state.cfg.listen {
        tracing::info!(addr = %l.addr, tls = l.tls.is_some(), proxy_protocol = l.proxy_protocol, taken_over = upgrade, "Listening");
    }
    if let Some(b) = banner {
        println!("{b}");
    }
    ServerHandle::start(built.server, true).wait();
    // Lines still queued (up to the writer's interval) reach the log.
    state.access_log.flush();
    Ok(ExitCode::SUCCESS)
}

/// Flags of `portcullis dev-idp` (hidden from `--help`): the demo's dev IdP
/// and, with `--app`, its echo app, without a proxy. For several instances
/// sharing one IdP (`scripts/fleet-demo`); `run` never starts a dev IdP.
#[derive(clap::Args, Debug, Clone)]
pub struct DevIdpArgs {
    /// Dev IdP listener (loopback only).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: std::net::SocketAddr,
    /// A redirect URI to accept, compared exactly (repeatable), e.g.
    /// `http://auth.localhost:8080/cdn-cgi/access/callback`.
    #[arg(long = "redirect", required = true)]
    pub redirects: Vec<String>,
    /// Also start the demo app (the echo upstream of `demo`) here (loopback only).
    #[arg(long)]
    pub app: Option<std::net::SocketAddr>,
}

/// `portcullis dev-idp`: serve until SIGINT/SIGTERM. Refuses any address
/// that is not loopback: the dev IdP signs with public keys and logs
/// anyone in who clicks a name.
pub fn dev_idp(args: DevIdpArgs) -> Result<ExitCode> {
    use crate::idp::dev::{self, DevIdpOptions};
    for addr in std::iter::once(args.listen).chain(args.app) {
        if !addr.ip().is_loopback() {
            eprintln!(
                "dev-idp: {addr} is not a loopback address; the dev IdP is for this machine only"
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    let rt = runtime()?;
    rt.block_on(async {
        let idp = dev::start(DevIdpOptions::new(args.listen, args.redirects.clone()))
            .await
            .with_context(|| format!("starting the dev IdP on {}", args.listen))?;
        let app = match args.app {
            Some(addr) => Some(
                crate::demo::echo::start(addr)
                    .await
                    .with_context(|| format!("starting the demo app on {addr}"))?,
            ),
            None => None,
        };
        // Before the addresses are printed: whoever reads them may send
        // SIGTERM at once, and without a handler it would kill the process
        // (exit by signal, not 0).
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        println!(
            "dev IdP: okta_account {} issuer {}",
            idp.okta_account(),
            idp.issuer()
        );
        println!(
            "client_id {} client_secret {} api_token {}",
            idp.client_id(),
            idp.client_secret(),
            dev::DEV_API_TOKEN
        );
        println!("redirect URIs: {}", args.redirects.join(" "));
        if let Some(app) = &app {
            println!("demo app: http://{}", app.addr());
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        drop(app);
        drop(idp);
        Ok(ExitCode::SUCCESS)
    })
}

/// `portcullis check -c FILE`. A config with errors is reported, and then
/// its policies are checked too when their folder can still be read from
/// it, so that one run shows the errors of both.
pub fn check(path: &Path) -> Result<ExitCode> {
    let cfg = match config::load_file(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            if let Some((policies, idps)) = config::policies_hint(path) {
                if let Err(e) = policy::load::load_path(&policies, Some(&idps)) {
                    eprintln!("{e}");
                }
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    // The TLS files are read as the server would read them.
    let mut tls_ok = true;
    for (i, l) in cfg.listen.iter().enumerate() {
        if let Some(tls) = &l.tls {
            if let Err(e) = crate::server::preflight::check_tls(tls) {
                eprintln!("{}: listen[{i}].tls: {e}", path.display());
                tls_ok = false;
            }
        }
    }
    match policy::load::load_path(&cfg.policies, Some(&cfg.idp_names())) {
        Ok(set) if tls_ok => {
            print!("{}", policy::explain::check_table(&cfg, &set));
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => Ok(ExitCode::FAILURE),
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `-c FILE`, as every subcommand takes it: `PORTCULLIS_CONFIG`, else
/// `conf/portcullis.yaml`.
#[derive(clap::Args, Debug)]
pub struct ConfigArg {
    /// The config file (`PORTCULLIS_CONFIG`, else `conf/portcullis.yaml`).
    #[arg(
        short,
        long,
        env = "PORTCULLIS_CONFIG",
        default_value = "conf/portcullis.yaml"
    )]
    pub config: std::path::PathBuf,
}

/// Arguments of `portcullis explain`.
#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub email: Option<String>,
    #[arg(long = "group")]
    pub groups: Vec<String>,
    #[arg(long)]
    pub ip: Option<std::net::IpAddr>,
    #[arg(long = "amr")]
    pub amr: Vec<String>,
    #[arg(long)]
    pub idp: Option<String>,
    /// NAME=VALUE
    #[arg(long = "claim")]
    pub claims: Vec<String>,
    #[arg(long = "service-token")]
    pub service_token: Option<String>,
}

/// `portcullis explain`
pub fn explain(args: ExplainArgs) -> Result<ExitCode> {
    let cfg = match load_config(&args.config.config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let set = match policy::load::load_path(&cfg.policies, Some(&cfg.idp_names())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let subject = policy::explain::ExplainSubject {
        email: args.email,
        groups: args.groups,
        ip: args.ip,
        amr: args.amr,
        idp: args.idp,
        claims: args.claims,
        service_token: args.service_token,
    };
    let out = policy::explain::explain(&set, &args.url, subject)?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `portcullis test-idp -c FILE`
pub fn test_idp(path: &Path) -> Result<ExitCode> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let rt = runtime()?;
    let redirect = format!("{}{}/callback", cfg.auth_origin(), cfg.endpoint_prefix);
    let mut ok = true;
    for idp in &cfg.identity_providers {
        println!("identity provider {:?} ({})", idp.name, idp.kind.as_str());
        let p = crate::idp::oidc::Provider::new(idp.clone())?;
        for step in rt.block_on(p.test_connection(&redirect)) {
            match step.result {
                Ok(msg) => println!("  ok    {}: {}", step.name, msg),
                Err(msg) => {
                    println!("  FAIL  {}: {}", step.name, msg);
                    ok = false;
                }
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `portcullis scim rotate-secret -c FILE`
pub fn scim_rotate_secret(path: &Path) -> Result<ExitCode> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let rt = runtime()?;
    let secret = rt.block_on(crate::scim::rotate_secret(&cfg))?;
    println!("{secret}");
    eprintln!(
        "New SCIM secret printed above; the previous one no longer works. It is not shown again."
    );
    Ok(ExitCode::SUCCESS)
}

/// The fleet's key store, or why there is none.
async fn fleet_store(cfg: &Config) -> Result<std::sync::Arc<dyn crate::store::Store>> {
    let store = crate::store::open_store_with(&cfg.store, 2).await?;
    if store.key_store().is_none() {
        anyhow::bail!(
            "signing keys live in key_dir ({}) with an SQLite store: to rotate, add a new key file there and restart; `keys` works on a PostgreSQL store (fleet mode)",
            cfg.key_dir.display()
        );
    }
    Ok(store)
}

/// `portcullis keys rotate -c FILE` (fleet mode).
pub fn keys_rotate(path: &Path) -> Result<ExitCode> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let rt = runtime()?;
    let rotated = rt.block_on(async {
        let store = fleet_store(&cfg).await?;
        let ks = store.key_store().context("no key store")?;
        let now = crate::session::token::now_unix();
        Ok::<_, anyhow::Error>(
            crate::session::rotate::rotate(
                ks,
                now,
                crate::session::rotate::PUBLISH_AHEAD,
                cfg.session.duration,
            )
            .await?,
        )
    })?;
    println!(
        "New signing key {} published now; it signs from {} (in {} s).",
        rotated.kid,
        rfc3339(rotated.signs_from),
        crate::session::rotate::PUBLISH_AHEAD.as_secs()
    );
    for kid in &rotated.removed {
        println!("Removed retired key {kid} (every token it signed has expired).");
    }
    Ok(ExitCode::SUCCESS)
}

/// `portcullis keys list -c FILE` (fleet mode).
pub fn keys_list(path: &Path) -> Result<ExitCode> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let rt = runtime()?;
    let keys = rt.block_on(async {
        let store = fleet_store(&cfg).await?;
        let ks = store.key_store().context("no key store")?;
        Ok::<_, anyhow::Error>(ks.signing_keys().await?)
    })?;
    let now = crate::session::token::now_unix();
    let ring = crate::session::keys::KeyRing::from_stored(&keys, now)?;
    println!("{:<24} {:<26} state", "kid", "signs from");
    for k in &keys {
        let state = if k.kid == ring.signing_kid() {
            "signing"
        } else if k.signs_from > now {
            "published, signs later"
        } else {
            "verifying only"
        };
        println!("{:<24} {:<26} {state}", k.kid, rfc3339(k.signs_from));
    }
    Ok(ExitCode::SUCCESS)
}

/// Unix seconds as RFC 3339 (UTC).
fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// `portcullis seats list -c FILE`
pub fn seats_list(path: &Path) -> Result<ExitCode> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let rt = runtime()?;
    let seats = rt.block_on(async {
        let store = crate::store::open_store(&cfg.store).await?;
        store.list_seats().await
    })?;
    println!("{:<24} {:<32} {:<16} last login", "app", "email", "idp");
    for s in &seats {
        let when = time::OffsetDateTime::from_unix_timestamp(s.last_login)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        println!("{:<24} {:<32} {:<16} {}", s.app, s.email, s.idp, when);
    }
    println!("{} seat(s)", seats.len());
    Ok(ExitCode::SUCCESS)
}
