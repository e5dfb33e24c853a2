//! The original IPOP's XMPP conventions as pure functions: the full JID a node logs in with
//! (`username` + `/tincan<uid>`), the uid of a `tincan<40 hex>` resource, and the
//! `jabber:iq:tincan` query that carries `{type, data}` between nodes.

use proto::id::Uid;
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;

/// Namespace of the original's signalling query.
pub const NS_TINCAN: &str = "jabber:iq:tincan";
/// Resource prefix of every IPOP node; the uid (40 hex) follows.
pub const RESOURCE_PREFIX: &str = "tincan";

/// The full JID to log in with: `username` (or `username@host`) + `/tincan<uid>`.
pub(crate) fn build_jid(username: &str, host: &str, uid: Uid) -> Result<FullJid, String> {
    let username = username.trim();
    if username.is_empty() {
        return Err("xmpp_username is empty".into());
    }
    let bare = if username.contains('@') {
        let j = Jid::new(username).map_err(|e| format!("xmpp_username {username:?}: {e}"))?;
        j.to_bare()
    } else {
        let s = format!("{username}@{host}");
        BareJid::new(&s).map_err(|e| format!("JID {s:?}: {e}"))?
    };
    if bare.node().is_none() {
        return Err(format!("xmpp_username {username:?} has no user part"));
    }
    bare.with_resource_str(&format!("{RESOURCE_PREFIX}{uid}"))
        .map_err(|e| format!("resource for uid {uid}: {e}"))
}

/// The uid of a `tincan<40 hex>` resource (either case), if `jid` has one.
pub(crate) fn tincan_uid(jid: &Jid) -> Option<Uid> {
    let res = jid.resource()?.as_str();
    let hex = res.strip_prefix(RESOURCE_PREFIX)?;
    hex.parse().ok()
}

/// `<query xmlns="jabber:iq:tincan"><data>D</data><type>T</type></query>`
pub fn tincan_query(msg_type: &str, data: &str) -> Element {
    Element::builder("query", NS_TINCAN)
        .append(Element::builder("data", NS_TINCAN).append(data).build())
        .append(Element::builder("type", NS_TINCAN).append(msg_type).build())
        .build()
}

/// `(type, data)` of a tincan query; `None` if `<type>` or `<data>` is missing or `<type>` is
/// empty. The children are matched by name whatever their namespace.
pub fn parse_tincan_query(query: &Element) -> Option<(String, String)> {
    let child = |name: &str| query.children().find(|c| c.name() == name);
    let msg_type = child("type")?.text();
    let data = child("data")?.text();
    if msg_type.is_empty() {
        return None;
    }
    Some((msg_type, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0123456789abcdef0123456789abcdef01234567";

    fn uid() -> Uid {
        UID.parse().unwrap()
    }

    #[test]
    fn jid_from_username() {
        let j = build_jid("node1@ipop.lab", "10.0.0.1", uid()).unwrap();
        assert_eq!(j.to_string(), format!("node1@ipop.lab/tincan{UID}"));
        let j = build_jid("node1", "ipop.lab", uid()).unwrap();
        assert_eq!(j.to_string(), format!("node1@ipop.lab/tincan{UID}"));
        // A resource in the username is replaced by ours.
        let j = build_jid("node1@ipop.lab/other", "x", uid()).unwrap();
        assert_eq!(j.resource().as_str(), format!("tincan{UID}"));
        assert!(build_jid("", "ipop.lab", uid()).is_err());
        assert!(build_jid("@ipop.lab", "ipop.lab", uid()).is_err());
    }

    #[test]
    fn uid_rules() {
        let j = Jid::new(&format!("a@b/tincan{UID}")).unwrap();
        assert_eq!(tincan_uid(&j), Some(uid()));
        let j = Jid::new(&format!("a@b/tincan{}", UID.to_uppercase())).unwrap();
        assert_eq!(tincan_uid(&j), Some(uid()));
        for bad in [
            "a@b/tincan",
            "a@b/phone",
            "a@b",
            &format!("a@b/tincan{UID}0"),
            &format!("a@b/tincan{}g", &UID[..39]),
            "a@b/tincanabc",
        ] {
            assert_eq!(tincan_uid(&Jid::new(bad).unwrap()), None, "{bad}");
        }
    }

    #[test]
    fn query_round_trip() {
        let data = "  fpr 1:2:udp:10.0.0.1:5000 <&>\"' ";
        let q = tincan_query("con_resp", data);
        let xml = String::from(&q);
        assert!(xml.contains("jabber:iq:tincan"), "{xml}");
        let back: Element = xml.parse().unwrap();
        assert_eq!(
            parse_tincan_query(&back),
            Some(("con_resp".to_owned(), data.to_owned()))
        );
        // The original's exact form, children inheriting the namespace.
        let orig: Element = "<query xmlns='jabber:iq:tincan'><data>D</data><type>T</type></query>"
            .parse()
            .unwrap();
        assert_eq!(
            parse_tincan_query(&orig),
            Some(("T".to_owned(), "D".to_owned()))
        );
        let empty: Element = "<query xmlns='jabber:iq:tincan'><data/><type>T</type></query>"
            .parse()
            .unwrap();
        assert_eq!(parse_tincan_query(&empty), Some(("T".into(), "".into())));
    }

    #[test]
    fn malformed_queries() {
        for xml in [
            "<query xmlns='jabber:iq:tincan'><data>D</data></query>",
            "<query xmlns='jabber:iq:tincan'><type>T</type></query>",
            "<query xmlns='jabber:iq:tincan'><data>D</data><type/></query>",
            "<query xmlns='jabber:iq:tincan'/>",
        ] {
            let e: Element = xml.parse().unwrap();
            assert_eq!(parse_tincan_query(&e), None, "{xml}");
        }
    }
}
