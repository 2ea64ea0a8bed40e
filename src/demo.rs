//! `portcullis demo`: the proxy, the dev IdP (as Okta) and a demo app that
//! echoes the identity headers, all on loopback, from one command on a fresh
//! machine. The config and policies come from `conf/demo/` (compiled in, so
//! the command works from any folder) with ports and paths filled in.

pub mod echo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::idp::dev::{self, DevIdpOptions, DEV_API_TOKEN, DEV_CLIENT_SECRET};

const DEMO_CONFIG: &str = include_str!("../conf/demo/portcullis.yaml");
const DEMO_POLICIES: &str = include_str!("../conf/demo/policies/demo.yaml");

/// Flags of `portcullis demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Proxy listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Dev IdP listener.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub idp: SocketAddr,
    /// Demo app (upstream) listener.
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub app: SocketAddr,
    /// Metrics listener.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics: SocketAddr,
    /// Folder for the demo's store, keys and policies.
    #[arg(long, default_value = "target/portcullis-demo")]
    pub data_dir: PathBuf,
}

/// Values substituted into the demo config.
pub struct DemoEnv {
    pub vars: Vec<(&'static str, String)>,
}

impl DemoEnv {
    pub fn get(&self, name: &str) -> Option<String> {
        self.vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

/// Write the demo policies (upstream filled in) into `data_dir/policies`.
pub fn write_policies(data_dir: &std::path::Path, upstream: &str) -> std::io::Result<()> {
    let dir = data_dir.join("policies");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("demo.yaml"),
        DEMO_POLICIES.replace("${UPSTREAM}", upstream),
    )
}

/// The demo's config for the given addresses.
pub fn demo_config(
    listen: SocketAddr,
    metrics: SocketAddr,
    okta_account: &str,
    data_dir: &std::path::Path,
) -> Result<crate::config::Config> {
    let auth_domain = format!("auth.localhost:{}", listen.port());
    let env = DemoEnv {
        vars: vec![
            ("DEMO_LISTEN", listen.to_string()),
            ("DEMO_AUTH_DOMAIN", auth_domain),
            ("DEMO_METRICS", metrics.to_string()),
            ("DEMO_DATA", data_dir.to_string_lossy().into_owned()),
            ("DEMO_OKTA_ACCOUNT", okta_account.to_string()),
            ("DEMO_CLIENT_SECRET", DEV_CLIENT_SECRET.to_string()),
            ("DEMO_API_TOKEN", DEV_API_TOKEN.to_string()),
        ],
    };
    crate::config::parse_str("conf/demo/portcullis.yaml", DEMO_CONFIG, data_dir, &|n| {
        env.get(n)
    })
    .map_err(|e| anyhow::anyhow!("demo config: {e}"))
}

/// Run the demo until Ctrl-C.
pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let data_dir = std::path::absolute(&args.data_dir).context("demo data folder")?;
    std::fs::create_dir_all(&data_dir).context("creating the demo data folder")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let port = args.listen.port();
    let redirect = format!("http://auth.localhost:{port}/cdn-cgi/access/callback");
    let idp = rt
        .block_on(dev::start(DevIdpOptions::new(args.idp, vec![redirect])))
        .with_context(|| format!("starting the dev IdP on {}", args.idp))?;
    let app = rt
        .block_on(echo::start(args.app))
        .with_context(|| format!("starting the demo app on {}", args.app))?;
    write_policies(&data_dir, &format!("http://{}", app.addr()))?;
    let cfg = demo_config(args.listen, args.metrics, &idp.okta_account(), &data_dir)?;
    let banner = format!(
        "\nportcullis demo is running (Ctrl-C to stop)\n\n\
         Open in a browser:\n\
         \x20 http://app.localhost:{port}/            demo app (allow: email domain example.com, group contractors)\n\
         \x20 http://app.localhost:{port}/admin       admin (group engineering + mfa; dave excluded)\n\
         \x20 http://app.localhost:{port}/public      bypass: no login from loopback\n\
         \x20 http://app.localhost:{port}/cdn-cgi/access/get-identity   your identity (JSON)\n\
         \x20 http://app.localhost:{port}/cdn-cgi/access/logout         sign out\n\n\
         Sign in as any dev user on the dev IdP's page ({issuer}):\n\
         \x20 alice@example.com (engineering, mfa) · bob@example.com (sales) · carol@contractor.example.net (contractors)\n\
         \x20 dave@example.com (engineering, email not verified) · pat@example.com (151 groups)\n\n\
         With curl:\n\
         \x20 curl -i http://app.localhost:{port}/                    # 401 without a session\n\
         \x20 curl -i http://app.localhost:{port}/public/             # bypass\n\
         \x20 curl -i -H 'CF-Access-Client-Id: demo-ci.access' -H 'CF-Access-Client-Secret: demo-ci-secret' http://api.localhost:{port}/\n\
         \x20 curl http://{metrics}/metrics\n\
         \x20 curl -H 'Authorization: Bearer <printed SCIM secret>' http://auth.localhost:{port}/scim/v2/Users\n",
        issuer = idp.issuer(),
        metrics = args.metrics,
    );
    let _guard = rt.enter();
    let code = crate::cli::run_config_in(
        &rt,
        cfg,
        crate::server::ServerOptions::default(),
        Some(banner),
    )?;
    drop(app);
    drop(idp);
    Ok(code)
}
