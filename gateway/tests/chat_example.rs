//! The quick start's demo end to end: two `chat` example processes (client
//! crate) against a real node, as a newcomer runs them in two terminals; the
//! sender sees its message stored (✓), delivered (✓✓) and read; and a file
//! sent with `/send-file` through an object store (`s3s-fs`).

// Test code: a panic is a failed assertion, so unwrap is fine here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "common/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Gateway, ObjectStore};

/// The example binary. `--all-targets` compiles examples only as test
/// harnesses, so the runnable `chat` is built here (a no-op when fresh) into
/// the target dir this test runs from.
fn chat_binary() -> PathBuf {
    let profile_dir = std::path::Path::new(env!("CARGO_BIN_EXE_gateway")).parent().unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap();
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "--quiet", "--locked", "-p", "client", "--example", "chat", "--target-dir"]);
    build.arg(target_dir);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build for the chat example");
    assert!(status.success(), "cargo build -p client --example chat failed: {status}");
    let bin = profile_dir.join("examples").join("chat");
    assert!(bin.exists(), "{} is missing after the build", bin.display());
    bin
}

/// A running example: its stdin and the lines it printed so far.
struct Chat {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Chat {
    fn start(gateway: &Gateway, user: u64, to: u64) -> Self {
        let key = gateway.data_dir().join("keys/dev-signing.pk8");
        let mut child = Command::new(chat_binary())
            .current_dir(&gateway.dir)
            .args(["--url", &gateway.url(), "--key", key.to_str().unwrap()])
            .args(["--user", &user.to_string(), "--to", &to.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the chat example");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (stdout, kept) = (child.stdout.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    fn type_line(&mut self, line: &str) {
        writeln!(self.child.stdin.as_mut().unwrap(), "{line}").unwrap();
    }

    /// Waits until a printed line contains `needle`.
    fn expect(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.lines.lock().unwrap().iter().any(|line| line.contains(needle)) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in:\n{}",
                self.lines.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_chat_examples_exchange_a_message_with_sent_delivered_and_read_marks() {
    let gateway = Gateway::start("");
    let mut one = Chat::start(&gateway, 1, 2);
    one.expect("connected");
    let mut two = Chat::start(&gateway, 2, 1);
    two.expect("connected");
    one.type_line("hello from 1");
    one.expect("✓    hello from 1");
    two.expect("user 1: hello from 1");
    one.expect("✓✓   hello from 1");
    // Typing a line marks what was received as read (READ), then sends it.
    two.type_line("hi from 2");
    one.expect("user 2: hi from 2");
    one.expect("read hello from 1");
    for chat in [&mut one, &mut two] {
        chat.type_line("/quit");
    }
}

#[test]
fn a_file_sent_with_send_file_is_saved_by_the_recipients_chat() {
    let store = ObjectStore::start();
    let gateway = Gateway::start(&store.config(""));
    let mut one = Chat::start(&gateway, 1, 2);
    one.expect("connected");
    let two = Chat::start(&gateway, 2, 1);
    two.expect("connected");
    let file = gateway.dir.join("photo.bin");
    let content: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    one.type_line(&format!("/send-file {}", file.display()));
    one.expect("✓    file photo.bin");
    two.expect("user 1: sent a file, saved as downloads/photo.bin (70000 bytes)");
    assert!(std::fs::read(gateway.dir.join("downloads/photo.bin")).unwrap() == content, "other bytes saved");
    one.type_line("/quit");
}
