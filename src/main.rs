//! The `portcullis` command line: parse arguments, load config, run, map
//! errors to exit codes. The work lives in the library.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis::cli::ConfigArg;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Identity-aware edge proxy on Pingora"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Run(portcullis::cli::RunArgs),
    /// Everything on loopback: proxy, dev IdP and a demo app.
    Demo(portcullis::demo::DemoArgs),
    /// The demo's dev IdP (and demo app) alone, on loopback, for a fleet
    /// demo (`scripts/fleet-demo`). Dev only; hidden from `--help`.
    #[command(hide = true)]
    DevIdp(portcullis::cli::DevIdpArgs),
    /// Validate config and policies and print the compiled table.
    Check(ConfigArg),
    /// Explain which policy decides for a URL and an identity.
    Explain(portcullis::cli::ExplainArgs),
    /// Test the identity providers: discovery, JWKS, client credentials.
    TestIdp(ConfigArg),
    /// SCIM administration.
    Scim {
        #[command(subcommand)]
        command: ScimCommand,
    },
    /// Session signing keys (fleet mode: kept in PostgreSQL).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Seats: users who have used an app.
    Seats {
        #[command(subcommand)]
        command: SeatsCommand,
    },
}

#[derive(Subcommand)]
enum ScimCommand {
    /// Make a new SCIM secret (the old one stops working) and print it once.
    RotateSecret(ConfigArg),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new signing key: every instance publishes it at once and signs
    /// with it from a minute later; keys whose tokens have all expired are
    /// removed.
    Rotate(ConfigArg),
    /// List the signing keys and which one signs.
    List(ConfigArg),
}

#[derive(Subcommand)]
enum SeatsCommand {
    /// List seats.
    List(ConfigArg),
}

/// mimalloc instead of glibc malloc: the proxy allocates and frees small
/// buffers on every request, where glibc's consolidation showed up in
/// profiles (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    portcullis::cli::init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => portcullis::cli::run(args),
        Command::Demo(args) => portcullis::demo::run(args),
        Command::DevIdp(args) => portcullis::cli::dev_idp(args),
        Command::Check(ConfigArg { config }) => portcullis::cli::check(&config),
        Command::Explain(args) => portcullis::cli::explain(args),
        Command::TestIdp(ConfigArg { config }) => portcullis::cli::test_idp(&config),
        Command::Scim {
            command: ScimCommand::RotateSecret(ConfigArg { config }),
        } => portcullis::cli::scim_rotate_secret(&config),
        Command::Keys {
            command: KeysCommand::Rotate(ConfigArg { config }),
        } => portcullis::cli::keys_rotate(&config),
        Command::Keys {
            command: KeysCommand::List(ConfigArg { config }),
        } => portcullis::cli::keys_list(&config),
        Command::Seats {
            command: SeatsCommand::List(ConfigArg { config }),
        } => portcullis::cli::seats_list(&config),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
