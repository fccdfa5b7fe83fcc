//! The staging tree: a manifest of every path (type, mode, owner, xattrs, hardlinks) plus a content
//! store, shared by install, configure and every backend. Not written yet: the install issue (#4) brings it.
