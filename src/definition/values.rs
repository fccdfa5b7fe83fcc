//! Value types of the definition that are written as text but mean something precise: file
//! modes, byte sizes, owners, architectures, partition types; each parses strictly, with advice.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::de::custom_with_help;

/// Implements Deserialize (from text, with a helpful error) and Serialize (to text) for a type
/// with `FromStr<Err = (String, String)>` (message, help) and `Display`.
macro_rules! text_value {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = Cow::<str>::deserialize(d)?;
                text.parse()
                    .map_err(|(msg, help): (String, String)| custom_with_help(msg, help))
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------

/// A Unix permission mode, written in octal as text: "0755", "644", "4755".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl FromStr for Mode {
    type Err = (String, String);
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        let help = "write the mode in octal as text, like \"0644\" or \"0755\" (at most 07777)";
        if digits.is_empty()
            || digits.len() > 5
            || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
        {
            return Err((format!("`{s}` is not an octal file mode"), help.into()));
        }
        let value = u32::from_str_radix(digits, 8).expect("checked octal digits");
        if value > 0o7777 {
            return Err((format!("file mode `{s}` is out of range"), help.into()));
        }
        Ok(Mode(value))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

text_value!(Mode);

impl JsonSchema for Mode {
    fn schema_name() -> Cow<'static, str> {
        "Mode".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Octal permission mode as text, e.g. \"0755\" (setuid/setgid/sticky allowed: \"4755\"). Unquoted YAML like 0755 is read by kiln as written, but quoting keeps other YAML tools from reading it as a number.",
            "anyOf": [
                {"type": "string", "pattern": "^(0o)?[0-7]{1,5}$"},
                {"type": "integer", "minimum": 0, "maximum": 7777}
            ]
        })
    }
}

// ---------------------------------------------------------------------------------------------

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

/// A size in bytes, written as "5GiB", "200MiB", "512M" (binary units), "4GB" (decimal) or a
/// plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    pub const MIB: u64 = MIB;

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = (String, String);
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let help = "write a size like \"5GiB\", \"200MiB\" or \"512M\" (K/M/G/T and KiB/MiB/GiB/TiB are powers of 1024; KB/MB/GB/TB are powers of 1000)";
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim();
        if num.is_empty() {
            return Err((format!("`{s}` is not a size"), help.into()));
        }
        let mult = match unit {
            "" | "B" => 1,
            "K" | "KiB" => KIB,
            "M" | "MiB" => MIB,
            "G" | "GiB" => GIB,
            "T" | "TiB" => TIB,
            "KB" | "kB" => 1000,
            "MB" => 1000 * 1000,
            "GB" => 1000 * 1000 * 1000,
            "TB" => 1000 * 1000 * 1000 * 1000,
            _ => {
                return Err((
                    format!("`{s}` has an unknown size unit `{unit}`"),
                    help.into(),
                ));
            }
        };
        num.parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .map(Size)
            .ok_or_else(|| (format!("size `{s}` is too large"), help.into()))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, m) in [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
            if b >= m && b.is_multiple_of(m) {
                return write!(f, "{}{unit}", b / m);
            }
        }
        write!(f, "{b}")
    }
}

text_value!(Size);

impl JsonSchema for Size {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: \"5GiB\", \"200MiB\", \"512M\" (binary), \"4GB\" (decimal), or a number of bytes.",
            "anyOf": [
                {"type": "string", "pattern": "^\\s*[0-9]+\\s*(B|K|KiB|M|MiB|G|GiB|T|TiB|KB|kB|MB|GB|TB)?\\s*$"},
                {"type": "integer", "minimum": 0}
            ]
        })
    }
}

/// A partition size: a [`Size`], or `rest` for whatever the disk has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartSize {
    Fixed(Size),
    Rest,
}

impl FromStr for PartSize {
    type Err = (String, String);
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "rest" {
            return Ok(PartSize::Rest);
        }
        s.parse()
            .map(PartSize::Fixed)
            .map_err(|(m, h)| (m, format!("{h}; or `rest` for the space left on the disk")))
    }
}

impl fmt::Display for PartSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartSize::Fixed(s) => s.fmt(f),
            PartSize::Rest => f.write_str("rest"),
        }
    }
}

