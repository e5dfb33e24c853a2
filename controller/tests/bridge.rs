//! Attaching a TAP to a bridge over netlink (`controller/src/bridge.rs`), in a fresh network
//! namespace with a bridge, a veth pair and a TAP. Needs root; skipped otherwise, unless
//! CI=true, where that is a failure.

use gvpn_controller::bridge::{Attached, BridgeError, Netlink};
use std::fs;
use std::os::fd::AsRawFd;
use std::process::Command;

fn run(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip_link_show(ns: &str, dev: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", "dev", dev])
        .output()
        .expect("run ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn tap_is_attached_to_the_bridge_and_errors_name_the_interface() {
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but this test needs root"
        );
        println!("skipped: needs root");
        return;
    }
    let ns = Netns(format!("brtest{}", std::process::id()));
    run(&["netns", "add", &ns.0]);
    let n = ns.0.as_str();
    run(&["-n", n, "link", "add", "br0", "type", "bridge"]);
    run(&[
        "-n", n, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
    ]);
    run(&["-n", n, "tuntap", "add", "dev", "tap0", "mode", "tap"]);
    let path = format!("/run/netns/{n}");
    // The netlink socket is opened on a thread that entered the namespace.
    std::thread::scope(|s| {
        s.spawn(|| {
            let f = fs::File::open(&path).unwrap();
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let nl = Netlink::new().unwrap();
                assert_eq!(nl.attach("tap0", "br0").await, Ok(Attached::Now));
                // sysfs still shows the test's own namespace: ask `ip` about this one.
                let shown = ip_link_show(n, "tap0");
                assert!(shown.contains(" master br0 "), "{shown}");
                assert!(shown.contains(",UP") || shown.contains("<UP"), "{shown}");
                assert_eq!(nl.attach("tap0", "br0").await, Ok(Attached::Already));

                let e = nl.attach("tap0", "lxcbr9").await.unwrap_err();
                assert_eq!(e, BridgeError::NoBridge("lxcbr9".into()));
                assert!(e.to_string().contains("\"lxcbr9\""), "{e}");
                let e = nl.attach("tap0", "veth0").await.unwrap_err();
                assert!(matches!(e, BridgeError::NotABridge(..)), "{e:?}");
                assert!(
                    e.to_string().contains("\"veth0\"")
                        && e.to_string().contains("a veth interface"),
                    "{e}"
                );
                let e = nl.attach("tap9", "br0").await.unwrap_err();
                assert_eq!(e, BridgeError::NoTap("tap9".into()));
            });
        });
    });
}
