//! GeuseMaker: deployments of a private AI stack on AWS, written as Rhai recipes over typed
//! primitives.
//!
//! Layers, top to bottom: [`cli`] (clap) → [`engine`] (the Rhai host) → [`primitives`]
//! (script-visible functions) → [`cloud`] (AWS behind one interface per service) and
//! [`state`] (stack files, ledger, locks).

pub mod boot;
pub mod cidr;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod engine;
pub mod interrupt;
pub mod inventory;
pub mod kinds;
pub mod ops;
pub mod primitives;
pub mod public_ip;
pub mod services;
pub mod state;
pub mod suggest;
pub mod ui;
