//! A terminal chat over the gateway. Start the quick-start gateway, then run
//! the example in two terminals:
//!
//! ```text
//! cargo run --release -p gateway                            # listens on ws://127.0.0.1:7700/ws
//! cargo run -p client --example chat -- --user 1 --to 2     # terminal 1
//! cargo run -p client --example chat -- --user 2 --to 1     # terminal 2
//! ```
//!
//! Type a line to send it; its status follows: `✓` stored, `✓✓` delivered,
//! `read`. Commands: `/typing`, `/read`, `/to USER` or `/to group:ID`,
//! `/group new NAME U1,U2`, `/send-file PATH` (with a `[media]` object store
//! on the gateway: the recipient's chat saves it under `./downloads/`),
//! `/quit`.
//!
//! Demo shortcuts a real client must not take:
//! - the payload is the line's plaintext bytes: a real client encrypts it
//!   (SPEC §6.7: prekeys, a session protocol) and the server never reads it;
//!   a file is uploaded as it is, where a real client encrypts it with a
//!   fresh key that travels in the (encrypted) message with the media id;
//! - the resume cursor lives in memory only, so a restart replays what was
//!   not acked; client ids start from the clock instead of a persisted
//!   counter;
//! - the token is minted from the gateway's development key
//!   (`./data/keys/dev-signing.pk8`, as `gateway token` does), or given with
//!   `--token`.

use std::collections::HashMap;
use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use client::protocol::{
    Capabilities, ConvSeq, Conversation, Deliver, DeviceId, GroupId, Payload, PresenceStatus,
};
use client::protocol::{MediaClass, MediaId, ReceiptKind, Timestamp, UserId};
use client::{system_group_info, Backoff, Client, ClientConfig, ClientError, Event, MessageStatus};
use client::{MediaRef, StatusChange, StatusTracker};
use gateway_auth::Signer;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Terminal chat against a gateway (development setup).
#[derive(Parser, Debug)]
struct Args {
    /// This user.
    #[arg(long)]
    user: u64,
    /// This device.
    #[arg(long, default_value_t = 1)]
    device: u32,
    /// Whom to talk to: a user id, or `group:ID`.
    #[arg(long)]
    to: String,
    /// The gateway's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:7700/ws")]
    url: String,
    /// The gateway's development signing key, to mint a token.
    #[arg(long, default_value = "./data/keys/dev-signing.pk8")]
    key: PathBuf,
    /// A token to use instead of minting one.
    #[arg(long)]
    token: Option<String>,
}

const HELP: &str =
    "commands: /typing, /read, /to USER | /to group:ID, /group new NAME U1,U2, /send-file PATH, /quit";

/// A file message's payload: `FILE_MARK size media-id-hex name`.
const FILE_MARK: &str = "/file";

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chat: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let me = UserId(args.user);
    let to = parse_target(&args.to).ok_or("--to takes a user id or group:ID")?;
    let signer = match args.token {
        Some(_) => None,
        None => Some(dev_signer(&args.key)?),
    };
    let token = signer.as_ref().map_or_else(|| args.token.clone().unwrap_or_default(), |s| mint(s, &args));
    let mut config = ClientConfig::new(args.url.clone(), token.into_bytes(), DeviceId(args.device));
    config.capabilities = Capabilities::ALL;
    // Client ids must never repeat for this device: a clock is a simple source.
    config.first_client_id = now().as_millis().try_into().unwrap_or(1);
    let mut client =
        Client::connect(config).await.map_err(|e| format!("{}: {e} (is the gateway running?)", args.url))?;
    println!("user {me} on device {}, talking to {}. {HELP}", args.device, label(to));
    println!("(payloads are plaintext in this demo: a real client encrypts them)");

    let mut chat = Chat::new(me, to);
    chat.switch(&mut client, to).await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let (mut backoff, mut redirect, mut floor) = (Backoff::default(), String::new(), Duration::ZERO);
    loop {
        tokio::select! {
            event = client.next_event() => match event {
                Ok(Event::GoAway(goaway)) => {
                    println!("… the server is draining; reconnecting soon");
                    redirect = goaway.redirect.as_str().to_owned();
                    floor = Duration::from_millis(goaway.reconnect_after_ms.into());
                }
                Ok(event) => report(chat.on_event(&mut client, event).await),
                Err(mut err) => loop {
                    if err.needs_new_token() {
                        let signer = signer.as_ref().ok_or("the token expired: pass a fresh --token")?;
                        client.set_token(mint(signer, &args).into_bytes().into())?;
                    } else if !err.is_resumable() {
                        return Err(format!("connection ended: {err}").into());
                    }
                    let wait = std::mem::take(&mut floor).max(err.retry_after().unwrap_or_default());
                    let delay = backoff.next_delay_at_least(wait);
                    println!("… {err}; reconnecting in {:.1} s", delay.as_secs_f64());
                    tokio::time::sleep(delay).await;
                    match client.reconnect_to(&std::mem::take(&mut redirect)).await {
                        Ok(()) => break backoff.reset(),
                        Err(again) => err = again,
                    }
                },
            },
            line = lines.next_line() => match line? {
                Some(line) if line.trim() == "/quit" => break,
                Some(line) => report(chat.on_line(&mut client, line.trim()).await),
                None => break,
            },
        }
    }
    client.close().await?;
    Ok(())
}

