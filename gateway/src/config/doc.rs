//! The `section!` table that defines each config section (struct, defaults,
//! docs in one place), and [`documented_defaults`], the commented TOML that
//! `gateway --print-config` prints and README's config block copies.

use std::fmt::Write as _;

use super::{Config, SECTIONS};

/// Doc and example of one key, for [`documented_defaults`].
#[derive(Debug)]
pub(super) struct FieldDoc {
    pub(super) key: &'static str,
    pub(super) doc: &'static [&'static str],
    /// Example value (a TOML string) printed commented out for an optional
    /// key that is unset by default.
    pub(super) example: Option<&'static str>,
}

/// Doc of one `[section]`, for [`documented_defaults`].
#[derive(Debug)]
pub(super) struct SectionDoc {
    pub(super) key: &'static str,
    pub(super) doc: &'static [&'static str],
    pub(super) fields: &'static [FieldDoc],
}

/// Defines a section struct (serde, deny unknown keys, every key defaulted),
/// its `Default` from the listed defaults, and its [`SectionDoc`].
macro_rules! section {
    (@example) => { None };
    (@example $example:literal) => { Some($example) };
    (
        $(#[doc = $sdoc:literal])+
        $name:ident $key:literal {
            $(
                $(#[doc = $doc:literal])+
                $field:ident: $ty:ty = $default:expr $(, example $example:literal)?;
            )+
        }
    ) => {
        $(#[doc = $sdoc])+
        ///
        #[doc = concat!("Section `[", $key, "]` of the config file. Every key is optional; ")]
        /// [`documented_defaults`] lists the defaults.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $($(#[doc = $doc])+ pub $field: $ty,)+
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $($field: $default,)+ }
            }
        }

        impl $name {
            const DOC: SectionDoc = SectionDoc {
                key: $key,
                doc: &[$($sdoc),+],
                fields: &[$(FieldDoc {
                    key: stringify!($field),
                    doc: &[$($doc),+],
                    example: section!(@example $($example)?),
                }),+],
            };
        }
    };
}

/// The default configuration as commented TOML: every section and key with
/// its doc lines and default value. Optional keys that are unset by default
/// appear commented out with an example value. The text parses back to
/// [`Config::default`].
pub fn documented_defaults() -> String {
    let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
    let mut out = String::from(
        "# Gateway configuration (TOML). Every key is optional; the values below are the\n\
         # defaults. Load a file with --config <path> (or GATEWAY_CONFIG); --listen,\n\
         # --admin, --data-dir, --workers, --driver, --driver-required, --store-writers,\n\
         # --node-id, --echo and --log (or GATEWAY_LISTEN, GATEWAY_ADMIN,\n\
         # GATEWAY_DATA_DIR, GATEWAY_WORKERS, GATEWAY_DRIVER, GATEWAY_DRIVER_REQUIRED,\n\
         # GATEWAY_STORE_WRITERS, GATEWAY_NODE_ID, GATEWAY_ECHO, GATEWAY_LOG) override it.\n",
    );
    for section in SECTIONS {
        out.push('\n');
        for line in section.doc {
            let _ = writeln!(out, "# {}", line.trim());
        }
        let _ = writeln!(out, "[{}]", section.key);
        let values = defaults.get(section.key).and_then(toml::Value::as_table);
        for field in section.fields {
            for line in field.doc {
                let _ = writeln!(out, "# {}", line.trim());
            }
            match (values.and_then(|table| table.get(field.key)), field.example) {
                (Some(value), _) => {
                    let _ = writeln!(out, "{} = {value}", field.key);
                }
                (None, example) => {
                    let example = toml::Value::String(example.unwrap_or_default().to_owned());
                    let _ = writeln!(out, "# {} = {example}", field.key);
                }
            }
        }
    }
    out
}
