//! `ipop-tincan`: the switch-mode data plane. Creates the TAP, runs the event loop that
//! forwards frames between it and the UDP links, and takes orders from the controller over
//! JSON-RPC on 127.0.0.1:<port>.

mod control;
mod control_sock;
mod dataplane;

mod neigh;
mod query;
mod signals;
mod state;
mod tap;
mod udp;

use clap::{CommandFactory, Parser};
use ipop_tincan::keys;
use std::process::ExitCode;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Parser, Debug)]
#[command(
    name = "ipop-tincan",
    about = "IPOP switch-mode data plane: joins the local bridge to peers over UDP links",
    long_about = "IPOP switch-mode data plane. Creates the TAP device (default \"ipop\"), forwards \
Ethernet frames between it and UDP links to peer tincans, and is configured by gvpn-controller \
over JSON-RPC on the control socket @ipop-tincan/<port> (an abstract Unix socket: only root and \
tincan's own user may change state, by their kernel credentials). 127.0.0.1:<port> (UDP) answers \
the read-only get_state and echo_request to any local user.\n\nThe original positional form `ipop-tincan <tapname> <port>` \
is accepted.\n\nStarted as root, it opens the TAP, binds its control sockets and reads its key \
(with --config), then runs as an unprivileged user (--user; default \"ipop\", else \"nobody\") with \
CAP_NET_ADMIN only, before it reads anything from the network or the controller. A key file must \
be a regular file (not a symbolic link) owned by root or that user, mode 600; a missing one is \
an error unless --create-key.",
    disable_version_flag = true
)]
struct Args {
    /// TAP device name (original positional form)
    #[arg(value_name = "TAPNAME")]
    tap_pos: Option<String>,
    /// Control port on 127.0.0.1 (original positional form)
    #[arg(value_name = "PORT")]
    port_pos: Option<u16>,
    /// TAP device name
    #[arg(long = "tap", value_name = "NAME", conflicts_with = "tap_pos")]
    tap: Option<String>,
    /// Control port on 127.0.0.1 (the config's svpn_port)
    #[arg(long = "port", value_name = "PORT", conflicts_with = "port_pos")]
    port: Option<u16>,
    /// TAP MTU until the controller sets one [default: 1500, or the config's tap_mtu]
    #[arg(long, value_parser = clap::value_parser!(u16).range(576..=9000))]
    mtu: Option<u16>,
    /// Open the TAP without a virtio-net header (the plain path); also IPOP_NO_OFFLOAD=1
    #[arg(long)]
    no_offload: bool,
    /// The gvpn config (JSON) the controller reads: the control port is its svpn_port and
    /// the TAP's first MTU its tap_mtu (how the systemd unit starts tincan)
    #[arg(short = 'c', long = "config", value_name = "FILE",
          conflicts_with_all = ["port", "port_pos"])]
    config: Option<std::path::PathBuf>,
    /// Print the man page (roff) and exit
    #[arg(long, hide = true)]
    man: bool,
    /// Print the version and exit (-v as the original tincan took it)
    #[arg(short = 'V', long = "version", visible_short_alias = 'v')]
    version: bool,
    /// Query tool: send one JSON-RPC request to 127.0.0.1:<port> (tincan, or a controller's
    /// icc_port), or over @ipop-tincan/<port> for tincan's methods that change state, and
    /// print the result as JSON
    #[arg(long, value_name = "METHOD")]
    rpc: Option<String>,
    /// Params for --rpc, a JSON object
    #[arg(long, value_name = "JSON", requires = "rpc")]
    params: Option<String>,
    /// Key tool: print the fingerprint of the key in FILE, for the "fpr" of this node in its
    /// peers' configs (a missing FILE is an error unless --create-key: make keys with
    /// `ipopctl genkey FILE`)
    #[arg(long, value_name = "FILE", conflicts_with = "rpc")]
    key: Option<std::path::PathBuf>,
    /// Create the key file (mode 0600) if it does not exist: the key tool's FILE, the config's
    /// key_file, or set_local_ip's key_file (as the config's "create_key": true). Without it a
    /// missing key is an error
    #[arg(long)]
    create_key: bool,
    #[arg(long, value_name = "NAME", help = ipop_service::privileges::USER_FLAG_HELP)]
    user: Option<String>,
}

