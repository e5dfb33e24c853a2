//! `ipopctl`: the operator's tool. Asks both daemons for their state over their loopback
//! JSON-RPC ports and shows it as tables (or one JSON object), and makes and reads key files.
//! The daemons stay small: everything here is read-only on them.

mod client;
mod render;
mod report;

use clap::{CommandFactory, Parser, Subcommand};
use client::{CallError, Daemon};
use proto::api::controller::{ControllerRequest, ControllerState};
use proto::api::tincan::{GetState, LocalState, TincanRequest};
use proto::config::{Config, ConfigError};
use report::{DaemonAnswer, Status};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tincan::keys;

/// Read when `-c` is not given, if it exists.
const DEFAULT_CONFIG: &str = "/etc/ipop/config.json";

#[derive(Parser, Debug)]
#[command(
    name = "ipopctl",
    version,
    about = "IPOP operator's tool: status of ipop-tincan and gvpn-controller, peers, MACs, neighbours, keys",
    long_about = "IPOP operator's tool. Asks ipop-tincan (127.0.0.1:<svpn_port>) and \
gvpn-controller (127.0.0.1:<icc_port>) for their state and shows it as tables, or with --json \
as one object (docs/ipopctl.md). The ports come from the config file (-c, default \
/etc/ipop/config.json if it exists), else from --tincan-port and --controller-port. Each daemon \
has 1 s to answer. Exit status: 0 when every daemon asked answered, 1 otherwise or on an \
error (one line on stderr), 2 for a bad command line."
)]
struct Args {
    /// The gvpn config file (JSON): ports and peer names [default: /etc/ipop/config.json if it exists]
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// ipop-tincan's control port, instead of the config's svpn_port [default: 5800]
    #[arg(long, value_name = "PORT", global = true,
          value_parser = clap::value_parser!(u16).range(1..))]
    tincan_port: Option<u16>,
    /// gvpn-controller's port, instead of the config's icc_port [default: 30000]
    #[arg(long, value_name = "PORT", global = true,
          value_parser = clap::value_parser!(u16).range(1..))]
    controller_port: Option<u16>,
    /// Print JSON instead of tables (docs/ipopctl.md)
    #[arg(long, global = true)]
    json: bool,
    /// Print the man page (roff) and exit
    #[arg(long, hide = true)]
    man: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// This node, a row per peer, the neighbour table and what is wrong (the default)
    Status,
    /// One row per peer: link state, path, endpoint, RTT, handshake, traffic, MACs
    Peers,
    /// The MAC addresses tincan forwards to each peer
    Macs,
    /// The controller's ARP table: IP, MAC and the host or peer that owns it
    Neigh,
    /// Write a new private key to FILE (mode 0600; never overwrites) and print its fingerprint
    Genkey {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the fingerprint of the key in FILE: the "fpr" its peers' configs pin
    Pubkey {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Where the daemons are, and the config's peers (for names).
struct Targets {
    tincan: Daemon,
    controller: Daemon,
    config_peers: Vec<Ipv4Addr>,
}

fn read_config(path: &Path) -> Result<Config, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::unreadable(&name, &e).to_string())?;
    Config::from_json_str(&text, &name)
        .map(|(cfg, _warnings)| cfg)
        .map_err(|e| e.to_string())
}

fn targets(args: &Args) -> Result<Targets, String> {
    let cfg = match &args.config {
        Some(path) => Some(read_config(path)?),
        None if Path::new(DEFAULT_CONFIG).exists() => {
            match read_config(Path::new(DEFAULT_CONFIG)) {
                Ok(cfg) => Some(cfg),
                Err(e) => {
                    eprintln!("ipopctl: {e}; using the default ports");
                    None
                }
            }
        }
        None => None,
    };
    let defaults = Config::default();
    let cfg_ref = cfg.as_ref().unwrap_or(&defaults);
    let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
    Ok(Targets {
        tincan: Daemon {
            name: "tincan",
            addr: local(args.tincan_port.unwrap_or(cfg_ref.svpn_port)),
        },
        controller: Daemon {
            name: "controller",
            addr: local(args.controller_port.unwrap_or(cfg_ref.icc_port)),
        },
        config_peers: cfg
            .as_ref()
            .map(|c| c.peers.iter().map(|p| p.ip4).collect())
            .unwrap_or_default(),
    })
}

/// Both daemons' `get_state`, asked at the same time.
fn query(t: &Targets) -> Status {
    let get = GetState::default();
    let (tincan, controller) = std::thread::scope(|s| {
        let tincan = s.spawn(|| {
            let req = TincanRequest::from(get.clone()).request(1);
            client::call::<LocalState>(t.tincan.addr, &req, 1)
        });
        let req = ControllerRequest::from(get.clone()).request(1);
        let controller = client::call::<ControllerState>(t.controller.addr, &req, 1);
        let tincan = tincan
            .join()
            .unwrap_or_else(|_| Err(CallError::Io("query thread failed".into())));
        (tincan, controller)
    });
    report::assemble(
        DaemonAnswer::new(t.tincan, tincan),
        DaemonAnswer::new(t.controller, controller),
        &t.config_peers,
    )
}

fn print_json(v: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("the report serialises")
    );
}

/// `v` as JSON, or as the table `render` makes of it.
fn show<T: serde::Serialize + ?Sized>(json: bool, v: &T, render: impl FnOnce(&T) -> String) {
    if json {
        print_json(&v);
    } else {
        print!("{}", render(v));
    }
}

/// The error of the daemon a subcommand needs, or nothing.
fn needed<T>(answer: &DaemonAnswer<T>) -> Result<(), String> {
    match &answer.error {
        Some(e) => Err(e.clone()),
        None => Ok(()),
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    let command = args.command.as_ref().unwrap_or(&Command::Status);
    match command {
        Command::Genkey { file } => {
            let key = keys::create(file)?;
            eprintln!("ipopctl: wrote a new key to {} (mode 0600)", file.display());
            println!("{}", key.fingerprint());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Pubkey { file } => {
            println!("{}", keys::load(file)?.fingerprint());
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let targets = targets(&args)?;
    let s = query(&targets);
    match command {
        Command::Status => {
            if let (Some(t), Some(c)) = (&s.tincan.error, &s.controller.error) {
                return Err(format!("{t}; {c}"));
            }
            show(args.json, &s, render::status);
            let all_answered = s.tincan.error.is_none() && s.controller.error.is_none();
            return Ok(if all_answered {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Peers => {
            needed(&s.tincan)?;
            show(args.json, s.peers.as_slice(), render::peers);
        }
        Command::Macs => {
            needed(&s.tincan)?;
            show(args.json, s.macs.as_slice(), render::macs);
        }
        Command::Neigh => {
            needed(&s.controller)?;
            show(args.json, s.neigh.as_slice(), render::neigh);
        }
        Command::Genkey { .. } | Command::Pubkey { .. } => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.man {
        return ipop_service::man::print(Args::command(), "8");
    }
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ipopctl: {e}");
            ExitCode::FAILURE
        }
    }
}
