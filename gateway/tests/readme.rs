//! README.md documents every configuration key with its default: its config
//! block must be exactly what `gateway --print-config` prints.

#[test]
fn readme_config_block_is_the_documented_defaults() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let begin = "<!-- config:begin -->\n```toml\n";
    let start = readme.find(begin).expect("config:begin marker") + begin.len();
    let end = readme.find("```\n<!-- config:end -->").expect("config:end marker");
    assert_eq!(
        &readme[start..end],
        gateway::config::documented_defaults(),
        "README's config block is stale: paste `gateway --print-config` between the markers"
    );
}
