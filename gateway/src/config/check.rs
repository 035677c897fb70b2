//! `gateway check-config FILE`: what a file changes from the defaults, key
//! by key (sorted by section, then key).

use super::Config;

/// One key whose value differs from its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// `section.key`.
    pub key: String,
    /// The value, as TOML.
    pub value: String,
    /// The default, as TOML (`None`: unset by default).
    pub default: Option<String>,
}

/// The keys `config` sets to other values than [`Config::default`].
pub fn differences(config: &Config) -> Vec<Difference> {
    let (Ok(toml::Value::Table(set)), Ok(toml::Value::Table(defaults))) =
        (toml::Value::try_from(config), toml::Value::try_from(Config::default()))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (section, values) in &set {
        let (Some(values), default) =
            (values.as_table(), defaults.get(section).and_then(toml::Value::as_table))
        else {
            continue;
        };
        for (key, value) in values {
            let default = default.and_then(|table| table.get(key));
            if default != Some(value) {
                out.push(Difference {
                    key: format!("{section}.{key}"),
                    value: value.to_string(),
                    default: default.map(ToString::to_string),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_keys_set_to_other_values_are_listed() {
        let config = Config::from_toml(
            "[node]\nworkers = 4\n[session]\nheartbeat_ms = 30000\n[listen]\nwss = \"0.0.0.0:7443\"\n",
        )
        .unwrap_or_default();
        let keys: Vec<(String, Option<String>)> = differences(&config)
            .into_iter()
            .map(|d| (format!("{} = {}", d.key, d.value), d.default))
            .collect();
        assert_eq!(
            keys,
            [
                ("listen.wss = \"0.0.0.0:7443\"".to_owned(), None),
                ("node.workers = 4".to_owned(), Some("0".to_owned())),
            ],
            "heartbeat_ms is set to its default: not a difference"
        );
        assert!(differences(&Config::default()).is_empty());
    }
}
