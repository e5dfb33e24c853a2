//! The NAT lab (scripts/natlab.sh) from the tests: bring it up, run its commands, read the
//! daemons' state and logs; torn down when dropped, also after a failure.
#![allow(dead_code)] // each test binary uses a part

use ipop_lab_tests::{bin_dir, prefix, workspace_root};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Instant;

pub struct NatLab {
    pub prefix: String,
    pub nats: String,
    pub dir: PathBuf,
    pub up_secs: f64,
    /// `LAB_V6=1`: the hosts also have routed IPv6 behind their routers' stateful firewalls.
    pub v6: bool,
    /// `LAB_NO_DAEMONS=1`: `up` starts no IPOP daemon (the test starts them).
    pub no_daemons: bool,
}

impl NatLab {
    pub fn script(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(workspace_root().join("scripts/natlab.sh"))
            .args(args)
            .env("LAB_PREFIX", &self.prefix)
            .env("LAB_DIR", &self.dir)
            .env("LAB_NATS", &self.nats)
            .env("IPOP_BIN_DIR", bin_dir())
            .env("LAB_WAIT", "60")
            .env("LAB_V6", if self.v6 { "1" } else { "0" })
            .env("LAB_NO_DAEMONS", if self.no_daemons { "1" } else { "0" })
            .output()
            .expect("bash runs")
    }

    pub fn up(tag: &str, nats: &str) -> NatLab {
        NatLab::up_v6(tag, nats, false)
    }

    pub fn up_v6(tag: &str, nats: &str, v6: bool) -> NatLab {
        NatLab::up_opts(tag, nats, v6, false)
    }

    /// The namespaces, NATs and servers, without IPOP daemons.
    pub fn up_bare(tag: &str, nats: &str) -> NatLab {
        NatLab::up_opts(tag, nats, false, true)
    }

    pub fn up_opts(tag: &str, nats: &str, v6: bool, no_daemons: bool) -> NatLab {
        let p = prefix(tag);
        let mut lab = NatLab {
            dir: std::env::temp_dir().join(format!("ipop-natlab-{p}")),
            prefix: p,
            nats: nats.to_string(),
            up_secs: 0.0,
            v6,
            no_daemons,
        };
        let t = Instant::now();
        let out = lab.script(&["up"]);
        lab.up_secs = t.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "natlab up failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    pub fn ok(&self, args: &[&str]) {
        let out = self.script(args);
        assert!(
            out.status.success(),
            "natlab {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
        let mut a = vec!["exec", node];
        a.extend_from_slice(args);
        self.script(&a)
    }

    pub fn state(&self, host: &str) -> Value {
        self.rpc_state(host, 5800)
    }

    /// `get_state` of the daemon on 127.0.0.1:`port` in `host` (tincan 5800, the controller
    /// its icc_port); null when it does not answer.
    pub fn rpc_state(&self, host: &str, port: u16) -> Value {
        let tool = bin_dir().join("ipop-tincan");
        let port = port.to_string();
        let out = self.exec(
            host,
            &[
                "timeout",
                "10",
                tool.to_str().unwrap(),
                "--rpc",
                "get_state",
                "--port",
                &port,
            ],
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    pub fn links(&self, host: &str) -> Vec<(String, String, String)> {
        self.state(host)["peers"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        (
                            p["uid"].as_str().unwrap_or("").to_string(),
                            p["status"].as_str().unwrap_or("").to_string(),
                            p["path"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn uid(&self, host: &str) -> String {
        self.state(host)["_uid"].as_str().unwrap_or("").to_string()
    }

    pub fn all_online(&self, hosts: &[&str]) -> bool {
        hosts.iter().all(|h| {
            let l = self.links(h);
            l.len() == hosts.len() - 1 && l.iter().all(|(_, s, _)| s == "online")
        })
    }

    /// Pings `to` from container `from`: (received, duplicates).
    pub fn ping(&self, from: &str, to: &str, count: u32) -> (u32, bool, String) {
        let c = count.to_string();
        let out = self.exec(
            from,
            &[
                "ping", "-n", "-c", &c, "-i", "0.2", "-W", "1", "-w", "8", to,
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let received = text
            .lines()
            .find(|l| l.contains("received"))
            .and_then(|l| l.split(", ").nth(1))
            .and_then(|w| w.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        (received, text.contains("DUP!"), text)
    }

    pub fn log(&self, host: &str, daemon: &str) -> String {
        std::fs::read_to_string(self.dir.join(host).join(format!("{daemon}.log")))
            .unwrap_or_default()
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let out = self.script(&["status"]);
            eprintln!("{}", String::from_utf8_lossy(&out.stdout));
            for h in ["h1", "h2", "h3", "h4"] {
                for d in ["tincan", "controller"] {
                    let l = self.log(h, d);
                    let tail: Vec<&str> = l.lines().rev().take(15).collect();
                    eprintln!(
                        "--- {h} {d}:\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
            }
        }
        let _ = self.script(&["down"]);
    }
}

pub fn ip(c: &str) -> String {
    // h<i>c<j> -> 10.0.3.<i><j>
    format!("10.0.3.{}{}", &c[1..2], &c[3..4])
}
