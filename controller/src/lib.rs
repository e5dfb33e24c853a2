//! `gvpn-controller`, the switch-mode control plane, as a library: [`controller::Controller`]
//! configures ipop-tincan over JSON-RPC, keeps it configured across restarts, and replicates
//! ARP between the controllers of the overlay; [`xmpp`] finds the other nodes and carries the
//! link signalling. Everything runs on one tokio runtime; the binary only reads the command line
//! and the config, sets up logging and runs [`controller::Controller::run`].

pub mod bridge;
pub mod controller;
pub mod source;
pub mod xmpp;
