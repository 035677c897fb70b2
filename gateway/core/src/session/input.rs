//! Client input: the HTTP upgrade, WebSocket events and protocol frames, as
//! they arrive in `Session::handle_read`.

use bytes::{Buf, Bytes, BytesMut};
use gateway_ws::{parse_request, write_accept, write_rejection};
use gateway_ws::{MessageReader, OpCode, Route, WsEvent};
use protocol::{CloseCode, DecodeError, Direction, ErrorCode, Frame, Pong};

use super::{Session, State};
use crate::context::{Action, Ctx, Observer};
use crate::outbound::Class;
use crate::timers::Timer;

impl Session {
    /// Reads the HTTP upgrade; true once the WebSocket is open.
    pub(super) fn read_upgrade<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, buf: &mut BytesMut) -> bool {
        let mut response = BytesMut::new();
        match parse_request(buf, &ctx.config.handshake) {
            Ok(None) => false,
            Ok(Some(accepted)) => {
                buf.advance(accepted.consumed);
                write_accept(&accepted, &mut response);
                self.out.push_raw(response.freeze());
                self.timers.stop(Timer::Handshake);
                let open = match accepted.route {
                    Route::Echo => {
                        self.reader = Some(MessageReader::new(ctx.config.echo_max_message));
                        State::Echo
                    }
                    Route::Ws => {
                        self.timers.set(Timer::Auth, ctx.now + ctx.config.auth_timeout);
                        State::AwaitHello
                    }
                };
                self.transition(open);
                true
            }
            Err(rejection) => {
                ctx.observer.handshake_failed(rejection.reason.as_str());
                write_rejection(&rejection, &mut response);
                self.out.push_raw(response.freeze());
                self.finish(ctx, 0);
                false
            }
        }
    }

    pub(super) fn on_ws_event<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, event: WsEvent) {
        match (self.state, event) {
            (State::Closed, _) => {}
            (State::Closing, WsEvent::Close { .. }) => self.finish(ctx, 0),
            (State::Closing, _) => {}
            (_, WsEvent::Close { code, .. }) => {
                // Answer the client's close with its code (RFC 6455 §5.5.1).
                let code = code.unwrap_or(CloseCode::NORMAL.0);
                self.push_ws_close(code, "");
                ctx.observer.closed(code);
                self.finish(ctx, 0);
            }
            // Control frames take tokens from the frame-rate bucket like
            // protocol frames, in every state; a refused ping gets no pong.
            // The pong's payload is copied (at most 125 bytes) so that it does
            // not pin the read buffer it was split from while it waits.
            (_, WsEvent::Ping(payload)) => {
                if self.check_rate(ctx).is_ok() {
                    // A refusal (overflow) has already started the close.
                    let _ = self.send_data(ctx, OpCode::Pong, Bytes::copy_from_slice(&payload), Class::Reply);
                }
            }
            (_, WsEvent::Pong(_)) => {
                let _ = self.check_rate(ctx);
            }
            // Echoes are live output: paused for a client that does not read
            // (SPEC §7's policy, with room for one whole echo more).
            (State::Echo, WsEvent::Binary(message)) => {
                let _ = self.send_data(ctx, OpCode::Binary, message, Class::Live);
            }
            (State::Echo, WsEvent::Text(message)) => {
                let _ = self.send_data(ctx, OpCode::Text, message, Class::Live);
            }
            (_, WsEvent::Text(_)) => {
                self.close(ctx, CloseCode::UNSUPPORTED_DATA.0, "binary messages only");
            }
            (_, WsEvent::Binary(message)) => self.on_message(ctx, message),
        }
    }

    /// One binary message of protocol frames.
    pub(super) fn on_message<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, message: Bytes) {
        for item in ctx.config.decoder.message(message) {
            if matches!(self.state, State::Closing | State::Closed) {
                return;
            }
            match item {
                Ok(frame) => {
                    ctx.observer.frame_in(frame.kind());
                    self.on_frame(ctx, frame);
                }
                Err(DecodeError::UnsupportedVersion { .. }) if self.state == State::AwaitHello => {
                    let text = "no protocol version in common";
                    self.reject(
                        ctx,
                        ErrorCode::UNSUPPORTED_VERSION,
                        CloseCode::UNSUPPORTED_VERSION,
                        "version",
                        text,
                    );
                }
                Err(err) => {
                    let text = err.to_string();
                    self.error(ctx, ErrorCode::BAD_FRAME, &text);
                    self.close(ctx, CloseCode::BAD_FRAME.0, &text);
                }
            }
        }
    }

    pub(super) fn on_frame<O: Observer>(&mut self, ctx: &mut Ctx<'_, O>, frame: Frame) {
        if matches!(self.state, State::Live(_) | State::Draining(_)) {
            if let Err(wait) = self.check_rate(ctx) {
                self.refuse(ctx, &frame, wait);
                return;
            }
        }
        match (self.state, frame) {
            (State::AwaitHello, Frame::Hello(hello)) => {
                self.transition(State::Verifying);
                ctx.actions.push(Action::Verify(Box::new(hello)));
            }
            (State::Live(_) | State::Draining(_), Frame::Ping(ping)) => {
                self.reply(ctx, &Frame::Pong(Pong { nonce: ping.nonce }));
                // The heartbeat of a client that may be idle: its output
                // buffers go once the PONG is out (one allocation again at
                // its next output).
                self.out.release_when_drained();
            }
            (State::Live(_) | State::Draining(_), Frame::Pong(_)) => {}
            (State::Live(_) | State::Draining(_), Frame::Ack(ack)) => {
                let (moved, step) = self.delivery.ack(ack.up_to, !self.out.is_empty());
                if let Some(up_to) = moved {
                    ctx.actions.push(Action::Acked(up_to));
                }
                self.step(ctx, step);
            }
            (State::Live(_) | State::Draining(_), Frame::SyncRequest(request)) => {
                let unwritten = !self.out.is_empty();
                let step = self.delivery.sync_request(request.after, request.window, unwritten);
                self.step(ctx, step);
            }
            (State::Live(_) | State::Draining(_), frame)
                if frame.kind().direction() == Direction::ClientToServer
                    && !matches!(frame, Frame::Hello(_)) =>
            {
                ctx.actions.push(Action::Frame(frame));
            }
            (_, frame) => {
                let text = format!("{} is not allowed here", frame.kind().name());
                self.error(ctx, ErrorCode::UNEXPECTED_FRAME, &text);
                self.close(ctx, CloseCode::UNEXPECTED_FRAME.0, &text);
            }
        }
    }
}
