//! IPv6 neighbour discovery on any frame: the parser (`wire::icmpv6`), tincan's responder
//! (`neigh::nd_responder`) and the controller's table (`neigh::nd`) never panic; a frame that
//! parses is ND by the data path's quick test and re-emits to a frame that parses back to the
//! same thing; every answer or injected frame is a valid ND frame with hop limit 255 whose
//! Ethernet source is a unicast MAC; a duplicate address detection probe is never answered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::api::tincan::{NdBinding, SetNd};
use proto::icc::IccMsg;
use proto::id::Uid;
use proto::neigh::nd::{NdAction, NdTable};
use proto::neigh::nd_responder::{NdResponder, NdVerdict};
use proto::neigh::{NeighAction, NeighConfig};
use proto::wire::ethernet::MacAddr;
use proto::wire::icmpv6::{self, NdFrame, NdMessage};

fn valid_out(frame: &[u8]) -> NdFrame {
    let f = icmpv6::parse_frame(frame).expect("what we emit is valid ND");
    assert_eq!(frame[21], 255, "hop limit");
    assert!(!f.eth_src.is_group() && !f.eth_src.is_zero());
    f
}

fuzz_target!(|data: &[u8]| {
    let parsed = icmpv6::parse_frame(data);
    if let Ok(f) = &parsed {
        assert!(icmpv6::is_nd(data), "a parsed frame is ND by the quick test");
        let again = icmpv6::parse_frame(&f.to_frame()).expect("re-emitted frame parses");
        assert_eq!(&again, f);
    }

    // tincan's responder, holding a binding for whatever the frame asks about.
    let mut r = NdResponder::default();
    if let Ok(NdFrame {
        msg: NdMessage::Solicit(s),
        ..
    }) = &parsed
    {
        let set = SetNd {
            replace: None,
            add: vec![NdBinding {
                ip: s.target,
                mac: MacAddr([0x02, 0, 0, 0, 0, 0x15]),
                router: data.len() % 2 == 0,
            }],
            remove: vec![],
        };
        r.apply(&set, |_| false);
    }
    match r.on_frame(data, |_| false) {
        NdVerdict::Answer(reply, asked) => {
            let req = parsed.expect("only valid ND is answered");
            assert!(!req.is_dad(), "a DAD probe is never answered");
            let a = valid_out(&reply);
            assert!(matches!(a.msg, NdMessage::Advert(ad) if ad.solicited && ad.target == asked.ip));
            r.answered(asked);
        }
        NdVerdict::Drop => assert!(parsed.is_err()),
        NdVerdict::Pass | NdVerdict::PassAndPunt | NdVerdict::Punt => {}
    }

    // The controller's table, the frame punted from the bridge and then answered from.
    let mut t = NdTable::new(Uid([0x11; 20]), NeighConfig::default());
    if let Ok(NdFrame {
        msg: NdMessage::Solicit(s),
        ..
    }) = &parsed
    {
        let peer = Uid([0x22; 20]);
        let reply = IccMsg::NdReply {
            target_ip6: s.target,
            mac: "02:00:00:00:00:15".into(),
            uid: peer,
            router: false,
        };
        t.on_icc(peer, &reply, 0, |_| false);
    }
    for now in [1, 10] {
        for a in t.on_local_frame(data, now) {
            if let NdAction::Do(NeighAction::Inject(f)) = a {
                let req = parsed.as_ref().expect("only valid ND is answered");
                assert!(!req.is_dad(), "a DAD probe is never answered");
                valid_out(&f);
            }
        }
    }
});
