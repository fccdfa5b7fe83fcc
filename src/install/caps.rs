//! File capabilities: rpm's `%caps` text (cap_from_text syntax, e.g. `cap_net_raw=ep`) turned
//! into the `security.capability` xattr value the kernel reads (VFS_CAP_REVISION_2).

const NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x1;

/// Parses capability text into the xattr value.
pub fn to_xattr(text: &str) -> Result<Vec<u8>, String> {
    let (mut permitted, mut inheritable, mut effective) = (0u64, 0u64, 0u64);
    for clause in text.split_whitespace() {
        let op_at = clause
            .find(['=', '+', '-'])
            .ok_or_else(|| format!("`{clause}` has no `=`, `+` or `-`"))?;
        let (names, mut ops) = clause.split_at(op_at);
        let mut mask = 0u64;
        if names.is_empty() || names.eq_ignore_ascii_case("all") {
            mask = (1u64 << NAMES.len()) - 1;
        } else {
            for n in names.split(',') {
                let bare = n.trim().to_ascii_lowercase();
                let bare = bare.strip_prefix("cap_").unwrap_or(&bare);
                let bit = NAMES
                    .iter()
                    .position(|c| *c == bare)
                    .ok_or_else(|| format!("unknown capability `{n}`"))?;
                mask |= 1 << bit;
            }
        }
        while let Some(op) = ops.chars().next() {
            let rest = &ops[1..];
            let end = rest.find(['=', '+', '-']).unwrap_or(rest.len());
            let flags = &rest[..end];
            ops = &rest[end..];
            if op == '=' {
                permitted &= !mask;
                inheritable &= !mask;
                effective &= !mask;
            }
            for f in flags.chars() {
                let set = match f {
                    'p' => &mut permitted,
                    'i' => &mut inheritable,
                    'e' => &mut effective,
                    _ => return Err(format!("unknown capability flag `{f}` in `{clause}`")),
                };
                if op == '-' {
                    *set &= !mask;
                } else {
                    *set |= mask;
                }
            }
        }
    }
    let magic = VFS_CAP_REVISION_2
        | if effective != 0 {
            VFS_CAP_FLAGS_EFFECTIVE
        } else {
            0
        };
    let mut out = Vec::with_capacity(20);
    for v in [
        magic,
        permitted as u32,
        inheritable as u32,
        (permitted >> 32) as u32,
        (inheritable >> 32) as u32,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        // What `setcap cap_net_raw=ep` stores (getfattr -e hex): 0x0100000200200000...
        assert_eq!(
            hex::encode(to_xattr("cap_net_raw=ep").unwrap()),
            "0100000200200000000000000000000000000000"
        );
        assert_eq!(
            hex::encode(to_xattr("cap_net_bind_service,cap_setuid+p").unwrap()),
            "0000000280040000000000000000000000000000"
        );
        // A capability above 31 lands in the second word.
        assert_eq!(
            hex::encode(to_xattr("cap_bpf=p").unwrap()),
            "0000000200000000000000008000000000000000"
        );
        assert!(to_xattr("cap_nonsense=p").is_err());
        assert!(to_xattr("cap_net_raw").is_err());
        assert!(to_xattr("cap_net_raw=x").is_err());
    }
}
