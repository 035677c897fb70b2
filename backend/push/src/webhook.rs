//! The webhook provider: POSTs the notification's JSON body to one `http://`
//! URL over pooled HTTP/1.1 connections and turns the answer into a verdict
//! (2xx sent, 5xx/429/connect error retryable, other 4xx permanent).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::webhook_uri;
use crate::error::PushError;
use crate::notification::Notification;
use crate::provider::{Provider, SendError, SendFuture};

/// Response bodies are read (so the connection can be reused) up to this
/// much; a snippet ends up in the error text.
const MAX_RESPONSE_BODY: usize = 16 * 1024;
/// Characters of a failed response's body kept in the error text.
const ERROR_SNIPPET: usize = 200;

/// POSTs notifications as `application/json` to a URL.
#[derive(Debug, Clone)]
pub struct WebhookProvider {
    uri: Uri,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl WebhookProvider {
    /// A provider for `url` (`http://` only). Must be used from within a
    /// tokio runtime with IO and time enabled (the push thread's).
    pub fn new(url: &str, connect_timeout: Duration) -> Result<Self, PushError> {
        let uri = webhook_uri(url)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            // Idle connections to a relay that went away are dropped rather
            // than tried and failed once each.
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self { uri, client })
    }

    async fn post(&self, n: &Notification) -> Result<(), SendError> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::from(n.to_json())))
            .map_err(|e| SendError::Permanent { reason: format!("bad request: {e}") })?;
        let response = self.client.request(request).await.map_err(|e| SendError::Retryable {
            reason: format!("request failed: {e}"),
            retry_after: None,
        })?;
        let status = response.status();
        let retry_after = retry_after(response.headers().get(RETRY_AFTER));
        // A body we cannot read only costs the connection; the status decides.
        let body = match Limited::new(response.into_body(), MAX_RESPONSE_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => Bytes::new(),
        };
        classify(status, retry_after, &body)
    }
}

impl Provider for WebhookProvider {
    fn send<'a>(&'a self, notification: &'a Notification) -> SendFuture<'a> {
        Box::pin(self.post(notification))
    }
}

/// The verdict on one response.
fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> Result<(), SendError> {
    if status.is_success() {
        return Ok(());
    }
    let snippet: String = String::from_utf8_lossy(body).chars().take(ERROR_SNIPPET).collect();
    let reason = if snippet.trim().is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {}", status.as_u16(), snippet.trim())
    };
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        // Retry-After is honoured on 429 and 503 only, where it means "later".
        let honoured = matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE);
        Err(SendError::Retryable { reason, retry_after: retry_after.filter(|_| honoured) })
    } else {
        // 4xx (and 1xx/3xx, which a webhook should never answer): the same
        // request would get the same answer.
        Err(SendError::Permanent { reason })
    }
}

/// `Retry-After` in delay-seconds. The HTTP-date form is ignored (our
/// backoff applies): a relay in front of APNs/FCM answers in seconds.
fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let secs: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify(StatusCode::OK, None, b""), Ok(()));
        assert_eq!(classify(StatusCode::NO_CONTENT, None, b""), Ok(()));
        let secs = Some(Duration::from_secs(4));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, secs, b""),
            Err(SendError::Retryable { retry_after: Some(d), .. }) if d == Duration::from_secs(4)
        ));
        assert!(matches!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, secs, b""),
            Err(SendError::Retryable { retry_after: None, .. })
        ));
        match classify(StatusCode::BAD_REQUEST, None, b"no such device\n") {
            Err(SendError::Permanent { reason }) => assert_eq!(reason, "HTTP 400: no such device"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify(StatusCode::GONE, None, b""), Err(SendError::Permanent { .. })));
    }

    #[test]
    fn retry_after_seconds_only() {
        let parse = |s: &'static str| retry_after(Some(&HeaderValue::from_static(s)));
        assert_eq!(parse("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after(None), None);
    }
}
