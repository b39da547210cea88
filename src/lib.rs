//! mvconf: stable macvlan addresses for Docker Swarm / DCE services.
//!
//! Data flows one way: a spec ([`crd`], or a legacy conf.json read by
//! [`config`]) is validated, the allocator ([`pool`]) picks addresses, and
//! the drivers ([`cli`], later the operator) report what happened.
#![forbid(unsafe_code)]

pub mod cli;
pub mod cluster;
pub mod config;
pub mod crd;
pub mod credentials;
pub mod engine;
pub mod operator;
pub mod pool;
pub mod reconcile;
pub mod secret;
