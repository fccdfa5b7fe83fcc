//! Resolution: rpmvercmp, dependency expressions (rich deps), a resolvo-based solver with RPM rules,
//! failure explanations and the lockfile. Not written yet: the resolver issue (#3) brings it.
