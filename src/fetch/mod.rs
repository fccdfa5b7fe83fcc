//! Fetching packages: concurrent downloads with retries and resume, sha256 and OpenPGP checks, a
//! content-addressed package cache. Not written yet: the install issue (#4) brings it.
