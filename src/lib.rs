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
pub mod tree;

// The backends are still to be written (issues #5 and #6); the module says so and `kiln build`
// refuses those formats rather than pretending.
pub mod emit;
