// The messenger gateway's client for browsers and Node: the wire protocol v1
// codec (generated from protocol/SPEC.md), the sans-IO session core, the
// message status tracker and the WebSocket driver. No runtime dependencies.

export { GatewayClient, NotConnected, RequestRefused, closeAction } from './client.js';
export type { ClientEvent, ClientOptions, CloseAction, ConnectionState, TokenSource, WebSocketLike } from './client.js';
export { Session, UnexpectedFrame } from './session.js';
export type { PendingSend, Request, SessionEvent, SessionOptions } from './session.js';
export { StatusTracker } from './status.js';
export type { MessageStatus, StatusChange } from './status.js';
export { Backoff, jittered } from './backoff.js';
export { CLIENT_MESSAGE_LIMITS, Encoder, decodeMessage, encodeMessage } from './codec.js';
export type { DecodeLimits } from './codec.js';
export { DecodeError, EncodeError } from './wire.js';
export type { Conversation } from './wire.js';
export * from './spec.gen.js';
