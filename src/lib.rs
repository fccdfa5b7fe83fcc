//! kiln: builds Azure Linux 4.0 images (Azure VHDs, OCI images, WSL distributions) from one YAML
//! definition. Each pipeline stage is a module that hands the next a plain value (design.md).

pub mod build;
pub mod cli;
pub mod configure;
pub mod definition;
pub mod fetch;
pub mod glob;
pub mod install;
pub mod repo;
pub mod resolve;
pub mod say;
pub mod tree;

// Backends: the OCI layout is written; WSL and the disk formats are not yet, and `kiln build`
// refuses them rather than pretending.
pub mod emit;
