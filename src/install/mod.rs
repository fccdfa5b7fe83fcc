//! Installing packages into the staging tree in transaction order: payloads, %config/%ghost/%doc,
//! scriptlets and triggers in a sandbox, the rpmdb.

pub mod caps;
pub mod order;
pub mod package;
pub mod payload;
pub mod rpmdb;
pub mod sandbox;
pub mod transaction;
