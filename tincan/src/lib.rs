//! What `ipop-tincan` shares with the operator's tool `ipopctl`: the key file, and this host's
//! addresses (the host candidates tincan offers; the endpoint `ipopctl invite` proposes).

pub mod hostaddr;
pub mod keys;
