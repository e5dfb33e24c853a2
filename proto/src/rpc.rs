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

/// Typed access to request params; errors name the param and what was expected.
pub struct ParamReader<'a>(pub &'a Map<String, Value>);

impl<'a> ParamReader<'a> {
    fn missing(key: &str, what: &str) -> RpcError {
        RpcError::invalid_params(format!("\"{key}\": expected {what}, missing"))
    }
    fn wrong(key: &str, what: &str, got: &Value) -> RpcError {
        RpcError::invalid_params(format!("\"{key}\": expected {what}, got {got}"))
    }

    pub fn str(&self, key: &str) -> Result<&'a str, RpcError> {
        match self.0.get(key) {
            None => Err(Self::missing(key, "a string")),
            Some(Value::String(s)) => Ok(s),
            Some(v) => Err(Self::wrong(key, "a string", v)),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, RpcError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(Self::wrong(key, "a string", v)),
        }
    }

    pub fn u64_in(&self, key: &str, min: u64, max: u64) -> Result<u64, RpcError> {
        let what = format!("an integer {min}-{max}");
        match self.0.get(key) {
            None => Err(Self::missing(key, &what)),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(Self::wrong(key, &what, v)),
            },
        }
    }

    pub fn opt_u64_in(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, RpcError> {
        if self.0.get(key).is_none_or(Value::is_null) {
            return Ok(None);
        }
        self.u64_in(key, min, max).map(Some)
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, RpcError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            // The original controller sent 0/1 for some flags.
            Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
            Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
            Some(v) => Err(Self::wrong(key, "a boolean", v)),
        }
    }

    pub fn value(&self, key: &str) -> Result<&'a Value, RpcError> {
        self.0.get(key).ok_or_else(|| Self::missing(key, "a value"))
    }

    /// A 40-hex-digit uid, returned as its 20 raw bytes.
    pub fn uid(&self, key: &str) -> Result<[u8; 20], RpcError> {
        let s = self.str(key)?;
        let mut out = [0u8; 20];
        if s.len() != 40 || hex::decode_to_slice(s.to_ascii_lowercase(), &mut out).is_err() {
            return Err(RpcError::invalid_params(format!(
                "\"{key}\": expected 40 hex digits, got {s:?}"
            )));
        }
        Ok(out)
    }
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

    #[test]
    fn params_name_the_key() {
        let m = json!({"port": "abc", "uid": "zz", "ok": 5})
            .as_object()
            .unwrap()
            .clone();
        let p = ParamReader(&m);
        assert!(p
            .u64_in("port", 1, 65535)
            .unwrap_err()
            .message
            .contains("\"port\""));
        assert!(p.uid("uid").unwrap_err().message.contains("40 hex"));
        assert_eq!(p.u64_in("ok", 1, 10).unwrap(), 5);
        assert!(p.str("missing").unwrap_err().message.contains("missing"));
    }
}
