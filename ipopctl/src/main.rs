//! `ipopctl`: the operator's tool. Asks both daemons for their state over their loopback
//! JSON-RPC ports and shows it as tables (or one JSON object), and makes and reads key files.
//! The daemons stay small: everything here is read-only on them.

mod client;
mod enrol;
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
use tincan::{hostaddr, keys};

/// Where configs live: `/etc/ipop/NET.json` per network (what the systemd units read).
const CONFIG_DIR: &str = "/etc/ipop";

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
    /// The gvpn config file (JSON): ports and peer names [default: /etc/ipop/NET.json with
    /// --net, else the only /etc/ipop/*.json if there is just one]
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// The network whose config is /etc/ipop/NET.json (the NET of ipop@NET.service)
    #[arg(
        short = 'n',
        long = "net",
        value_name = "NET",
        global = true,
        conflicts_with = "config"
    )]
    net: Option<String>,
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
    /// Print this node's invitation: one line that `ipopctl join` on another host turns into a
    /// `peers` entry (ip4, endpoint, key fingerprint), for networks without XMPP
    Invite {
        /// Where peers reach this node's tincan, HOST or HOST:PORT [default: this host's only
        /// address outside the overlay, and the config's link_port]
        #[arg(long, value_name = "HOST[:PORT]")]
        endpoint: Option<String>,
    },
    /// Set both daemons' log level now (as root or the daemons' user): off, error, warn, info
    /// or debug; until the next restart or reload
    LogLevel {
        #[arg(value_name = "LEVEL")]
        level: String,
    },
    /// Add the node of an invitation LINE (from `ipopctl invite`) to the config's `peers`;
    /// the controller links it on its next reload (SIGHUP)
    Join {
        #[arg(value_name = "LINE")]
        line: String,
        /// Replace an entry for the same ip4 that has another endpoint or key
        #[arg(long)]
        replace: bool,
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

/// The config file: `-c`, `--net`, else the only `/etc/ipop/*.json` (`None` when there is none
/// or several).
fn config_path(args: &Args) -> Result<Option<PathBuf>, String> {
    if let Some(path) = &args.config {
        return Ok(Some(path.clone()));
    }
    if let Some(net) = &args.net {
        if net.is_empty() || net.contains('/') || net.starts_with('.') {
            return Err(format!(
                "--net {net:?}: a network name, as in ipop@NET.service"
            ));
        }
        return Ok(Some(Path::new(CONFIG_DIR).join(format!("{net}.json"))));
    }
    let Ok(dir) = std::fs::read_dir(CONFIG_DIR) else {
        return Ok(None);
    };
    let mut found: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.pop()),
        0 => Ok(None),
        _ => {
            let names: Vec<String> = found
                .iter()
                .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect();
            eprintln!(
                "ipopctl: several networks in {CONFIG_DIR} ({}): choose one with --net; using the default ports",
                names.join(", ")
            );
            Ok(None)
        }
    }
}

/// The config a subcommand cannot do without, with its path.
fn required_config(args: &Args) -> Result<(PathBuf, Config), String> {
    let path = config_path(args)?.ok_or_else(|| {
        format!("no config: give one with -c FILE or --net NET ({CONFIG_DIR}/NET.json)")
    })?;
    let cfg = read_config(&path)?;
    Ok((path, cfg))
}

fn targets(args: &Args) -> Result<Targets, String> {
    let cfg = match config_path(args)? {
        Some(path) if args.config.is_some() || args.net.is_some() => Some(read_config(&path)?),
        Some(path) => match read_config(&path) {
            Ok(cfg) => Some(cfg),
            Err(e) => {
                eprintln!("ipopctl: {e}; using the default ports");
                None
            }
        },
        None => None,
    };
    let defaults = Config::default();
    let cfg_ref = cfg.as_ref().unwrap_or(&defaults);
    Ok(targets_of(
        cfg_ref,
        args,
        cfg.as_ref()
            .map(|c| c.peers.iter().map(|p| p.ip4).collect()),
    ))
}

fn targets_of(cfg: &Config, args: &Args, config_peers: Option<Vec<Ipv4Addr>>) -> Targets {
    let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
    Targets {
        tincan: Daemon {
            name: "tincan",
            addr: local(args.tincan_port.unwrap_or(cfg.svpn_port)),
        },
        controller: Daemon {
            name: "controller",
            addr: local(args.controller_port.unwrap_or(cfg.icc_port)),
        },
        config_peers: config_peers.unwrap_or_default(),
    }
}

/// tincan's state, when it answers (for what a subcommand can also learn elsewhere).
fn tincan_state(t: &Targets) -> Option<LocalState> {
    let req = TincanRequest::from(GetState::default()).request(1);
    client::call::<LocalState>(t.tincan.addr, &req, 1).ok()
}

/// `ipopctl invite`: this node's line.
fn invite(args: &Args, endpoint: Option<&str>) -> Result<enrol::Invite, String> {
    let (path, cfg) = required_config(args)?;
    let t = targets_of(&cfg, args, None);
    let endpoint = match endpoint {
        // HOST:PORT as written, else a HOST (IPv6 literals too) with the config's link_port.
        Some(e) => match e.parse::<proto::hostport::HostPort>() {
            Ok(hp) => hp,
            Err(_) => format!("{}:{}", bracket_v6(e), cfg.link_port)
                .parse()
                .map_err(|err| format!("--endpoint {e:?}: {err}"))?,
        },
        None => default_endpoint(&cfg)?,
    };
    let fpr = if cfg.sec {
        Some(fingerprint(&path, &cfg, &t)?)
    } else {
        None
    };
    Ok(enrol::Invite {
        ip4: cfg.ip4,
        endpoint,
        fpr,
    })
}

