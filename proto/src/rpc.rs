//! JSON-RPC 2.0 framing for the loopback control channels (one object per UDP datagram), on
//! top of jsonrpc-core's types. Parsing never fails: bad input becomes `Incoming::Invalid`,
//! answered with a JSON-RPC error object when it carried an id.

use jsonrpc_core::{Call, Output, Params, Request, Version};
pub use jsonrpc_core::{Error as RpcError, ErrorCode, Id};
use serde_json::{Map, Value};

#[derive(Debug)]
pub enum Incoming {
    /// A request (with an id) or a notification (id `None`). Params are always an object.
    Call {
        id: Option<Id>,
        method: String,
        params: Map<String, Value>,
    },
    /// The answer to a request we sent.
    Response {
        id: Id,
        result: Result<Value, RpcError>,
    },
    /// Not JSON-RPC; `id` is set when the sender can be told so.
    Invalid { id: Option<Id>, error: RpcError },
}

pub fn parse(datagram: &[u8]) -> Incoming {
    let Ok(text) = std::str::from_utf8(datagram) else {
        return Incoming::Invalid {
            id: Some(Id::Null),
            error: RpcError::parse_error(),
        };
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            return Incoming::Invalid {
                id: Some(Id::Null),
                error: RpcError::parse_error(),
            }
        }
    };
    let is_call = value.get("method").is_some();
    if !is_call && (value.get("result").is_some() || value.get("error").is_some()) {
        return match serde_json::from_value::<Output>(value) {
            Ok(Output::Success(s)) => Incoming::Response {
                id: s.id,
                result: Ok(s.result),
            },
            Ok(Output::Failure(f)) => Incoming::Response {
                id: f.id,
                result: Err(f.error),
            },
            Err(_) => Incoming::Invalid {
                id: None,
                error: RpcError::invalid_request(),
            },
        };
    }
    let id_of = |v: &Value| {
        v.get("id")
            .cloned()
            .and_then(|i| serde_json::from_value(i).ok())
    };
    let fallback_id = id_of(&value).or(Some(Id::Null));
    let call = match serde_json::from_value::<Request>(value) {
        Ok(Request::Single(c)) => c,
        Ok(Request::Batch(_)) => {
            return Incoming::Invalid {
                id: Some(Id::Null),
                error: RpcError::invalid_params("batches are not supported"),
            }
        }
        Err(_) => {
            return Incoming::Invalid {
                id: fallback_id,
                error: RpcError::invalid_request(),
            }
        }
    };
    let (id, method, params) = match call {
        Call::MethodCall(m) => (Some(m.id), m.method, m.params),
        Call::Notification(n) => (None, n.method, n.params),
        Call::Invalid { id } => {
            return Incoming::Invalid {
                id: Some(id),
                error: RpcError::invalid_request(),
            }
        }
    };
    let params = match params {
        Params::Map(m) => m,
        Params::None => Map::new(),
        Params::Array(_) => {
            return Incoming::Invalid {
                id,
                error: RpcError::invalid_params("params must be an object"),
            }
        }
    };
    Incoming::Call { id, method, params }
}

pub fn response(id: Id, result: Result<Value, RpcError>) -> Vec<u8> {
    let out = Output::from(result, id, Some(Version::V2));
    serde_json::to_vec(&out).expect("JSON-RPC output serialises")
}

pub fn request(id: u64, method: &str, params: Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0", "id": id, "method": method, "params": params
    }))
    .expect("JSON serialises")
}

pub fn notification(method: &str, params: Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0", "method": method, "params": params
    }))
    .expect("JSON serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_and_notification() {
        match parse(br#"{"jsonrpc":"2.0","id":7,"method":"get_state","params":{"stats":true}}"#) {
            Incoming::Call { id, method, params } => {
                assert_eq!(id, Some(Id::Num(7)));
                assert_eq!(method, "get_state");
                assert_eq!(params["stats"], json!(true));
            }
            other => panic!("{other:?}"),
        }
        match parse(br#"{"jsonrpc":"2.0","method":"punt_frame"}"#) {
            Incoming::Call { id, params, .. } => {
                assert_eq!(id, None);
                assert!(params.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn responses_round_trip() {
        let ok = response(Id::Num(3), Ok(json!({"a": 1})));
        assert!(matches!(
            parse(&ok),
            Incoming::Response {
                id: Id::Num(3),
                result: Ok(_)
            }
        ));
        let err = response(Id::Num(4), Err(RpcError::method_not_found()));
        match parse(&err) {
            Incoming::Response { result: Err(e), .. } => {
                assert_eq!(e.code, ErrorCode::MethodNotFound)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_invalid_and_answerable() {
        for bad in [&b"\xff\xfe"[..], b"{", b"[]", b"42", b"{\"id\":1}", b""] {
            assert!(matches!(parse(bad), Incoming::Invalid { .. }), "{bad:?}");
        }
        match parse(br#"{"jsonrpc":"2.0","id":9,"method":"x","params":[1]}"#) {
            Incoming::Invalid { id, error } => {
                assert_eq!(id, Some(Id::Num(9)));
                assert_eq!(error.code, ErrorCode::InvalidParams);
            }
            other => panic!("{other:?}"),
        }
    }
}
