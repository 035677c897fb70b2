//! Where notifications go: the [`Provider`] trait, the verdict of one try
//! ([`SendError`]), and the [`LogProvider`]. The webhook is in `webhook`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::notification::Notification;

/// The future of one try. Boxed so that `Arc<dyn Provider>` works.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// A push provider: delivers one notification per call. The push service
/// calls it from its own runtime, several calls at a time, under its own
/// timeout; retries and dead-lettering are the service's, not the provider's.
pub trait Provider: Send + Sync + std::fmt::Debug + 'static {
    /// One try at delivering `notification`.
    fn send<'a>(&'a self, notification: &'a Notification) -> SendFuture<'a>;
}

/// Why one try failed, and whether another try may succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Transient (5xx, 429, timeout, connection refused): try again later.
    #[error("{reason} (retryable)")]
    Retryable {
        /// What happened, for logs and the dead-letter file.
        reason: String,
        /// How long the provider asked us to wait (`Retry-After`), if it did.
        retry_after: Option<Duration>,
    },
    /// The provider refused this notification (4xx other than 429): trying
    /// again would get the same answer.
    #[error("{reason} (permanent)")]
    Permanent {
        /// What happened, for logs and the dead-letter file.
        reason: String,
    },
}

/// Logs each notification at info (target `push`) and reports it sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogProvider;

impl Provider for LogProvider {
    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        tracing::info!(
            target: "push",
            user = n.user.0,
            device = n.device.0,
            count = n.count,
            seq = n.seq.0,
            conversation = ?n.conversation,
            sender = n.sender.0,
            collapse_key = %n.collapse_key(),
            "push notification"
        );
        Box::pin(std::future::ready(Ok(())))
    }
}
