//! The typed control API of both daemons (docs/rpc.md): every request, notification and
//! result as a serde type, parsed and validated once where it arrives. [`tincan`] holds what
//! ipop-tincan answers and sends, [`controller`] what gvpn-controller answers. The JSON-RPC
//! framing itself is [`crate::rpc`]; this module turns a parsed call into a typed value (or an
//! error that names the param and what was expected) and a typed value into a datagram.
//!
//! A daemon's dispatch, and a notification:
//!
//! ```
//! use ipop_proto::api::{self, tincan::*, ApiError, ErrorCode};
//! use ipop_proto::rpc::{self, Incoming};
//!
//! fn answer(datagram: &[u8]) -> Option<Vec<u8>> {
//!     match rpc::parse(datagram) {
//!         Incoming::Call { id, method, params } => {
//!             let result = TincanRequest::from_call(&method, params).and_then(|r| match r {
//!                 TincanRequest::EchoRequest(e) => {
//!                     Ok(serde_json::to_value(EchoReply { msg: e.msg }).unwrap())
//!                 }
//!                 TincanRequest::SetLogging(_) => Ok(api::DONE),
//!                 _ => Err(ApiError::new(ErrorCode::LinkNotUp, "link to ... is not up")),
//!             });
//!             id.map(|id| api::response(id, result))
//!         }
//!         Incoming::Response { .. } => None,
//!         Incoming::Invalid { id, error } => id.map(|id| rpc::response(id, Err(error))),
//!     }
//! }
//!
//! let request = TincanRequest::from(SetLogging { logging: 2 }).request(1);
//! assert!(answer(&request).is_some());
//! let punt = TincanNotification::from(PuntFrame { frame: vec![0xff; 42], uid: None });
//! let datagram: Vec<u8> = punt.notification();
//! # assert!(answer(&datagram).is_none());
//! ```

pub mod controller;
mod de;
pub mod tincan;
mod tincan_nd;

use crate::rpc::{self, Id, RpcError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;

/// The result of a request that only succeeds or fails.
pub const DONE: Value = Value::Bool(true);

/// The most bytes of a `get_state` result: with the JSON-RPC envelope it fits in one UDP
/// datagram (65,507 bytes), which is how both daemons answer. What does not fit is left out
/// and counted in the answer (`macs_truncated`, `peers_truncated`, `neigh_truncated`, ...).
pub const MAX_STATE_BYTES: usize = 60 * 1024;

fn json_len<T: Serialize + ?Sized>(v: &T) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// Keeps the leading items of `items` whose JSON (a separator each) fits in `budget`, which it
/// reduces; returns how many were left out.
fn keep_fitting<T: Serialize>(items: &mut Vec<T>, budget: &mut usize) -> u64 {
    let mut keep = 0;
    for item in items.iter() {
        let n = json_len(item).saturating_add(1);
        if n > *budget {
            break;
        }
        *budget -= n;
        keep += 1;
    }
    let cut = items.len() - keep;
    items.truncate(keep);
    cut as u64
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The JSON-RPC error codes the daemons answer with. The server errors keep the small positive
/// numbers tincan has always used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    ParseError,
    InvalidRequest,
    MethodNotFound,
    InvalidParams,
    InternalError,
    /// `inject_frame`: the TAP refused the frame.
    TapWriteFailed,
    /// `send_icc`: the link exists but is not up.
    LinkNotUp,
    /// `set_local_ip`: the link port cannot be bound.
    CannotBindLinkPort,
    /// `set_local_ip`: the TAP MTU cannot be set.
    CannotSetMtu,
    /// `set_local_ip`: the key file cannot be read or created.
    KeyFileError,
    /// Not allowed to this caller or at this time: a method that changes state on the UDP
    /// port or from another user, or `set_local_ip` changing an identity already loaded.
    NotPermitted,
}

impl ErrorCode {
    const ALL: [ErrorCode; 11] = [
        ErrorCode::ParseError,
        ErrorCode::InvalidRequest,
        ErrorCode::MethodNotFound,
        ErrorCode::InvalidParams,
        ErrorCode::InternalError,
        ErrorCode::TapWriteFailed,
        ErrorCode::LinkNotUp,
        ErrorCode::CannotBindLinkPort,
        ErrorCode::CannotSetMtu,
        ErrorCode::KeyFileError,
        ErrorCode::NotPermitted,
    ];

    /// The number on the wire.
    pub fn code(self) -> i64 {
        match self {
            ErrorCode::ParseError => -32700,
            ErrorCode::InvalidRequest => -32600,
            ErrorCode::MethodNotFound => -32601,
            ErrorCode::InvalidParams => -32602,
            ErrorCode::InternalError => -32603,
            ErrorCode::TapWriteFailed => 1,
            ErrorCode::LinkNotUp => 2,
            ErrorCode::CannotBindLinkPort => 3,
            ErrorCode::CannotSetMtu => 4,
            ErrorCode::KeyFileError => 5,
            ErrorCode::NotPermitted => 6,
        }
    }

    pub fn from_code(code: i64) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// A refused request: its code and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// A bad param: `"key": what was wrong`.
    pub fn param(key: &str, what: impl fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::InvalidParams, format!("\"{key}\": {what}"))
    }

    pub fn method_not_found(method: &str) -> ApiError {
        ApiError::new(
            ErrorCode::MethodNotFound,
            format!("Method not found: {method:?}"),
        )
    }

    /// An error answer read back from a response; `None` for a code this API does not name.
    pub fn from_rpc(e: &RpcError) -> Option<ApiError> {
        let code = ErrorCode::from_code(e.code.code())?;
        Some(ApiError::new(code, e.message.clone()))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<ApiError> for RpcError {
    fn from(e: ApiError) -> RpcError {
        RpcError {
            code: rpc::ErrorCode::from(e.code.code()),
            message: e.message,
            data: None,
        }
    }
}

/// Checks across params that no single param's type can make (one of two required, ...).
pub trait Params: Serialize + DeserializeOwned {
    fn check(&self) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Reads a call's params into `T`; the error names the param (`"turn.server"`, `"stun[1]"`)
/// and what was expected.
fn parse_params<T: Params>(params: Map<String, Value>) -> Result<T, ApiError> {
    let t: T = serde_path_to_error::deserialize(Value::Object(params)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        match inner.strip_prefix("missing field `") {
            Some(rest) if path == "." => ApiError::param(rest.trim_end_matches('`'), "missing"),
            Some(rest) => {
                ApiError::param(&format!("{path}.{}", rest.trim_end_matches('`')), "missing")
            }
            None if path == "." => ApiError::new(ErrorCode::InvalidParams, inner),
            None => ApiError::param(&path, inner),
        }
    })?;
    t.check()?;
    Ok(t)
}

fn to_params<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).expect("API types serialise")
}