/// What the chat remembers, in memory only.
struct Chat {
    me: UserId,
    to: Conversation,
    tracker: StatusTracker,
    changes: Vec<StatusChange>,
    /// The start of each tracked message, to show with its status.
    previews: HashMap<u64, String>,
    /// Highest conv_seq received from others, and last READ sent, per conversation.
    received: HashMap<Conversation, ConvSeq>,
    read: HashMap<Conversation, ConvSeq>,
    /// Names of the groups being created, by request id.
    creating: HashMap<u64, String>,
}

impl Chat {
    fn new(me: UserId, to: Conversation) -> Self {
        let tracker = StatusTracker::new(me);
        let (previews, received, read, creating) = Default::default();
        Self { me, to, tracker, changes: Vec::new(), previews, received, read, creating }
    }

    async fn on_event(&mut self, client: &mut Client, event: Event) -> Result<(), ClientError> {
        self.tracker.handle_event(&event, &mut self.changes);
        for change in self.changes.drain(..) {
            let preview = self.previews.get(&change.client_id).map_or("", String::as_str);
            let status = match change.status {
                MessageStatus::Pending => "…".to_owned(),
                MessageStatus::Stored => "✓".to_owned(),
                MessageStatus::Delivered => "✓✓".to_owned(),
                MessageStatus::Read => "read".to_owned(),
                MessageStatus::Failed(code) => format!("not sent: {code}"),
            };
            println!("    {status:<4} {preview}");
        }
        match event {
            Event::Authenticated(ok) => {
                println!("… connected (session {}, inbox head {})", ok.session, ok.inbox_head)
            }
            Event::Delivered(message) => {
                let line = match system_group_info(&message) {
                    Some(info) => {
                        let members: Vec<String> = info.members.iter().map(|m| m.user.to_string()).collect();
                        format!("group:{} {:?} has members {}", info.group, info.name, members.join(","))
                    }
                    None => {
                        if message.sender != self.me {
                            let top = self.received.entry(message.conversation).or_default();
                            *top = (*top).max(message.conv_seq);
                        }
                        let text = String::from_utf8_lossy(message.payload.bytes()).into_owned();
                        match text.strip_prefix(FILE_MARK) {
                            Some(file) => {
                                format!("{}: {}", origin(&message), receive_file(client, file).await)
                            }
                            None => format!("{}: {text}", origin(&message)),
                        }
                    }
                };
                println!("[{}] {line}", clock(message.server_time));
                // Processed (printed): ack it. A real client batches acks.
                client.ack(message.seq).await?;
            }
            // Every sync batch must be acked, or the sync stalls.
            Event::SyncProgress { up_to, .. } => client.ack(up_to).await?,
            Event::SendFailed { client_id, retryable: true, retry_after_ms, code, .. } => {
                println!("    ({code}: retrying)");
                tokio::time::sleep(Duration::from_millis(retry_after_ms.max(500).into())).await;
                client.resend(client_id).await?;
            }
            Event::Receipt(receipt) if receipt.user == self.me && receipt.kind == ReceiptKind::Read => {
                // Another device of mine read up to there: nothing to re-read.
                let read = self.read.entry(receipt.conversation).or_default();
                *read = (*read).max(receipt.up_to);
            }
            Event::Presence(presence) => match presence.status {
                PresenceStatus::Online => println!("… user {} is online", presence.user),
                PresenceStatus::Offline if presence.last_seen.0 == 0 => {
                    println!("… user {} is offline", presence.user)
                }
                PresenceStatus::Offline => {
                    println!("… user {} is offline, last seen {}", presence.user, clock(presence.last_seen));
                }
            },
            Event::Typing(typing) if typing.user != self.me => {
                let doing = if typing.active { "is typing…" } else { "stopped typing" };
                println!("… user {} {doing} in {}", typing.user, label(typing.conversation));
            }
            Event::GroupOk(ok) => match self.creating.remove(&ok.request) {
                Some(name) => println!("… group {name:?} created: /to group:{}", ok.group),
                None => println!("… group:{} changed (version {})", ok.group, ok.version),
            },
            Event::Error(error) => println!("! {}: {}", error.code, error.text.as_str()),
            _ => {}
        }
        Ok(())
    }

