//! Making tincan's TAP a port of the configured bridge, over rtnetlink: find both interfaces by
//! name, check that the bridge is one, set the TAP's master when it is not already the bridge,
//! and bring the TAP up. The TAP gets no IP address: it is a bridge port, which is what keeps
//! the host from routing (and ICMP-redirecting) overlay traffic. The bridge's forwarding
//! database tells which hosts are on this host's side of it (moves, `proto::neigh`).

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::NeighbourAttribute;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec};
use std::collections::HashSet;
use std::fmt;

/// ENODEV: the kernel's answer to a lookup of a name no interface has.
const ENODEV: i32 = 19;

/// What went wrong, naming the interface and the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeError {
    /// No netlink socket (the message says why).
    Netlink(String),
    /// The configured bridge does not exist.
    NoBridge(String),
    /// The configured bridge exists but is another kind of interface (its kind, if any).
    NotABridge(String, Option<String>),
    /// The TAP tincan reported does not exist.
    NoTap(String),
    /// The interface tincan reported is not a TAP (its kind): never put on the bridge.
    NotATap(String, Option<String>),
    /// A lookup or change failed: interface, what was tried, the kernel's answer.
    Failed(String, &'static str, String),
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeError::Netlink(e) => write!(f, "cannot open a netlink socket: {e}"),
            BridgeError::NoBridge(b) => write!(
                f,
                "\"bridge\": {b:?} is not a bridge on this host (no such interface); create it \
                 (e.g. `ip link add {b} type bridge`) or fix the config"
            ),
            BridgeError::NotABridge(b, kind) => write!(
                f,
                "\"bridge\": {b:?} is not a bridge on this host (it is {}); create a bridge \
                 (e.g. `ip link add {b} type bridge`) or fix the config",
                match kind {
                    Some(k) => format!("a {k} interface"),
                    None => "a plain interface".into(),
                }
            ),
            BridgeError::NoTap(t) => write!(f, "TAP {t:?} reported by ipop-tincan does not exist"),
            BridgeError::NotATap(t, kind) => write!(
                f,
                "{t:?}, reported by ipop-tincan as its TAP, is not a TAP (it is {}): not attached",
                kind.as_deref().unwrap_or("a plain interface")
            ),
            BridgeError::Failed(ifname, what, e) => write!(f, "{ifname}: cannot {what}: {e}"),
        }
    }
}

impl std::error::Error for BridgeError {}

/// What [`Netlink::attach`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// The TAP's master was set to the bridge.
    Now,
    /// The TAP was already a port of the bridge.
    Already,
}

/// A route netlink connection; its I/O runs as a task on the current tokio runtime.
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Must be called within a tokio runtime.
    pub fn new() -> Result<Netlink, BridgeError> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| BridgeError::Netlink(e.to_string()))?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The interface called `name`; `Ok(None)` if there is none.
    async fn link(&self, name: &str) -> Result<Option<LinkMessage>, BridgeError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(found) => Ok(found),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code().abs() == ENODEV => Ok(None),
            Err(e) => Err(BridgeError::Failed(
                name.to_owned(),
                "look up the interface",
                describe(e),
            )),
        }
    }

    /// Makes `tap` a port of `bridge` and brings it up.
    pub async fn attach(&self, tap: &str, bridge: &str) -> Result<Attached, BridgeError> {
        let br = self
            .link(bridge)
            .await?
            .ok_or_else(|| BridgeError::NoBridge(bridge.to_owned()))?;
        require_kind(&br, InfoKind::Bridge, |k| {
            BridgeError::NotABridge(bridge.to_owned(), k)
        })?;
        let port = self
            .link(tap)
            .await?
            .ok_or_else(|| BridgeError::NoTap(tap.to_owned()))?;
        // Only a TUN/TAP device goes on the bridge, whatever the answer that named it says.
        require_kind(&port, InfoKind::Tun, |k| {
            BridgeError::NotATap(tap.to_owned(), k)
        })?;
        let index = port.header.index;
        let already = master(&port) == Some(br.header.index);
        if !already {
            let msg = LinkUnspec::new_with_index(index)
                .controller(br.header.index)
                .build();
            self.handle.link().set(msg).execute().await.map_err(|e| {
                BridgeError::Failed(tap.to_owned(), "make it a port of the bridge", describe(e))
            })?;
        }
        // tincan brings its TAP up itself; this is a second chance, and its failure does not
        // undo the attachment.
        if !port.header.flags.contains(LinkFlags::Up) {
            let msg = LinkUnspec::new_with_index(index).up().build();
            if let Err(e) = self.handle.link().set(msg).execute().await {
                log::warn!("{tap}: cannot bring it up: {}", describe(e));
            }
        }
        Ok(if already {
            Attached::Already
        } else {
            Attached::Now
        })
    }
}