text_value!(PartSize);

impl JsonSchema for PartSize {
    fn schema_name() -> Cow<'static, str> {
        "PartitionSize".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let size = generator.subschema_for::<Size>();
        json_schema!({
            "description": "A partition size, or \"rest\" for the space left on the disk.",
            "anyOf": [size, {"const": "rest"}]
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// A user or group, by name (looked up in the image's own passwd/group) or by numeric id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Name(String),
    Id(u32),
}

impl FromStr for Owner {
    type Err = (String, String);
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().map(Owner::Id).map_err(|_| {
                (
                    format!("id `{s}` is out of range"),
                    "ids go from 0 to 4294967294".into(),
                )
            });
        }
        if super::validate::is_valid_account_name(s) {
            Ok(Owner::Name(s.to_string()))
        } else {
            Err((
                format!("`{s}` is not a user or group name"),
                "use a name like `root` or `azureuser` (lower-case letters, digits, `_`, `-`) or a numeric id".into(),
            ))
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Name(n) => f.write_str(n),
            Owner::Id(i) => write!(f, "{i}"),
        }
    }
}

text_value!(Owner);

impl JsonSchema for Owner {
    fn schema_name() -> Cow<'static, str> {
        "Owner".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A user or group name from the image's passwd/group, or a numeric id.",
            "anyOf": [
                {"type": "string", "pattern": "^([a-z_][a-z0-9_-]*\\$?|[0-9]+)$"},
                {"type": "integer", "minimum": 0, "maximum": 4294967294u64}
            ]
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// A CPU architecture kiln builds for, spelt as RPM spells it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "aarch64")]
    Aarch64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// RPM's name, also dnf's `$basearch`.
    pub fn rpm_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The OCI/Go name (`GOARCH`).
    pub fn oci_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The architecture of the machine kiln runs on, if it is one kiln builds for.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rpm_name())
    }
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            _ => Err(format!("unknown architecture `{s}` (x86_64 or aarch64)")),
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// A GPT partition type: a name from the Discoverable Partitions Specification, or a GUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionType {
    Esp,
    Xbootldr,
    BiosBoot,
    Root,
    Usr,
    Home,
    Srv,
    Var,
    Tmp,
    Swap,
    Linux,
    Guid(String),
}

impl PartitionType {
    pub const NAMES: [&'static str; 11] = [
        "esp",
        "xbootldr",
        "bios-boot",
        "root",
        "usr",
        "home",
        "srv",
        "var",
        "tmp",
        "swap",
        "linux",
    ];
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl FromStr for PartitionType {
    type Err = (String, String);
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "esp" => PartitionType::Esp,
            "xbootldr" => PartitionType::Xbootldr,
            "bios-boot" => PartitionType::BiosBoot,
            "root" => PartitionType::Root,
            "usr" => PartitionType::Usr,
            "home" => PartitionType::Home,
            "srv" => PartitionType::Srv,
            "var" => PartitionType::Var,
            "tmp" => PartitionType::Tmp,
            "swap" => PartitionType::Swap,
            "linux" => PartitionType::Linux,
            g if is_guid(g) => PartitionType::Guid(g.to_ascii_uppercase()),
            other => {
                let hint = match super::error::did_you_mean(other, Self::NAMES) {
                    Some(n) => format!("did you mean `{n}`? "),
                    None => String::new(),
                };
                return Err((
                    format!("unknown partition type `{other}`"),
                    format!(
                        "{hint}use one of {} or a type GUID like 0FC63DAF-8483-4772-8E79-3D69D8477DE4",
                        Self::NAMES.join(", ")
                    ),
                ));
            }
        })
    }
}

impl fmt::Display for PartitionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            PartitionType::Esp => "esp",
            PartitionType::Xbootldr => "xbootldr",
            PartitionType::BiosBoot => "bios-boot",
            PartitionType::Root => "root",
            PartitionType::Usr => "usr",
            PartitionType::Home => "home",
            PartitionType::Srv => "srv",
            PartitionType::Var => "var",
            PartitionType::Tmp => "tmp",
            PartitionType::Swap => "swap",
            PartitionType::Linux => "linux",
            PartitionType::Guid(g) => g,
        };
        f.write_str(name)
    }
}

