//! Applying the definition's system configuration to the staging tree: users, services, files,
//! hostname, locale, SELinux, scripts. Not written yet: the install issue (#4) brings it.