impl Netlink {
    /// Takes `tap` off `bridge` (the controller's clean shutdown). True when it was a port of
    /// that bridge and is not any more; false when it was not one (or is gone: a TAP whose
    /// tincan stopped left the bridge with it). A TAP on another bridge is left alone.
    pub async fn detach(&self, tap: &str, bridge: &str) -> Result<bool, BridgeError> {
        let Some(port) = self.link(tap).await? else {
            return Ok(false);
        };
        let Some(br) = self.link(bridge).await? else {
            return Ok(false);
        };
        if master(&port) != Some(br.header.index) {
            return Ok(false);
        }
        let msg = LinkUnspec::new_with_index(port.header.index)
            .nocontroller()
            .build();
        self.handle.link().set(msg).execute().await.map_err(|e| {
            BridgeError::Failed(tap.to_owned(), "take it off the bridge", describe(e))
        })?;
        Ok(true)
    }
}

impl Netlink {
    /// The MACs `bridge`'s forwarding database has on a port other than `tap` (or on the
    /// bridge itself): the hosts on this host's side of the bridge, not those behind the
    /// overlay.
    pub async fn fdb_macs(&self, bridge: &str, tap: &str) -> Result<HashSet<[u8; 6]>, BridgeError> {
        let br = self
            .link(bridge)
            .await?
            .ok_or_else(|| BridgeError::NoBridge(bridge.to_owned()))?
            .header
            .index;
        let tap = self.link(tap).await?.map(|l| l.header.index);
        let mut dump = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute();
        let mut macs = HashSet::new();
        loop {
            let entry = match dump.try_next().await {
                Ok(Some(e)) => e,
                Ok(None) => return Ok(macs),
                Err(e) => {
                    return Err(BridgeError::Failed(
                        bridge.to_owned(),
                        "read the forwarding database",
                        describe(e),
                    ))
                }
            };
            let port = entry.header.ifindex;
            let mut master = None;
            let mut mac = None;
            for a in &entry.attributes {
                match a {
                    NeighbourAttribute::Controller(i) => master = Some(*i),
                    NeighbourAttribute::LinkLayerAddress(m) => {
                        mac = <[u8; 6]>::try_from(&m[..]).ok()
                    }
                    _ => {}
                }
            }
            let ours = master == Some(br) || port == br;
            if let (true, Some(mac)) = (ours && Some(port) != tap, mac) {
                macs.insert(mac);
            }
        }
    }
}

/// The kernel's errno as text ("Operation not permitted (os error 1)"), or the library's message.
fn describe(e: rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    }
}

/// Ok when `link` is of kind `want`; else the error `wrong` makes from the kind it is.
fn require_kind(
    link: &LinkMessage,
    want: InfoKind,
    wrong: impl FnOnce(Option<String>) -> BridgeError,
) -> Result<(), BridgeError> {
    match kind(link) {
        Some(k) if *k == want => Ok(()),
        other => Err(wrong(other.map(|k| k.to_string()))),
    }
}

fn kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k),
            _ => None,
        }),
        _ => None,
    })
}

fn master(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    })
}
