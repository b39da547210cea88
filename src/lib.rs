//! mvconf: stable macvlan addresses for Docker Swarm / DCE services.
//!
//! Data flows one way: a spec ([`crd`], or a legacy conf.json read by
//! [`config`]) is validated, one [`reconcile::Pass`] observes the swarm,
//! plans with the allocator ([`pool`]) and applies the plan through
//! [`engine`], and the drivers ([`cli`] and [`operator`]) report what
//! happened.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cli;
pub mod cluster;
pub mod config;
pub mod crd;
pub(crate) mod credentials;
pub mod engine;
pub(crate) mod fence;
pub(crate) mod operator;
pub mod pool;
pub mod probe;
pub mod reconcile;
pub(crate) mod retry;
pub mod secret;
pub mod slices;
pub mod tenancy;
