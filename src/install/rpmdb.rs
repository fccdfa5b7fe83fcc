//! The rpm database inside the image (`/usr/lib/sysimage/rpm/rpmdb.sqlite`), written so that rpm
//! itself reads it. Not written yet.