    async fn on_line(&mut self, client: &mut Client, line: &str) -> Result<(), Box<dyn Error>> {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next(), words.next()) {
            (None, ..) => {}
            (Some("/typing"), ..) => client.typing(self.to, true).await?,
            (Some("/read"), ..) => self.mark_read(client).await?,
            (Some("/to"), Some(target), None, _) => match parse_target(target) {
                Some(to) => self.switch(client, to).await?,
                None => println!("{HELP}"),
            },
            (Some("/group"), Some("new"), Some(name), members) => {
                let members: Option<Vec<UserId>> = members
                    .unwrap_or("")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().ok().map(UserId))
                    .collect();
                let members = members.ok_or("members: user ids separated by commas")?;
                let request = client.group_create(name, &members).await?;
                self.creating.insert(request, name.to_owned());
            }
            (Some("/send-file"), Some(_), ..) => {
                let path = line.trim_start().trim_start_matches("/send-file").trim();
                let blob = std::fs::read(path)?;
                let media = client.upload(blob.into(), MediaClass::Document).await?;
                let name =
                    std::path::Path::new(path).file_name().map_or("file".into(), |n| n.to_string_lossy());
                let id: String = media.media_id.bytes().iter().map(|b| format!("{b:02x}")).collect();
                let text = format!("{FILE_MARK} {} {id} {name}", media.size);
                let client_id = client.send(self.to, Payload::new(text.into_bytes())?).await?;
                self.tracker.track(client_id, self.to);
                self.previews.insert(client_id, format!("file {name}"));
            }
            (Some(command), ..) if command.starts_with('/') => println!("{HELP}"),
            _ => {
                // Answering means having read what came before.
                self.mark_read(client).await?;
                let payload = Payload::new(line.as_bytes().to_vec())?;
                let client_id = client.send(self.to, payload).await?;
                self.tracker.track(client_id, self.to);
                self.previews.insert(client_id, line.chars().take(40).collect());
            }
        }
        Ok(())
    }

    /// Sends READ up to the last message received in the current conversation.
    async fn mark_read(&mut self, client: &mut Client) -> Result<(), ClientError> {
        let Some(&up_to) = self.received.get(&self.to) else { return Ok(()) };
        if self.read.get(&self.to).is_some_and(|&read| read >= up_to) {
            return Ok(());
        }
        client.read(self.to, up_to).await?;
        self.read.insert(self.to, up_to);
        Ok(())
    }

    /// Talks to `to` from now on, watching its presence if it is a user.
    async fn switch(&mut self, client: &mut Client, to: Conversation) -> Result<(), ClientError> {
        if let Conversation::Direct(old) = self.to {
            if old != to_user(to).unwrap_or(old) {
                client.presence_unsubscribe(old).await?;
            }
        }
        self.to = to;
        if let Some(user) = to_user(to) {
            client.presence_subscribe(user).await?;
        }
        println!("… talking to {}", label(to));
        Ok(())
    }
}

