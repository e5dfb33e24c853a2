//! Which XMPP accounts may take part in the overlay: the accounts on our account's roster with
//! a subscription "both" or "from" (as the original, which relied on the roster: nodes are
//! friends of one another, or members of one shared roster group), or, when the config has
//! `xmpp_allow`, exactly the accounts it lists (the roster is then not consulted). Our own
//! account is always allowed (several nodes may share one account). Presence and queries from
//! any other account are ignored and counted. Accounts compare as lower-cased bare JIDs.

use std::collections::{HashMap, HashSet};
use tokio_xmpp::parsers::roster::Subscription;

/// The most roster items kept; more are left out and counted.
pub(crate) const MAX_ROSTER: usize = 4096;

pub(crate) struct Allow {
    own: String,
    list: Option<HashSet<String>>,
    /// Bare JID -> allowed by its subscription; empty until the roster arrives.
    roster: HashMap<String, bool>,
}

/// Whether a roster subscription lets the contact signal us: it receives our presence.
fn subscription_allows(s: &Subscription) -> bool {
    matches!(s, Subscription::Both | Subscription::From)
}

impl Allow {
    pub(crate) fn new(own_bare: &str, list: Option<&[String]>) -> Allow {
        Allow {
            own: own_bare.to_lowercase(),
            list: list.map(|l| l.iter().map(|j| j.to_lowercase()).collect()),
            roster: HashMap::new(),
        }
    }

    /// Whether the roster decides (no `xmpp_allow`): then it is requested at every login.
    pub(crate) fn uses_roster(&self) -> bool {
        self.list.is_none()
    }

    pub(crate) fn allows(&self, bare: &str) -> bool {
        let bare = bare.to_lowercase();
        if bare == self.own {
            return true;
        }
        match &self.list {
            Some(list) => list.contains(&bare),
            None => self.roster.get(&bare).copied().unwrap_or(false),
        }
    }

    /// The whole roster (a login's roster result); returns how many items were left out.
    pub(crate) fn set_roster<'a>(
        &mut self,
        items: impl Iterator<Item = (String, &'a Subscription)>,
    ) -> usize {
        self.roster.clear();
        let mut left_out = 0;
        for (jid, sub) in items {
            if self.roster.len() >= MAX_ROSTER {
                left_out += 1;
                continue;
            }
            self.roster
                .insert(jid.to_lowercase(), subscription_allows(sub));
        }
        left_out
    }

    /// A roster push: one item changed. Returns `(allowed before, allowed now)`, or `None`
    /// when the item does not fit.
    pub(crate) fn push(&mut self, jid: &str, sub: &Subscription) -> Option<(bool, bool)> {
        let jid = jid.to_lowercase();
        let before = self.roster.get(&jid).copied().unwrap_or(false);
        if matches!(sub, Subscription::Remove) {
            self.roster.remove(&jid);
            return Some((before, false));
        }
        if !self.roster.contains_key(&jid) && self.roster.len() >= MAX_ROSTER {
            return None;
        }
        let now = subscription_allows(sub);
        self.roster.insert(jid, now);
        Some((before, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roster_decides_unless_there_is_an_allow_list() {
        let mut a = Allow::new("node1@ipop.lab", None);
        assert!(a.uses_roster());
        assert!(a.allows("Node1@ipop.lab"), "our own account");
        assert!(!a.allows("node2@ipop.lab"), "no roster yet");
        let items = [
            ("node2@ipop.lab", Subscription::Both),
            ("node3@ipop.lab", Subscription::From),
            ("node4@ipop.lab", Subscription::To),
            ("node5@ipop.lab", Subscription::None),
        ];
        assert_eq!(
            a.set_roster(items.iter().map(|(j, s)| (j.to_string(), s))),
            0
        );
        assert!(a.allows("NODE2@ipop.lab") && a.allows("node3@ipop.lab"));
        assert!(!a.allows("node4@ipop.lab") && !a.allows("node5@ipop.lab"));
        assert!(!a.allows("stranger@ipop.lab"));
        // Pushes: node2 removed, node4 now mutual.
        assert_eq!(
            a.push("node2@ipop.lab", &Subscription::Remove),
            Some((true, false))
        );
        assert_eq!(
            a.push("node4@ipop.lab", &Subscription::Both),
            Some((false, true))
        );
        assert!(!a.allows("node2@ipop.lab") && a.allows("node4@ipop.lab"));

        let l = Allow::new("node1@ipop.lab", Some(&["node9@ipop.lab".to_owned()]));
        assert!(!l.uses_roster());
        assert!(l.allows("node9@IPOP.lab") && l.allows("node1@ipop.lab"));
        assert!(!l.allows("node2@ipop.lab"));
    }

    #[test]
    fn the_roster_is_bounded() {
        let mut a = Allow::new("me@d", None);
        let both = Subscription::Both;
        let left_out = a.set_roster((0..MAX_ROSTER + 5).map(|i| (format!("n{i}@d"), &both)));
        assert_eq!(left_out, 5);
        assert!(a.allows("n0@d") && !a.allows(&format!("n{MAX_ROSTER}@d")));
        assert_eq!(a.push("late@d", &both), None);
        assert!(!a.allows("late@d"));
        assert_eq!(a.push("n1@d", &Subscription::Remove), Some((true, false)));
        assert_eq!(a.push("late@d", &both), Some((false, true)));
    }
}