text_value!(PartitionType);

impl JsonSchema for PartitionType {
    fn schema_name() -> Cow<'static, str> {
        "PartitionType".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "GPT partition type: a Discoverable Partitions Specification name (root and usr resolve to the architecture's type) or a type GUID.",
            "anyOf": [
                {"enum": PartitionType::NAMES},
                {"type": "string", "pattern": "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"}
            ]
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// `extends:` takes one path or a list of paths.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn modes() {
        assert_eq!("0755".parse::<Mode>().unwrap(), Mode(0o755));
        assert_eq!("644".parse::<Mode>().unwrap(), Mode(0o644));
        assert_eq!("4755".parse::<Mode>().unwrap(), Mode(0o4755));
        assert_eq!("0o700".parse::<Mode>().unwrap(), Mode(0o700));
        assert!("0789".parse::<Mode>().is_err());
        assert!("17777".parse::<Mode>().is_err());
        assert!("".parse::<Mode>().is_err());
        assert!("rwxr-xr-x".parse::<Mode>().is_err());
        assert_eq!(Mode(0o755).to_string(), "0755");
    }

    #[test]
    fn sizes() {
        assert_eq!("5GiB".parse::<Size>().unwrap().0, 5 * GIB);
        assert_eq!("200MiB".parse::<Size>().unwrap().0, 200 * MIB);
        assert_eq!("512M".parse::<Size>().unwrap().0, 512 * MIB);
        assert_eq!("4GB".parse::<Size>().unwrap().0, 4_000_000_000);
        assert_eq!("1048576".parse::<Size>().unwrap().0, MIB);
        assert_eq!(" 2 G ".parse::<Size>().unwrap().0, 2 * GIB);
        assert!("5 gigs".parse::<Size>().is_err());
        assert!("GiB".parse::<Size>().is_err());
        assert!("-1M".parse::<Size>().is_err());
        assert!("99999999999999T".parse::<Size>().is_err());
        assert_eq!("rest".parse::<PartSize>().unwrap(), PartSize::Rest);
        assert_eq!(Size(200 * MIB).to_string(), "200MiB");
        assert_eq!(Size(1500).to_string(), "1500");
    }

    #[test]
    fn partition_types() {
        assert_eq!("esp".parse::<PartitionType>().unwrap(), PartitionType::Esp);
        let g = "0fc63daf-8483-4772-8e79-3d69d8477de4"
            .parse::<PartitionType>()
            .unwrap();
        assert_eq!(g.to_string(), "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
        let (msg, help) = "efi".parse::<PartitionType>().unwrap_err();
        assert_eq!(msg, "unknown partition type `efi`");
        assert!(help.contains("esp"), "{help}");
    }

    #[test]
    fn owners() {
        assert_eq!("root".parse::<Owner>().unwrap(), Owner::Name("root".into()));
        assert_eq!("0".parse::<Owner>().unwrap(), Owner::Id(0));
        assert!("Root User".parse::<Owner>().is_err());
        assert!("99999999999".parse::<Owner>().is_err());
    }

    proptest! {
        #[test]
        fn size_display_round_trips(n in 0u64..(1 << 50)) {
            let s = Size(n);
            prop_assert_eq!(s.to_string().parse::<Size>().unwrap(), s);
        }

        #[test]
        fn mode_display_round_trips(m in 0u32..=0o7777) {
            prop_assert_eq!(Mode(m).to_string().parse::<Mode>().unwrap(), Mode(m));
        }

        #[test]
        fn size_parser_never_panics(s in "\\PC{0,24}") {
            let _ = s.parse::<Size>();
            let _ = s.parse::<PartSize>();
            let _ = s.parse::<Mode>();
            let _ = s.parse::<PartitionType>();
            let _ = s.parse::<Owner>();
        }

        #[test]
        fn sizes_with_units_scale(n in 0u64..(1 << 30), unit in prop::sample::select(vec![("K", KIB), ("MiB", MIB), ("G", GIB), ("MB", 1_000_000u64)])) {
            let parsed = format!("{n}{}", unit.0).parse::<Size>().unwrap();
            prop_assert_eq!(parsed.0, n * unit.1);
        }
    }
}
