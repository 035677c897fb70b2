//! The push service: wakes up devices that have no live session when their
//! inbox grows.
//!
//! The gateway calls [`PushApi::notify`] for each inbox entry stored for an
//! offline device and [`PushApi::connected`] when a device connects. Notes
//! for one device within a window ([`PushConfig::window`]) become one
//! [`Notification`], sent through a [`Provider`] (log or webhook) with
//! retries and a dead-letter file. Best effort: the store's inbox is the
//! truth, a push only makes the device connect and sync sooner.
//!
//! ```no_run
//! use backend_push::{Push, PushApi, PushConfig, ProviderConfig};
//! let push = Push::start(PushConfig {
//!     provider: ProviderConfig::Webhook { url: "http://127.0.0.1:9000/push".into() },
//!     ..PushConfig::default()
//! })?;
//! let metrics = push.metrics();
//! // push.notify(note); push.connected(user, device);
//! let mut text = String::new();
//! metrics.render(&mut text);
//! # Ok::<(), backend_push::PushError>(())
//! ```

mod api;
mod coalesce;
mod config;
mod dead_letter;
mod error;
pub mod metrics;
mod notification;
mod provider;
mod retry;
mod service;
mod webhook;

pub use api::*;
pub use config::{ProviderConfig, PushConfig};
pub use error::PushError;
pub use metrics::{MetricsSnapshot, PushMetrics};
pub use notification::Notification;
pub use provider::{LogProvider, Provider, SendError, SendFuture};
pub use service::Push;
pub use webhook::WebhookProvider;
