//! Disk image writers: the file systems and partition tables that go into a disk image, written
//! in-process into byte ranges of one sparse image file.

pub mod ext4;
