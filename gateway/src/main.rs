//! `gateway` binary. Placeholder until the gateway issue: it says so and exits
//! with a failure status rather than pretending to serve.

fn main() -> std::process::ExitCode {
    let versions = gateway::PROTOCOL_VERSIONS;
    eprintln!(
        "gateway {}: the daemon is not built yet (protocol v{}..=v{} is); see ARCHITECTURE.md",
        env!("CARGO_PKG_VERSION"),
        versions.start(),
        versions.end()
    );
    std::process::ExitCode::from(2)
}
