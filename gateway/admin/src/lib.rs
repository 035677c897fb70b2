//! Gateway metrics (lock-free, Prometheus text) and the admin HTTP listener
//! (`/metrics`, `/healthz`, `/readyz`).
//!
//! # Metrics
//!
//! [`names`] holds every metric family name. At start-up the gateway builds one
//! [`Registry`] with a [`WorkerMetrics`] per worker thread and clones each
//! worker's `Arc` into that thread, which alone writes it: counters, gauges,
//! labelled counters as fixed arrays indexed by small label enums
//! ([`HandshakeFailure`], [`AuthFailure`], [`DropReason`], [`SessionState`],
//! and `protocol`'s `FrameKind` and `CloseCode`) and the loop-turn
//! [`Histogram`]. An increment is one `Relaxed` atomic add on the worker's own
//! cache line: no lock, no map, no allocation.
//!
//! ```
//! use std::time::Duration;
//! use gateway_admin::{HandshakeFailure, Registry};
//!
//! let registry = Registry::new(2);
//! let worker = registry.worker(0).unwrap().clone(); // moved into worker 0
//! worker.accepts.inc();
//! worker.handshake_failures.inc(HandshakeFailure::Timeout);
//! worker.frames_in.inc(protocol::FrameKind::Ping);
//! worker.loop_turn.observe(Duration::from_micros(40));
//!
//! let text = registry.render_to_string();
//! assert!(text.contains("gateway_accepts_total 1\n"));
//! assert!(text.contains("gateway_handshake_failures_total{reason=\"timeout\"} 1\n"));
//! ```
//!
//! # Admin listener
//!
//! [`http::spawn`] serves the registry, liveness and readiness on a std thread
//! of its own; see [`http`] for the endpoints and the limits that keep a stuck
//! admin client from wedging it.

mod labels;
mod metrics;
mod process;
mod registry;

pub mod http;
pub mod names;

pub use http::{spawn, AdminHandle, AdminOptions};
pub use labels::{AuthFailure, DropReason, HandshakeFailure, Label, MediaResult, SessionState};
pub use metrics::{Counter, Counters, Gauge, Gauges, Histogram, WorkerMetrics, LOOP_TURN_BOUNDS_NS};
pub use process::resident_memory_bytes;
pub use registry::{Probe, Registry, Render, CONTENT_TYPE};
