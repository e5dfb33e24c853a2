//! `ipop-tincan`: the switch-mode data plane. Creates the TAP, runs the event loop that
//! forwards frames between it and the UDP links, and takes orders from the controller over
//! JSON-RPC on 127.0.0.1:<port>.

mod control;
mod dataplane;
mod hostaddr;
mod neigh;
mod query;
mod state;
mod tap;
mod udp;

use clap::Parser;
use ipop_tincan::keys;
use std::process::ExitCode;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Parser, Debug)]
#[command(
    name = "ipop-tincan",
    about = "IPOP switch-mode data plane: joins the local bridge to peers over UDP links",
    long_about = "IPOP switch-mode data plane. Creates the TAP device (default \"ipop\"), forwards \
Ethernet frames between it and UDP links to peer tincans, and is configured by gvpn-controller \
over JSON-RPC on 127.0.0.1:<port>.\n\nThe original positional form `ipop-tincan <tapname> <port>` \
is accepted.",
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
    /// TAP MTU until the controller sets one
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u16).range(576..=9000))]
    mtu: u16,
    /// Open the TAP without a virtio-net header (the plain path); also IPOP_NO_OFFLOAD=1
    #[arg(long)]
    no_offload: bool,
    /// Print the version and exit (-v as the original tincan took it)
    #[arg(short = 'V', long = "version", visible_short_alias = 'v')]
    version: bool,
    /// Query tool: send one JSON-RPC request to 127.0.0.1:<port> (tincan, or a controller's
    /// icc_port) and print the result as JSON
    #[arg(long, value_name = "METHOD")]
    rpc: Option<String>,
    /// Params for --rpc, a JSON object
    #[arg(long, value_name = "JSON", requires = "rpc")]
    params: Option<String>,
    /// Key tool: print the fingerprint of the key in FILE (creating the key, mode 0600, if the
    /// file does not exist), for the "fpr" of this node in its peers' configs
    #[arg(long, value_name = "FILE", conflicts_with = "rpc")]
    key: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.version {
        println!("ipop-tincan {VERSION}");
        return ExitCode::SUCCESS;
    }
    let port = args.port.or(args.port_pos).unwrap_or(5800);
    if port == 0 {
        eprintln!("ipop-tincan: port: expected 1-65535, got 0");
        return ExitCode::from(2);
    }
    if let Some(path) = args.key {
        return match keys::load_or_create(&path) {
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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let tap = args.tap.or(args.tap_pos).unwrap_or_else(|| "ipop".into());
    let plain = args.no_offload || std::env::var("IPOP_NO_OFFLOAD").is_ok_and(|v| v == "1");
    let offload = if plain {
        tap::Offload::Plain
    } else {
        tap::Offload::Vnet
    };
    match dataplane::Node::new(&tap, port, args.mtu, offload).and_then(|mut n| n.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipop-tincan: {e}");
            ExitCode::FAILURE
        }
    }
}
