//! Media tickets against PINGs through one node, in the same run
//! (`scripts/bench-media` starts the node and the object store): each of
//! `--connections` sessions keeps `--window` requests in flight until it has
//! `--requests` answers, first PINGs, then MEDIA_UPLOAD tickets, then
//! MEDIA_DOWNLOAD tickets. One JSON line per phase: answers per second and
//! per CPU-second of the node (`--pid`, from `/proc/PID/stat`).

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use client::protocol::{Capabilities, DeviceId, MediaClass, MediaId, UserId};
use client::{Client, ClientConfig, Event};

#[derive(Parser, Debug)]
struct Args {
    /// The node's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:7700/ws")]
    url: String,
    /// The node's development signing key, to mint tokens.
    #[arg(long)]
    key: PathBuf,
    /// The node's process id (its CPU time is read around each phase).
    #[arg(long)]
    pid: u32,
    /// Sessions, one user each.
    #[arg(long, default_value_t = 50)]
    connections: u64,
    /// Answers per session and phase.
    #[arg(long, default_value_t = 4_000)]
    requests: u64,
    /// Requests in flight per session.
    #[arg(long, default_value_t = 32)]
    window: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Ping,
    Upload,
    Download,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let pkcs8 = std::fs::read(&args.key)?;
    let signer = gateway_auth::keys::dev_signer_from_pkcs8(&pkcs8)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut sessions = Vec::new();
    for i in 0..args.connections {
        let token = signer.mint(UserId(1_000_000 + i), DeviceId(1), now, 3_600);
        let mut config = ClientConfig::new(args.url.clone(), token.into_bytes(), DeviceId(1));
        config.capabilities = Capabilities::MEDIA;
        let mut client = Client::connect(config).await?;
        while !matches!(client.next_event().await?, Event::Synced { .. }) {}
        sessions.push((client, None));
    }
    for phase in [Phase::Ping, Phase::Upload, Phase::Download] {
        let cpu = node_cpu(args.pid)?;
        let started = Instant::now();
        let tasks: Vec<_> = sessions
            .drain(..)
            .map(|(client, media)| tokio::spawn(run(client, media, phase, args.requests, args.window)))
            .collect();
        for task in tasks {
            sessions.push(task.await?.map_err(|err| err.to_string())?);
        }
        let secs = started.elapsed().as_secs_f64();
        let cpu = node_cpu(args.pid)? - cpu;
        let answers = (args.connections * args.requests) as f64;
        println!(
            "{{\"phase\": \"{phase:?}\", \"answers\": {answers}, \"secs\": {secs:.3}, \"node_cpu_s\": {cpu:.3}, \
             \"per_s\": {:.0}, \"per_node_cpu_s\": {:.0}}}",
            answers / secs,
            answers / cpu.max(0.001)
        );
    }
    Ok(())
}

type Session = (Client, Option<MediaId>);

/// One session's share of a phase; it returns the session (with a media id
/// from its uploads, for the downloads).
async fn run(
    mut client: Client,
    mut media: Option<MediaId>,
    phase: Phase,
    requests: u64,
    window: u64,
) -> Result<Session, Box<dyn Error + Send + Sync>> {
    let (mut sent, mut answered) = (0, 0);
    while answered < requests {
        while sent < requests && sent - answered < window {
            match phase {
                Phase::Ping => {
                    client.ping().await?;
                }
                Phase::Upload => {
                    client.media_upload(sent, 300_000, MediaClass::Image).await?;
                }
                Phase::Download => {
                    let id = media.clone().ok_or("no media id from the upload phase")?;
                    client.media_download(id).await?;
                }
            }
            sent += 1;
        }
        match tokio::time::timeout(Duration::from_secs(30), client.next_event()).await?? {
            Event::Pong { .. } if phase == Phase::Ping => answered += 1,
            Event::MediaUploadTicket(ticket) if phase == Phase::Upload => {
                media = Some(ticket.media_id);
                answered += 1;
            }
            Event::MediaDownloadTicket(_) if phase == Phase::Download => answered += 1,
            Event::Error(error) => {
                return Err(format!("refused: {} {}", error.code, error.text.as_str()).into())
            }
            _ => {}
        }
    }
    Ok((client, media))
}

/// The node's user + system CPU time, seconds.
fn node_cpu(pid: u32) -> Result<f64, Box<dyn Error>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): utime and
    // stime are the 12th and 13th of them, in clock ticks (100 per second
    // on Linux).
    let rest = stat.rsplit_once(')').ok_or("odd /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).ok_or("short stat")?.parse::<u64>()?
        + fields.get(12).ok_or("short stat")?.parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}
