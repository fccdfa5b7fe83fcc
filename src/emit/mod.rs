//! Backends that turn the finished staging tree into artifacts: disk (vhd, raw, qcow2, vhdx), OCI and
//! WSL. Not written yet: the OCI/WSL (#5) and disk (#6) issues bring them.