/// What tincan takes from the gvpn config.
struct FromConfig {
    port: u16,
    mtu: u16,
    /// The key's path when links are encrypted ("sec").
    key: Option<std::path::PathBuf>,
    create_key: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.version {
        println!("ipop-tincan {VERSION}");
        return ExitCode::SUCCESS;
    }
    if args.man {
        return ipop_service::man::print(Args::command(), "8");
    }
    let from_config = match args.config.as_deref().map(config_ports).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ipop-tincan: {e}");
            return ExitCode::from(2);
        }
    };
    let port = args
        .port
        .or(args.port_pos)
        .or(from_config.as_ref().map(|c| c.port))
        .unwrap_or(5800);
    let mtu = args
        .mtu
        .or(from_config.as_ref().map(|c| c.mtu))
        .unwrap_or(1500);
    if port == 0 {
        eprintln!("ipop-tincan: port: expected 1-65535, got 0");
        return ExitCode::from(2);
    }
    if let Some(path) = args.key {
        return match keys::load_for_tool(&path, args.create_key) {
            Ok((key, created)) => {
                if created {
                    eprintln!("ipop-tincan: created key file {}", path.display());
                }
                println!("{}", key.fingerprint());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ipop-tincan: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(method) = args.rpc {
        return query::run(port, &method, args.params.as_deref());
    }
    // Blocked before anything else runs, so that no signal is delivered the old way.
    let signals = match signals::Signals::block() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ipop-tincan: cannot watch signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let spec = std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty());
    ipop_service::logging::init(spec.as_deref(), log::LevelFilter::Info);
    let tap = args.tap.or(args.tap_pos).unwrap_or_else(|| "ipop".into());
    let plain = args.no_offload || std::env::var("IPOP_NO_OFFLOAD").is_ok_and(|v| v == "1");
    let offload = if plain {
        tap::Offload::Plain
    } else {
        tap::Offload::Vnet
    };
    // Who we run as, and the key, are settled while we are still root.
    let who = match ipop_service::privileges::RunAs::resolve(args.user.as_deref()) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("ipop-tincan: {e}");
            return ExitCode::from(2);
        }
    };
    let (key, create_key) = match &from_config {
        Some(c) => (c.key.as_deref(), args.create_key || c.create_key),
        None => (None, args.create_key),
    };
    let policy = keys::Policy {
        owners: who.file_owners(),
        create: create_key,
    };
    match policy.preload(key) {
        Ok(created) => {
            if let (true, Some(k)) = (created, key) {
                log::info!("generated key file {} (--create-key)", k.display());
            }
        }
        Err(e) => {
            eprintln!("ipop-tincan: {e}");
            return ExitCode::FAILURE;
        }
    }
    let run = dataplane::Node::new(&tap, port, mtu, offload).and_then(|mut n| {
        // The TAP and the control socket exist: nothing else needs root, and nothing from
        // the network or the controller has been read yet.
        let dropped = ipop_service::privileges::drop_to(&who).map_err(std::io::Error::other)?;
        log::info!("{dropped}");
        n.watch_signals(signals)?;
        // The TAP is up with its MTU and the control port is bound: the controller can
        // configure us now.
        ipop_service::notify::ready(&format!(
            "TAP {} up, control on 127.0.0.1:{port}",
            n.tap.name
        ));
        let r = n.run();
        ipop_service::notify::stopping();
        r
    });
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipop-tincan: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The control port (svpn_port), the TAP's first MTU (tap_mtu) and the key from the gvpn
/// config, checked as the controller checks it.
fn config_ports(path: &std::path::Path) -> Result<FromConfig, String> {
    use proto::config::{Config, ConfigError};
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(&name, &e).0)?;
    let (cfg, _) = Config::from_json_str(&text, &name).map_err(|e| e.0)?;
    Ok(FromConfig {
        port: cfg.svpn_port,
        mtu: cfg.tap_mtu,
        key: cfg
            .sec
            .then(|| ipop_service::private_file::key_path(cfg.key_file.as_deref(), Some(path))),
        create_key: cfg.create_key,
    })
}