/// The answer datagram to a request: its typed result, or the error.
pub fn response<T: Serialize>(id: Id, result: Result<T, ApiError>) -> Vec<u8> {
    rpc::response(id, result.map(|r| to_params(&r)).map_err(RpcError::from))
}

/// One enum of calls per direction, from one list of `"method" => Variant(Params)`: the
/// method names, the parser from a call and the datagram builders cannot disagree.
macro_rules! calls {
    ($(#[$meta:meta])* pub enum $name:ident {
        $($(#[$vmeta:meta])* $method:literal => $variant:ident($params:ty),)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $($(#[$vmeta])* $variant($params),)*
        }

        impl $name {
            /// Every method name, in the order of docs/rpc.md.
            pub const METHODS: &'static [&'static str] = &[$($method),*];

            pub fn method(&self) -> &'static str {
                match self {
                    $($name::$variant(_) => $method,)*
                }
            }

            pub fn params(&self) -> serde_json::Value {
                match self {
                    $($name::$variant(p) => $crate::api::to_params(p),)*
                }
            }

            /// The typed call of a parsed `rpc::Incoming::Call`.
            pub fn from_call(
                method: &str,
                params: serde_json::Map<String, serde_json::Value>,
            ) -> Result<$name, $crate::api::ApiError> {
                match method {
                    $($method => $crate::api::parse_params(params).map($name::$variant),)*
                    _ => Err($crate::api::ApiError::method_not_found(method)),
                }
            }

            /// This call as a request datagram with `id`.
            pub fn request(&self, id: u64) -> Vec<u8> {
                $crate::rpc::request(id, self.method(), self.params())
            }

            /// This call as a notification datagram (no answer).
            pub fn notification(&self) -> Vec<u8> {
                $crate::rpc::notification(self.method(), self.params())
            }
        }

        $(impl From<$params> for $name {
            fn from(p: $params) -> $name {
                $name::$variant(p)
            }
        })*
    };
}
use calls;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const RPC_MD: &str = include_str!("../../../docs/rpc.md");

    /// The backquoted names in the first column of the tables of the docs/rpc.md section whose
    /// heading starts with `heading`, up to the next heading.
    pub(super) fn documented_methods(heading: &str) -> BTreeSet<&'static str> {
        let start = RPC_MD
            .find(heading)
            .unwrap_or_else(|| panic!("docs/rpc.md has no section {heading:?}"));
        let section = &RPC_MD[start + heading.len()..];
        let section = &section[..section.find("\n#").unwrap_or(section.len())];
        section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect()
    }

    /// docs/rpc.md and the typed method lists name the same methods.
    pub(super) fn assert_documented(heading: &str, typed: &[&'static str]) {
        let documented = documented_methods(heading);
        let typed: BTreeSet<&str> = typed.iter().copied().collect();
        for m in &typed {
            assert!(
                documented.contains(m),
                "method {m:?} is typed but missing from docs/rpc.md, section {heading:?}"
            );
        }
        for m in &documented {
            assert!(
                typed.contains(m),
                "method {m:?} is in docs/rpc.md, section {heading:?}, but has no type"
            );
        }
    }

    #[test]
    fn error_codes_keep_their_numbers_and_map_back() {
        assert_eq!(ErrorCode::MethodNotFound.code(), -32601);
        assert_eq!(ErrorCode::InvalidParams.code(), -32602);
        assert_eq!(ErrorCode::TapWriteFailed.code(), 1);
        assert_eq!(ErrorCode::KeyFileError.code(), 5);
        for c in ErrorCode::ALL {
            let e: RpcError = ApiError::new(c, "x").into();
            assert_eq!(e.code.code(), c.code());
            assert_eq!(ApiError::from_rpc(&e), Some(ApiError::new(c, "x")));
            let bytes = response::<Value>(Id::Num(1), Err(ApiError::new(c, "x")));
            match rpc::parse(&bytes) {
                rpc::Incoming::Response { result: Err(e), .. } => {
                    assert_eq!(ApiError::from_rpc(&e).map(|e| e.code), Some(c))
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
