//! Installing packages into the staging tree in transaction order: payloads, %config/%ghost/%doc,
//! scriptlets and triggers in a sandbox, the rpmdb.

pub mod rpmdb;
