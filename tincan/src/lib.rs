//! What `ipop-tincan` shares with the operator's tool `ipopctl`: the key file, the control
//! sockets' client side, and this host's
//! addresses (the host candidates tincan offers; the endpoint `ipopctl invite` proposes).

pub mod ctl_client;
pub mod hostaddr;
pub mod keys;