/// An IPv6 literal in brackets, so that a port can follow.
fn bracket_v6(host: &str) -> String {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// This host's one address outside the overlay (not the TAP, the bridge, the config's
/// network_ignore_list, or in the overlay's network) with the link port.
fn default_endpoint(cfg: &Config) -> Result<proto::hostport::HostPort, String> {
    let mut ignore = cfg.network_ignore_list.clone();
    ignore.extend(cfg.bridge.clone());
    ignore.push("ipop".into());
    let overlay = |ip: &std::net::IpAddr| match ip {
        std::net::IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(cfg.ip4_mask))
                .unwrap_or(0);
            u32::from(*v4) & mask == u32::from(cfg.ip4) & mask
        }
        _ => false,
    };
    let addrs: Vec<_> = hostaddr::host_addresses(&ignore)
        .into_iter()
        .filter(|ip| !overlay(ip))
        .collect();
    match addrs.as_slice() {
        [ip] => Ok(SocketAddr::new(*ip, cfg.link_port).into()),
        [] => Err("this host has no address outside the overlay: give --endpoint HOST[:PORT]".into()),
        many => Err(format!(
            "this host has several addresses ({}): say which one peers reach with --endpoint              HOST[:PORT] (behind NAT: the public address and forwarded port)",
            many.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The fingerprint of this node's key: from the key file (beside the config unless the config
/// names it), else from the running tincan.
fn fingerprint(path: &Path, cfg: &Config, t: &Targets) -> Result<proto::id::Fingerprint, String> {
    let key_file = cfg
        .key_file
        .clone()
        .unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")).join("ipop.key"));
    match keys::load(&key_file) {
        Ok(key) => Ok(key.fingerprint()),
        Err(file_error) => tincan_state(t).and_then(|s| s.fpr).ok_or_else(|| {
            format!(
                "{file_error}; and tincan on {} does not say its key either",
                t.tincan.addr
            )
        }),
    }
}

/// The level names `log-level` takes (the config's Python names too), as the controller's
/// level and tincan's `set_logging` value.
fn parse_level(name: &str) -> Result<(&'static str, u8), String> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "off" | "none" => ("off", 0),
        "error" | "critical" => ("error", 1),
        "warn" | "warning" => ("warn", 1),
        "info" => ("info", 2),
        "debug" | "trace" | "pktdump" => ("debug", 3),
        _ => {
            return Err(format!(
                "log-level {name:?}: expected off, error, warn, info or debug"
            ))
        }
    })
}

/// `ipopctl log-level LEVEL`: both daemons, over their control sockets.
fn log_level(args: &Args, name: &str) -> Result<ExitCode, String> {
    let (level, tincan_value) = parse_level(name)?;
    let t = targets(args)?;
    let answers = [
        (
            "tincan",
            tincan::ctl_client::call(
                "tincan",
                &proto::rpc_stream::socket_name(t.tincan.addr.port()),
                "set_logging",
                serde_json::json!({ "logging": tincan_value }),
            ),
        ),
        (
            "controller",
            tincan::ctl_client::call(
                "controller",
                &proto::rpc_stream::controller_socket_name(t.controller.addr.port()),
                "set_log_level",
                serde_json::json!({ "level": level }),
            ),
        ),
    ];
    let mut ok = true;
    for (daemon, answer) in answers {
        match answer {
            Ok(v) => {
                let now = v["level"].as_str().unwrap_or("?");
                if v["fixed_by_rust_log"] == true {
                    ok = false;
                    println!("{daemon}: {now} (RUST_LOG sets its level; unchanged)");
                } else {
                    println!("{daemon}: {now}");
                }
            }
            Err(e) => {
                ok = false;
                eprintln!("ipopctl: {daemon}: {e}");
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `ipopctl join LINE`.
fn join(args: &Args, line: &str, replace: bool) -> Result<(), String> {
    let invite: enrol::Invite = line.parse()?;
    let (path, _) = required_config(args)?;
    let name = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
    let (out, joined) = enrol::add_peer(&text, &name, &invite, replace)?;
    let what = match joined {
        enrol::Joined::AlreadyThere => {
            eprintln!(
                "ipopctl: {name} already has peer {} as invited; nothing changed",
                invite.ip4
            );
            return Ok(());
        }
        enrol::Joined::Added => "added",
        enrol::Joined::Replaced => "replaced",
    };
    enrol::write_atomically(&path, &out)?;
    let reload = match path.parent().zip(path.file_stem()) {
        Some((dir, net)) if dir == Path::new(CONFIG_DIR) => {
            format!("systemctl reload ipop@{}", net.to_string_lossy())
        }
        _ => "kill -HUP <the gvpn-controller's pid>".to_string(),
    };
    eprintln!(
        "ipopctl: {what} peer {} (endpoint {}) in {name}",
        invite.ip4, invite.endpoint
    );
    eprintln!("ipopctl: to link it now: {reload}");
    eprintln!(
        "ipopctl: {} needs this node too: run `ipopctl invite` here and `ipopctl join LINE` there",
        invite.ip4
    );
    Ok(())
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
        Command::Invite { endpoint } => {
            println!("{}", invite(&args, endpoint.as_deref())?);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Join { line, replace } => {
            join(&args, line, *replace)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::LogLevel { level } => return log_level(&args, level),
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
        Command::Genkey { .. }
        | Command::Pubkey { .. }
        | Command::Invite { .. }
        | Command::Join { .. }
        | Command::LogLevel { .. } => unreachable!("handled above"),
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
