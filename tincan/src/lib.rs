//! What `ipop-tincan` shares with the operator's tool `ipopctl`: the key file.

pub mod keys;
