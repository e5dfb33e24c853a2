//! Helpers for labs of many hosts (`LAB_HOSTS` 10 to 32, one container per host at
//! 10.0.3.(100+I)) and for counting the link datagrams on the underlay.

use crate::{Lab, PingOpts, PingResult};
use std::collections::{BTreeMap, HashMap};

/// Datagrams a host sent to (`tx`) and received from (`rx`) each underlay address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkDatagrams {
    pub tx: HashMap<String, u64>,
    pub rx: HashMap<String, u64>,
}

impl Lab {
    /// Whether the lab gives each host one container at 10.0.3.(100+I) (10 hosts or more).
    pub fn is_wide(&self) -> bool {
        self.hosts() > 9
    }

    /// The IPv4 address of container `hIc1` in this lab (10.0.3.I1, or 10.0.3.(100+I) in a
    /// wide lab).
    pub fn container_ip4(&self, host: u8) -> String {
        if self.is_wide() {
            format!("10.0.3.{}", 100 + u16::from(host))
        } else {
            format!("10.0.3.{host}1")
        }
    }

    /// From every host's first container to every other host's, all pairs at once, one `ping`
    /// each (bounded by `opts`): `(from, to address, result)`.
    pub fn ping_all_pairs(&self, opts: &PingOpts) -> Vec<(String, String, PingResult)> {
        let pairs: Vec<(String, String)> = (1..=self.hosts())
            .flat_map(|i| {
                (1..=self.hosts())
                    .filter(move |&j| j != i)
                    .map(move |j| (format!("h{i}c1"), self.container_ip4(j)))
            })
            .collect();
        std::thread::scope(|s| {
            let running: Vec<_> = pairs
                .into_iter()
                .map(|(from, to)| {
                    s.spawn(move || {
                        let r = self.ping_with(&from, &to, opts);
                        (from, to, r)
                    })
                })
                .collect();
            running
                .into_iter()
                .map(|h| h.join().expect("ping thread"))
                .collect()
        })
    }

    /// Starts counting every host's link datagrams per peer (`scripts/scale-counters.nft`, an
    /// nftables table in each host's namespace, gone with the lab; the underlay's ARP is left
    /// out).
    pub fn count_link_datagrams(&self) {
        let file = crate::workspace_root().join("scripts/scale-counters.nft");
        let file = file.to_string_lossy().into_owned();
        for h in self.host_names() {
            self.exec_ok(&h, &["nft", "-f", &file]);
        }
    }

    /// The host's link datagrams per peer since [`Lab::count_link_datagrams`].
    pub fn link_datagrams(&self, host: &str) -> LinkDatagrams {
        let mut out = LinkDatagrams::default();
        for (way, map) in [("tx", &mut out.tx), ("rx", &mut out.rx)] {
            let text = self.exec_ok(
                host,
                &["nft", "-j", "list", "set", "inet", "ipopscale", way],
            );
            let v: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{host}: nft -j: {e}: {text}"));
            let elems = v["nftables"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x["set"]["elem"].as_array())
                .flatten();
            for e in elems {
                let (Some(addr), Some(n)) = (
                    e["elem"]["val"].as_str(),
                    e["elem"]["counter"]["packets"].as_u64(),
                ) else {
                    continue;
                };
                map.insert(addr.to_string(), n);
            }
        }
        out
    }

    /// `(ups, downs)` of every link of every host (tincan's `get_state`), keyed by
    /// `host->endpoint`: unchanged while no link went down or up.
    pub fn link_flaps(&self) -> BTreeMap<String, (u64, u64)> {
        let mut out = BTreeMap::new();
        for h in self.host_names() {
            for p in self.tincan_state(&h)["peers"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let n = |k: &str| p[k].as_u64().unwrap_or(0);
                out.insert(
                    format!("{h}->{}", p["endpoint"].as_str().unwrap_or("?")),
                    (n("ups"), n("downs")),
                );
            }
        }
        out
    }
}
