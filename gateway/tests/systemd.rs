//! The shipped systemd units (the Debian package's, `scripts/deb`) pass
//! `systemd-analyze verify` (with `ExecStart` pointed at the binary under
//! test, since verify checks that it exists), and the package's default
//! config passes `gateway check-config`. `scripts/test` installs systemd where
//! it is missing; without `systemd-analyze` this test fails and says so.
//! `scripts/deb-test` checks the installed units the same way.

// Test code: a panic is a failed assertion, so unwrap and expect are fine here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn verify(unit: &str, instance: Option<&str>) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd").join(unit);
    let text = std::fs::read_to_string(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    assert!(text.contains("ExecStart=/usr/bin/gateway "), "{unit}: unexpected ExecStart");
    let text =
        text.replace("ExecStart=/usr/bin/gateway ", &format!("ExecStart={} ", env!("CARGO_BIN_EXE_gateway")));
    let dir =
        std::env::temp_dir().join(format!("gateway-units-{}-{}", std::process::id(), unit.replace('@', "_")));
    std::fs::create_dir_all(&dir).unwrap();
    let name = match instance {
        Some(instance) => unit.replace("@.", &format!("@{instance}.")),
        None => unit.to_owned(),
    };
    let path = dir.join(&name);
    std::fs::write(&path, text).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is not installed (scripts/test installs the systemd package)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{name} does not verify:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn gateway_service_verifies() {
    verify("gateway.service", None);
}

#[test]
fn gateway_template_verifies_as_an_instance() {
    verify("gateway@.service", Some("a"));
}

#[test]
fn units_ask_for_what_the_node_provides() {
    for unit in ["gateway.service", "gateway@.service"] {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd").join(unit))
                .unwrap();
        for line in [
            "Type=notify",
            "WatchdogSec=",
            "KillSignal=SIGTERM",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "NoNewPrivileges=yes",
            // The package's postinst creates this user and /var/lib/gateway
            // with the mode the node gives its data dir (0700).
            "User=gateway",
            "Group=gateway",
            "StateDirectoryMode=0700",
        ] {
            assert!(text.contains(line), "{unit} lacks {line}");
        }
        assert!(!text.contains("DynamicUser="), "{unit}: the package's user is static");
        let nofile: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("LimitNOFILE="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no numeric LimitNOFILE"));
        assert!(nofile >= 2_000_000, "{unit}: LimitNOFILE {nofile} is below 2M sessions");
    }
}

#[test]
fn packaged_config_passes_check_config() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/debian/gateway.toml");
    let output =
        Command::new(env!("CARGO_BIN_EXE_gateway")).arg("check-config").arg(&config).output().unwrap();
    assert!(
        output.status.success(),
        "{} is invalid:\n{}",
        config.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}
