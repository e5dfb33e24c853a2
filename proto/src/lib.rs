//! Sans-IO core of the IPOP switch-mode overlay: wire formats, the RPC and ICC message types,
//! the config, and the state machines (MAC table, switch decisions, link sessions, ARP
//! replication). No sockets, no threads, no clock reads (time is an argument), no files, no DNS.

pub mod api;
pub mod config;
pub mod hostport;
pub mod http_head;
pub mod icc;
pub mod id;
pub mod link;
pub mod mactable;
pub mod nat;
pub mod neigh;
pub mod offload;
pub mod ratelimit;
pub mod replay;
pub mod rpc;
pub mod rpc_stream;
pub mod secure;
pub mod signal;
pub mod stanza_meter;
pub mod storm;
pub mod switch;
pub mod wire;