/// Downloads the file a message names into `./downloads/`; what to print.
async fn receive_file(client: &mut Client, file: &str) -> String {
    let mut words = file.split_whitespace();
    let (Some(size), Some(id), name) = (words.next(), words.next(), words.collect::<Vec<_>>().join(" "))
    else {
        return "a malformed file message".to_owned();
    };
    let bytes: Option<Vec<u8>> = (0..id.len())
        .step_by(2)
        .map(|i| id.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    let (Ok(size), Some(Ok(media_id))) = (size.parse(), bytes.map(MediaId::new)) else {
        return "a malformed file message".to_owned();
    };
    let name =
        std::path::Path::new(&name).file_name().map_or("file".into(), |n| n.to_string_lossy().into_owned());
    match client.download(&MediaRef { media_id, size }).await {
        Ok(blob) => {
            let path = std::path::Path::new("downloads").join(name);
            match std::fs::create_dir_all("downloads").and_then(|()| std::fs::write(&path, &blob)) {
                Ok(()) => format!("sent a file, saved as {} ({size} bytes)", path.display()),
                Err(err) => format!("sent a file ({size} bytes) that could not be saved: {err}"),
            }
        }
        Err(err) => format!("sent a file ({size} bytes) that could not be fetched: {err}"),
    }
}

fn to_user(conversation: Conversation) -> Option<UserId> {
    match conversation {
        Conversation::Direct(user) => Some(user),
        Conversation::Group(_) => None,
    }
}

/// A failed command or event is reported, not fatal: a lost connection is
/// reported again by `next_event`, which reconnects.
fn report<E: std::fmt::Display>(result: Result<(), E>) {
    if let Err(err) = result {
        println!("! {err}");
    }
}

/// `7` or `group:7`.
fn parse_target(text: &str) -> Option<Conversation> {
    match text.strip_prefix("group:") {
        Some(group) => group.parse().ok().map(|id| Conversation::Group(GroupId(id))),
        None => text.parse().ok().map(|id| Conversation::Direct(UserId(id))),
    }
}

/// `user 2`, `user 2 in group:5`, or `user 1 → user 2` (sent by another
/// device of the user).
fn origin(message: &Deliver) -> String {
    match message.conversation {
        Conversation::Group(group) => format!("user {} in group:{group}", message.sender),
        Conversation::Direct(user) if user == message.sender => format!("user {user}"),
        Conversation::Direct(user) => format!("user {} → user {user}", message.sender),
    }
}

fn label(conversation: Conversation) -> String {
    match conversation {
        Conversation::Direct(user) => format!("user {user}"),
        Conversation::Group(group) => format!("group:{group}"),
    }
}

/// `HH:MM:SS` (UTC) of a server timestamp.
fn clock(time: Timestamp) -> String {
    let secs = time.0 / 1000;
    format!("{:02}:{:02}:{:02}", secs / 3600 % 24, secs / 60 % 60, secs % 60)
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// The gateway's development signer (its key id derived from the key, as the
/// gateway does), from its PKCS#8 file.
fn dev_signer(path: &std::path::Path) -> Result<Signer, Box<dyn Error>> {
    let pkcs8 = std::fs::read(path).map_err(|e| {
        format!("{}: {e} (start the gateway once to create it, or pass --token)", path.display())
    })?;
    Ok(gateway_auth::keys::dev_signer_from_pkcs8(&pkcs8)?)
}

/// A one-hour token from the development key (refreshed on AUTH_EXPIRED).
fn mint(signer: &Signer, args: &Args) -> String {
    signer.mint(UserId(args.user), DeviceId(args.device), now().as_secs(), 3600)
}
