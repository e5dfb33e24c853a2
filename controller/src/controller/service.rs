//! Running as a service: readiness (sd_notify `READY=1` once tincan is configured and its TAP
//! is on the bridge), the reload on SIGHUP and the clean shutdown on SIGTERM or SIGINT.

use super::{resolve_peer, Controller, StaticPeer};
use crate::source::ConfigSource;
use ipop_service::{logging, notify};
use log::{error, info, warn};
use proto::api::tincan::{CreateLink, SetLogging, TrimLink};
use proto::config::Reload;

impl Controller {
    /// Where SIGHUP reads the config again; `log_follows_config`: the log level comes from
    /// `controller_logging` (no `RUST_LOG`), so a reload may change it.
    pub fn reload_from(&mut self, source: ConfigSource, log_follows_config: bool) {
        self.source = Some(source);
        self.log_follows_config = log_follows_config;
    }

    /// Whether SIGTERM and SIGINT take the TAP off the bridge (`--detach-on-exit`).
    pub fn detach_on_exit(&mut self, detach: bool) {
        self.detach_on_exit = detach;
    }

    /// Called after each `get_state` answer: tells the service manager we are ready the first
    /// time tincan reports itself configured by us and its TAP is on the bridge (when the config
    /// names one).
    pub(super) fn check_ready(&mut self, boot: u64, configured: bool) {
        if self.ready || !configured || self.configured_boot != Some(boot) {
            return;
        }
        let on_bridge = self.bridge_attached_boot == Some(boot);
        if self.cfg.bridge.is_some() && !on_bridge {
            return;
        }
        self.ready = true;
        let tap = self.tap_name.as_deref().unwrap_or("?");
        let status = match &self.cfg.bridge {
            Some(b) => format!("tincan configured, TAP {tap} on bridge {b}"),
            None => format!("tincan configured, TAP {tap} (no bridge in the config)"),
        };
        info!("ready: {status}");
        notify::ready(&status);
    }

    /// SIGHUP: reads the config again and applies what can be applied (see
    /// [`proto::config::Reload`]); a config that does not load changes nothing.
    pub(super) async fn reload(&mut self) {
        let Some(source) = self.source.clone() else {
            warn!("SIGHUP: no config source to read again; nothing changed");
            return;
        };
        notify::reloading();
        self.reload_source(&source).await;
        notify::ready("reloaded");
    }

    async fn reload_source(&mut self, source: &ConfigSource) {
        let name = source.name();
        let new = match source.load() {
            Ok((new, warnings)) => {
                for w in &warnings {
                    warn!("{w}");
                }
                new
            }
            Err(e) => {
                error!("SIGHUP: config refused, the running one stays: {e}");
                return;
            }
        };
        let plan = Reload::plan(&self.cfg, &new);
        // Added peers' names are looked up before anything changes, so that a name that does
        // not resolve refuses the reload whole.
        let mut linked = Vec::with_capacity(plan.link.len());
        for p in &plan.link {
            let i = new.peers.iter().position(|q| q.uid == p.uid).unwrap_or(0);
            match resolve_peer(i, &p.endpoint).await {
                Ok(endpoint) => linked.push(StaticPeer {
                    uid: p.uid,
                    endpoint,
                    fpr: p.fpr,
                }),
                Err(e) => {
                    error!("SIGHUP: config refused, the running one stays: {name}: {e}");
                    return;
                }
            }
        }
        // From here on the reload is applied: the running config takes the reloadable keys.
        self.cfg = plan.config.clone();
        for uid in &plan.trim {
            self.peers.retain(|p| p.uid != *uid);
            self.peer_online.remove(uid);
            let withdrawn = self.neigh.remove_owner(*uid);
            info!("SIGHUP: trimming the link to {uid}; {withdrawn} neighbour entries withdrawn");
            self.send_rpc(TrimLink { uid: *uid });
        }
        for p in linked {
            info!("SIGHUP: linking {} at {}", p.uid, p.endpoint);
            self.peer_online.insert(p.uid, false);
            self.send_rpc(CreateLink {
                uid: p.uid,
                endpoint: Some(p.endpoint),
                candidates: Vec::new(),
                fpr: p.fpr,
            });
            self.peers.push(p);
        }
        if plan.applied.contains(&"tincan_logging") {
            self.send_rpc(SetLogging {
                logging: plan.config.tincan_logging,
            });
        }
        if plan.applied.iter().any(|k| k.starts_with("storm_")) {
            // set_local_ip carries the rates (from self.cfg); configuring again is idempotent.
            self.configure_tincan();
        }
        if plan.applied.contains(&"controller_logging") {
            if self.log_follows_config {
                logging::set_level(plan.config.controller_logging.level_filter());
            } else {
                warn!("SIGHUP: \"controller_logging\" changed, but RUST_LOG sets the log level");
            }
        }
        if !plan.need_restart.is_empty() {
            warn!(
                "SIGHUP: {name}: changed keys need a restart and keep their running values: {}",
                plan.need_restart.join(", ")
            );
        }
        info!(
            "SIGHUP: reloaded {name}: {} peers ({} linked, {} trimmed){}",
            plan.config.peers.len(),
            plan.link.len(),
            plan.trim.len(),
            if plan.applied.is_empty() {
                String::new()
            } else {
                format!("; applied: {}", plan.applied.join(", "))
            }
        );
        self.cfg = plan.config;
    }

    /// SIGTERM or SIGINT: takes the TAP off the bridge (with `--detach-on-exit`) and logs out
    /// of XMPP. The links stay: tincan (a unit of its own, not started by the controller)
    /// tells its peers when it stops, and they drop the links at once. Without the flag
    /// the TAP stays on the bridge, so that a controller restart loses no established flow.
    pub(super) async fn shutdown(&mut self, signal: &str) {
        info!("{signal}: shutting down");
        notify::stopping();
        let detach = if self.detach_on_exit {
            self.cfg.bridge.clone().zip(self.tap_name.clone())
        } else {
            None
        };
        if let Some((bridge, tap)) = detach {
            if let Some(netlink) = self.netlink.as_ref() {
                match netlink.detach(&tap, &bridge).await {
                    Ok(true) => info!("took {tap} off bridge {bridge}"),
                    Ok(false) => {}
                    Err(e) => error!("cannot take {tap} off {bridge}: {e}"),
                }
            }
        }
        if let Some(x) = self.xmpp.take() {
            x.stop().await;
        }
    }
}
