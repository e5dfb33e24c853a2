//! The JSON-RPC framing of both control channels on any datagram: `rpc::parse` never panics,
//! every answer it leads to serialises, and a notification we emit parses back to the same method and param keys.
//! The typed API (`proto::api`) reads every call without panicking, and whatever it accepts
//! goes back out as a datagram that reads back to the same typed value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::api::controller::ControllerRequest;
use proto::api::tincan::{LocalState, TincanNotification, TincanRequest};
use proto::rpc::{self, Id, Incoming};
use serde_json::{Map, Value};

/// The call as every typed parser reads it; what one accepts must survive its own datagram.
fn typed(method: &str, params: &Map<String, Value>) {
    fn call_of(datagram: &[u8]) -> (String, Map<String, Value>) {
        match rpc::parse(datagram) {
            Incoming::Call { method, params, .. } => (method, params),
            other => panic!("our own datagram did not parse back: {other:?}"),
        }
    }
    if let Ok(r) = TincanRequest::from_call(method, params.clone()) {
        let (m, p) = call_of(&r.request(1));
        assert_eq!(TincanRequest::from_call(&m, p).as_ref(), Ok(&r));
    }
    if let Ok(n) = TincanNotification::from_call(method, params.clone()) {
        let (m, p) = call_of(&n.notification());
        assert_eq!(TincanNotification::from_call(&m, p).as_ref(), Ok(&n));
    }
    if let Ok(r) = ControllerRequest::from_call(method, params.clone()) {
        let (m, p) = call_of(&r.request(1));
        assert_eq!(ControllerRequest::from_call(&m, p).as_ref(), Ok(&r));
    }
    if let Ok(state) = serde_json::from_value::<LocalState>(Value::Object(params.clone())) {
        let again = serde_json::to_value(&state).expect("a state serialises");
        assert_eq!(
            serde_json::from_value::<LocalState>(again).ok(),
            Some(state)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    match rpc::parse(data) {
        Incoming::Call { id, method, params } => {
            typed(&method, &params);
            if let Some(id) = id {
                let _ = rpc::response(id.clone(), Ok(Value::Object(params.clone())));
                let _ = rpc::response(id, Err(rpc::RpcError::method_not_found()));
            }
            let note = rpc::notification(&method, Value::Object(params.clone()));
            match rpc::parse(&note) {
                Incoming::Call {
                    id: None,
                    method: m2,
                    params: p2,
                } => {
                    assert_eq!(m2, method);
                    assert!(params.keys().eq(p2.keys()));
                }
                other => panic!("our own notification did not parse back: {other:?}"),
            }
            let req = rpc::request(7, &method, Value::Object(params));
            match rpc::parse(&req) {
                Incoming::Call {
                    id: Some(Id::Num(7)),
                    method: m2,
                    ..
                } => assert_eq!(m2, method),
                other => panic!("our own request did not parse back: {other:?}"),
            }
        }
        Incoming::Response { id, result } => {
            let _ = rpc::response(id, result);
        }
        Incoming::Invalid { id, error } => {
            if let Some(id) = id {
                let bytes = rpc::response(id, Err(error));
                assert!(matches!(rpc::parse(&bytes), Incoming::Response { .. }));
            }
        }
    }
});
