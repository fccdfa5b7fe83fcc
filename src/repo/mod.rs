//! Repositories: repomd.xml, primary/filelists/comps (gz, xz, zstd, bz2) from file:// and https://,
//! checksum-verified and cached by repomd checksum. Not written yet: the resolver issue (#3) brings it.
