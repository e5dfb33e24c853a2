//! `gvpn-controller`: the switch-mode control plane. Reads the IPOP gvpn config, configures
//! ipop-tincan over JSON-RPC, keeps it configured across restarts, and replicates ARP between
//! the controllers of the overlay. This file reads the command line and
//! the config, sets up logging and runs the controller (the library) on a single-threaded tokio
//! runtime.

use clap::{CommandFactory, Parser};
use gvpn_controller::controller::Controller;
use gvpn_controller::source::ConfigSource;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "gvpn-controller",
    version,
    about = "IPOP switch-mode controller: configures ipop-tincan and replicates ARP across the overlay",
    long_about = "IPOP switch-mode controller. Reads the IPOP gvpn config (the original keys and \
defaults, plus \"peers\", \"bridge\", \"link_port\", \"tap_mtu\", \"link_mtu\"), configures ipop-tincan over its \
control socket @ipop-tincan/<svpn_port> (only when root or the controller's own user holds it), attaches its TAP to the bridge named in the config, and answers or \
replicates ARP for the hosts on that bridge. Status: `ipop-tincan --rpc get_state --port <icc_port>`.\n\n\
Started as root, it reads its config, then runs as an unprivileged user (--user; default \"ipop\", \
else \"nobody\") with CAP_NET_ADMIN only (to attach the TAP to the bridge) before it opens a socket \
or resolves a name: the config (read again on SIGHUP) and the directory of key_file (where \
<key_file>.learned is written) must be readable, and writable, by that user. Under a service manager \
that sets STATE_DIRECTORY (the ipop@.service unit does: /var/lib/ipop/<NET>), the learned keys go \
there instead."
)]
struct Args {
    /// The gvpn config file (JSON)
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Config as a JSON string; its keys override the file's
    #[arg(short = 's', long = "config-json", value_name = "JSON")]
    config_string: Option<String>,
    /// Write the config back (original flag; nothing is generated in switch mode)
    #[arg(short = 'u', long = "update")]
    update: bool,
    /// Peer IP map file (original flag; unused in switch mode)
    #[arg(short = 'p', long = "peer-map", value_name = "FILE")]
    peer_map: Option<PathBuf>,
    /// Check the config, print the result and exit
    #[arg(long)]
    check: bool,
    /// On SIGTERM or SIGINT, take the TAP off the bridge before exiting (the systemd unit's
    /// choice). Without it the TAP stays a port of the bridge, so that established flows go on
    /// through tincan while the controller restarts; it leaves the bridge when tincan stops.
    #[arg(long)]
    detach_on_exit: bool,
    #[arg(long, value_name = "NAME", help = ipop_service::privileges::USER_FLAG_HELP)]
    user: Option<String>,
    /// Print the man page (roff) and exit
    #[arg(long, hide = true)]
    man: bool,
    /// Print the config format's man page, ipop-config(5) (roff), and exit
    #[arg(long, hide = true)]
    man_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.man {
        return ipop_service::man::print(Args::command(), "8");
    }
    if args.man_config {
        print!("{}", proto::config::man_page(env!("CARGO_PKG_VERSION")));
        return ExitCode::SUCCESS;
    }
    if args.config.is_none() && args.config_string.is_none() {
        eprintln!(
            "gvpn-controller: no config: give -c config.json (and/or -s '{{...}}'); see --help"
        );
        return ExitCode::from(2);
    }
    let source = ConfigSource {
        file: args.config.clone(),
        overrides: args.config_string.clone(),
    };
    let (cfg, warnings) = match source.load() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gvpn-controller: {e}");
            return ExitCode::from(2);
        }
    };
    // RUST_LOG, when set, fixes the filter; otherwise the config's level, which a reload moves.
    let spec = std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty());
    ipop_service::logging::init(spec.as_deref(), cfg.controller_logging.level_filter());
    for w in &warnings {
        log::warn!("{w}");
    }
    if args.update {
        log::info!("-u: nothing to write back (switch mode derives the uid from ip4)");
    }
    if let Some(p) = &args.peer_map {
        log::warn!(
            "-p {}: the peer IP map is not used in switch mode; ignored",
            p.display()
        );
    }
    if args.check {
        println!(
            "config OK: uid {} ip4 {} peers {} bridge {}",
            cfg.uid(),
            cfg.ip4,
            cfg.peers.len(),
            cfg.bridge.as_deref().unwrap_or("(none)")
        );
        return ExitCode::SUCCESS;
    }
    // The key lives beside the config unless the config names it; tincan needs an absolute
    // path, since it runs in its own working directory.
    let key_file =
        ipop_service::private_file::key_path(cfg.key_file.as_deref(), args.config.as_deref());
    // Root is needed for nothing below: the sockets are on unprivileged ports, and the bridge
    // takes CAP_NET_ADMIN. Dropped before the runtime starts a thread, a socket is opened or a
    // name resolved, so that no TLS, XML, STUN or JSON from outside is parsed as root.
    // The control socket is bound first, as root: clients trust a socket that root holds.
    let admin = match gvpn_controller::controller::bind_admin_socket(cfg.icc_port) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gvpn-controller: {e}");
            return ExitCode::FAILURE;
        }
    };
    match ipop_service::privileges::RunAs::resolve(args.user.as_deref())
        .and_then(|who| ipop_service::privileges::drop_to(&who))
    {
        Ok(dropped) => log::info!("{dropped}"),
        Err(e) => {
            eprintln!("gvpn-controller: {e}");
            return ExitCode::FAILURE;
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gvpn-controller: cannot create the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = async {
        let mut c = Controller::with_admin_socket(cfg, key_file, admin).await?;
        c.reload_from(source, spec.is_none());
        c.detach_on_exit(args.detach_on_exit);
        c.run().await
    };
    match rt.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gvpn-controller: {e}");
            ExitCode::FAILURE
        }
    }
}
