//! kiln: builds Azure Linux 4.0 images (Azure VHDs, OCI images, WSL distributions) from one YAML
//! definition. Each pipeline stage is a module that hands the next a plain value (design.md).

pub mod cli;
pub mod definition;
pub mod glob;

// Pipeline stages still to be written; each module states what it will hold and which issue
// brings it. They contain no code yet, and the CLI verbs that need them say so.
pub mod configure;
pub mod emit;
pub mod fetch;
pub mod install;
pub mod repo;
pub mod resolve;
pub mod tree;
