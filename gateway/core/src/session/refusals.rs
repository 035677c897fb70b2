//! The frame-rate limit's refusals (SPEC §7): the one ERROR of a run of
//! refused frames, the answers that name exactly what to retry, and the close
//! of a client that persists.

use protocol::{CloseCode, ErrorCode, Frame, Note};

use super::{Session, State};
use crate::context::{Ctx, Observer};
use crate::rate::Verdict;

impl Session {
    /// Applies the frame-rate limit: `Err(wait)` when this frame is refused.
    /// The first refusal of a burst gets ERROR `RATE_LIMITED` (reference 0)
    /// once authenticated; a client that keeps going is closed with 4009
    /// (1008 before authentication and on `/echo`, where no protocol frame
    /// is sent).
    pub(super) fn check_rate<O: Observer>(
        &mut self,
        ctx: &mut Ctx<'_, O>,
    ) -> Result<(), std::time::Duration> {
        let Some(limit) = ctx.config.rate else { return Ok(()) };
        match self.bucket.check(limit, self.timers.origin(), ctx.now) {
            Verdict::Pass => Ok(()),
            Verdict::Warn(wait) => {
                ctx.observer.dropped("rate_limited");
                if self.is_authenticated() {
                    let frame = protocol::Error {
                        code: ErrorCode::RATE_LIMITED,
                        retryable: true,
                        retry_after_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
                        reference: 0,
                        text: Note::truncated("frame rate limit"),
                    };
                    self.reply(ctx, &Frame::Error(frame));
                }
                Err(wait)
            }
            Verdict::Refuse(wait) => {
                ctx.observer.dropped("rate_limited");
                Err(wait)
            }
            Verdict::Close => {
                ctx.observer.dropped("rate_limited");
                let code = self.unless_authenticated(CloseCode::RATE_LIMITED);
                self.close(ctx, code.0, "frame rate limit");
                Err(std::time::Duration::ZERO)
            }
        }
    }

    /// Answers a frame the rate limit refused when it has an answer (SPEC
    /// §4.1): SEND gets SEND_ERROR and a request ERROR with its id, so the
    /// client knows exactly what to retry. Frames without an answer (ACK,
    /// READ, TYPING, PRESENCE_*) are covered by the burst's one ERROR.
    pub(super) fn refuse<O: Observer>(
        &mut self,
        ctx: &mut Ctx<'_, O>,
        frame: &Frame,
        wait: std::time::Duration,
    ) {
        if matches!(self.state, State::Closing | State::Closed) {
            return;
        }
        let retry_after_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX).max(1);
        let text = Note::truncated("frame rate limit");
        let answer = match frame {
            Frame::SendMessage(send) => Frame::SendError(protocol::SendError {
                client_id: send.client_id,
                code: ErrorCode::RATE_LIMITED,
                retry_after_ms,
                text,
            }),
            frame => match request_id(frame) {
                Some(reference) => Frame::Error(protocol::Error {
                    code: ErrorCode::RATE_LIMITED,
                    retryable: true,
                    retry_after_ms,
                    reference,
                    text,
                }),
                None => return,
            },
        };
        self.reply(ctx, &answer);
    }
}

/// The `request` id of a client request that has an answer, if `frame` is one.
fn request_id(frame: &Frame) -> Option<u64> {
    match frame {
        Frame::GroupCreate(f) => Some(f.request),
        Frame::GroupAdd(f) => Some(f.request),
        Frame::GroupRemove(f) => Some(f.request),
        Frame::GroupLeave(f) => Some(f.request),
        Frame::GroupSetRole(f) => Some(f.request),
        Frame::GroupGet(f) => Some(f.request),
        Frame::PrekeyUpload(f) => Some(f.request),
        Frame::PrekeyFetch(f) => Some(f.request),
        Frame::MediaUpload(f) => Some(f.request),
        Frame::MediaDownload(f) => Some(f.request),
        _ => None,
    }
}
