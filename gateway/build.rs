//! Records the git commit the binary is built from (`gateway --version`):
//! `GATEWAY_GIT_COMMIT` from the environment when set (a package built from
//! a tarball), else `git rev-parse`, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=GATEWAY_GIT_COMMIT");
    // A new commit or checkout moves HEAD or a branch ref.
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    let commit = std::env::var("GATEWAY_GIT_COMMIT").ok().filter(|c| !c.is_empty()).unwrap_or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|hash| hash.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned())
    });
    println!("cargo:rustc-env=GATEWAY_GIT_COMMIT={commit}");
}
