//! What the controller programs into tincan's responder: only peers' fresh bindings accepted
//! under the claim rules, never a host of our own bridge; and the `set_neigh` calls that keep
//! tincan's table equal to that.

use super::super::tests::{icc_reply, ip, mac, request, table, OTHER, PEER};
use super::super::NeighConfig;
use super::*;
use crate::icc::IccMsg;

fn want(pairs: &[(u8, u8)]) -> HashMap<Ipv4Addr, MacAddr> {
    pairs.iter().map(|(i, m)| (ip(*i), mac(*m))).collect()
}

#[test]
fn a_peers_accepted_binding_is_answerable_and_a_local_one_never() {
    let mut t = table();
    // 10.0.3.11 is on our bridge; 10.0.3.21 is behind PEER, learned from its reply.
    t.on_local_arp(&request(11, 21), 0);
    t.on_icc(PEER, &icc_reply(21, PEER), 10);
    assert_eq!(t.answerable(20), want(&[(21, 21)]));
    // A peer's request speaks for its requester: that binding is answerable too.
    t.on_icc(
        PEER,
        &IccMsg::ArpRequest {
            target_ip4: ip(11),
            requester_ip4: ip(22),
            requester_mac: mac(22).to_string(),
        },
        30,
    );
    assert_eq!(t.answerable(40), want(&[(21, 21), (22, 22)]));
    // It expires with its entry.
    let ttl = NeighConfig::default().ttl;
    assert_eq!(t.answerable(30 + ttl), HashMap::new());
}

#[test]
fn a_refused_claim_programs_nothing() {
    let mut t = table();
    t.pin_local(ip(1));
    t.on_local_arp(&request(11, 21), 0);
    // A peer claims our own address, a host of our bridge (by IP and by MAC), and a binding
    // another peer holds.
    t.on_icc(PEER, &icc_reply(21, PEER), 5);
    for (target, m) in [(1, 0x31), (11, 0x32), (33, 11), (21, 0x34)] {
        let claim = IccMsg::ArpReply {
            target_ip4: ip(target),
            mac: mac(m).to_string(),
            uid: OTHER,
        };
        t.on_icc(OTHER, &claim, 10);
    }
    assert_eq!(t.counters.claims_refused, 4);
    assert_eq!(t.answerable(20), want(&[(21, 21)]));
    // A host that moves to our bridge stops being answerable at once.
    t.on_local_arp(&request(21, 11), 30);
    assert_eq!(t.answerable(40), HashMap::new());
}

#[test]
fn a_withdrawn_peer_takes_its_bindings_out_of_tincan() {
    let mut t = table();
    t.on_local_arp(&request(11, 21), 0);
    t.on_icc(PEER, &icc_reply(21, PEER), 10);
    t.on_icc(OTHER, &icc_reply(31, OTHER), 10);
    let mut p = Programmed::default();
    let calls = p.update(t.answerable(20));
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].replace, None);
    assert_eq!(calls[0].add.len(), 2);
    assert!(p.update(t.answerable(30)).is_empty(), "nothing changed");
    t.remove_owner(PEER);
    assert_eq!(
        p.update(t.answerable(40)),
        vec![SetNeigh {
            replace: None,
            add: vec![],
            remove: vec![ip(21)],
        }]
    );
    assert_eq!(p.len(), 1);
}

#[test]
fn a_changed_binding_is_sent_again_and_a_resend_replaces_in_chunks() {
    let mut p = Programmed::default();
    p.update(want(&[(21, 21)]));
    assert_eq!(
        p.update(want(&[(21, 0x99)])),
        vec![SetNeigh {
            replace: None,
            add: vec![NeighBinding {
                ip: ip(21),
                mac: mac(0x99),
            }],
            remove: vec![],
        }]
    );
    // An empty resend still empties tincan's table.
    let calls = p.resend(HashMap::new());
    assert_eq!(
        calls,
        vec![SetNeigh {
            replace: Some(true),
            ..SetNeigh::default()
        }]
    );
    let many: HashMap<Ipv4Addr, MacAddr> = (0..CHUNK as u32 * 2 + 1)
        .map(|i| (Ipv4Addr::from(0x0a05_0000 + i), mac(1)))
        .collect();
    let calls = p.resend(many);
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].replace, Some(true));
    assert!(calls[1..].iter().all(|c| c.replace.is_none()));
    assert_eq!(
        calls.iter().map(|c| c.add.len()).sum::<usize>(),
        CHUNK * 2 + 1
    );
}

#[test]
fn an_answer_by_tincan_refreshes_like_one_by_the_controller() {
    let mut t = table();
    t.on_local_arp(&request(11, 21), 0);
    t.on_icc(PEER, &icc_reply(21, PEER), 10);
    let answer = NeighAnswer {
        ip: ip(21),
        requester_ip: ip(12),
        requester_mac: mac(12),
    };
    assert!(t.on_answered_by_tincan(&answer, 20).is_empty());
    assert_eq!(t.counters.answered_by_tincan, 1);
    let e = t.get(&ip(21)).unwrap();
    assert!(e.used);
    assert_eq!(e.last_requester, Some((ip(12), mac(12))));
    // The requester is recorded on our bridge, as from a punted request.
    assert_eq!(t.get(&ip(12)).unwrap().owner, Owner::Local);
    // Used, so it is re-probed (on behalf of that requester) before it expires.
    let cfg = NeighConfig::default();
    let a = t.tick(10 + cfg.ttl - cfg.probe_margin);
    assert_eq!(
        a,
        vec![NeighAction::IccSend(
            PEER,
            IccMsg::ArpRequest {
                target_ip4: ip(21),
                requester_ip4: ip(12),
                requester_mac: mac(12).to_string(),
            }
        )]
    );
    // A bogus report changes nothing.
    let bogus = NeighAnswer {
        requester_mac: MacAddr::BROADCAST,
        ..answer
    };
    assert!(t.on_answered_by_tincan(&bogus, 30).is_empty());
    assert_eq!(t.counters.answered_by_tincan, 1);
}
