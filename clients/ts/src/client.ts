// The driver: one Session over the standard WebSocket API (browsers, Node ≥ 22,
// or Node 20 with --experimental-websocket, or any constructor passed in).
// It authenticates, batches the frames of one JavaScript turn into one
// message, sends heartbeats, acks, and reconnects with backoff and resume by
// the close-code classes of SPEC §11, following GOAWAY to the named node or
// the next URL of its list.

import { Backoff, jittered } from './backoff.js';
import { decodeMessage, Encoder } from './codec.js';
import { Session, UnexpectedFrame, type Request, type SessionEvent } from './session.js';
import {
  ALL_CAPABILITIES,
  CLOSE_ACTION,
  Capability,
  ERROR_NAME,
  Limits,
  type Error as ErrorFrame,
  type Frame,
  type GroupInfo,
  type GroupOk,
  type MediaClass,
  type MediaDownloadTicket,
  type MediaUploadTicket,
  type OneTimePrekey,
  type PrekeyBundles,
  type PrekeyOk,
  type Role,
  type SignedPrekey,
  type Visibility,
} from './spec.gen.js';
import { DecodeError, type Conversation } from './wire.js';

/** What the client does after a close (§11). */
export type CloseAction = 'resumable' | 'terminal' | 'new_token';

/** Where the connection is. */
export type ConnectionState = 'connecting' | 'authenticating' | 'live' | 'waiting' | 'stopped';

/** Session events, plus the connection's own. */
export type ClientEvent =
  | SessionEvent
  | { type: 'state'; state: ConnectionState; url: string }
  /** A connection ended; `retryInMs` is the wait before the next attempt, null when the client stopped. */
  | { type: 'disconnected'; code: number; reason: string; action: CloseAction; retryInMs: number | null };

/** The parts of the standard WebSocket the client uses. */
export interface WebSocketLike {
  binaryType: string;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** A token, or a function that returns the current one (called before every connection, so it can refresh). */
export type TokenSource = string | Uint8Array | (() => string | Uint8Array | Promise<string | Uint8Array>);

export interface ClientOptions {
  /** The node URL (`wss://host/ws`), or several nodes of the fleet, tried in turn when one fails. */
  urls: string | string[];
  token: TokenSource;
  /** This device; must match the token. */
  device: number;
  /** Capabilities asked for (default: every one this client knows). */
  capabilities?: bigint;
  /** The last seq this device acked in an earlier run. */
  resumeAfter?: bigint;
  /** The first client id of this run (persist `session.nextClientId` across runs). */
  firstClientId?: bigint;
  /** Ack each delivery once every listener returned, and each sync batch (default true). */
  autoAck?: boolean;
  /** Reconnect after resumable closes (default true). */
  reconnect?: boolean;
  /** Deadline for the WebSocket to open (default 10 s). */
  connectTimeoutMs?: number;
  /** Deadline from HELLO to AUTH_OK (default 10 s). */
  authTimeoutMs?: number;
  backoff?: Backoff;
  /** The WebSocket constructor (default `globalThis.WebSocket`). */
  WebSocket?: new (url: string) => WebSocketLike;
}

/** A request the server refused with ERROR (`error.code`, `error.retryable`). */
export class RequestRefused extends Error {
  constructor(readonly error: ErrorFrame) {
    super(`request refused: ${ERROR_NAME[error.code] ?? error.code} (${error.text})`);
    this.name = 'RequestRefused';
  }
}

/** The call needs a live connection, or the connection ended before its answer. */
export class NotConnected extends Error {
  constructor(what: string) {
    super(`not connected: ${what}`);
    this.name = 'NotConnected';
  }
}

/** §11: the action for a close code (unknown 4000–4999 terminal, other unknown codes resumable). */
export function closeAction(code: number): CloseAction {
  return CLOSE_ACTION[code] ?? (code >= 4000 && code <= 4999 ? 'terminal' : 'resumable');
}

type Answer = GroupOk | GroupInfo | PrekeyBundles | PrekeyOk | MediaUploadTicket | MediaDownloadTicket;
type Waiter = { resolve: (answer: Answer) => void; reject: (err: Error) => void };

const textEncoder = new TextEncoder();

export class GatewayClient {
  /** The sans-IO core (cursor, pending sends, duplicates dropped). */
  readonly session: Session;
  private readonly urls: string[];
  private readonly options: ClientOptions;
  private readonly backoff: Backoff;
  private readonly encoder = new Encoder();
  private readonly listeners = new Set<(event: ClientEvent) => void>();
  private readonly waiters = new Map<bigint, Waiter>();
  private ws: WebSocketLike | null = null;
  private connState: ConnectionState = 'stopped';
  private urlIndex = 0;
  /** GOAWAY's redirect for the next connection. */
  private redirect: string | null = null;
  /** The least wait before the next connection (AUTH_ERROR or GOAWAY asked). */
  private floorMs = 0;
  private sawGoaway = false;
  /** Encoded frames of this turn, sent together as one message (or a few at the limits). */
  private outbox: Uint8Array[] = [];
  private ackDue = false;
  private flushQueued = false;
  private lastHeard = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private heartbeat: ReturnType<typeof setTimeout> | undefined;

  constructor(options: ClientOptions) {
    this.options = options;
    this.urls = typeof options.urls === 'string' ? [options.urls] : [...options.urls];
    if (this.urls.length === 0) throw new TypeError('at least one URL is needed');
    this.backoff = options.backoff ?? new Backoff();
    this.session = new Session({
      device: options.device,
      token: new Uint8Array(0),
      capabilities: options.capabilities ?? ALL_CAPABILITIES,
      resumeAfter: options.resumeAfter,
      firstClientId: options.firstClientId,
    });
  }

  /** Listens to every event; returns the function that stops listening. */
  on(listener: (event: ClientEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Starts connecting (again, after a stop or a terminal close). */
  start(): void {
    if (this.connState !== 'stopped') return;
    this.backoff.reset();
    void this.open();
  }

  /** Closes with 1000 and stops reconnecting. Pending sends and the cursor stay for a later `start`. */
  stop(): void {
    const ws = this.ws;
    if (ws) {
      this.ended(ws, 1000, 'stopped by the application', 'terminal');
      ws.close(1000, 'bye');
    } else {
      this.clearTimers();
      this.setState('stopped');
    }
  }

  get state(): ConnectionState {
    return this.connState;
  }

  /** The URL of the current (or next) connection. */
  get url(): string {
    return this.redirect ?? this.urls[this.urlIndex];
  }

  /** Sends a message (queued while offline, resent with its client id after a reconnect); returns its client id. */
  send(to: Conversation, payload: Uint8Array): bigint {
    // Encode first, so that a frame that cannot be sent is never made pending.
    const bytes = this.encoder.encode([{ type: 'SEND', client_id: this.session.nextClientId, to, payload }]);
    const { client_id } = this.session.send(to, payload);
    if (this.session.isLive) this.push(bytes);
    return client_id;
  }

  /** Resends a pending send now (after a retryable SEND_ERROR). */
  resend(clientId: bigint): void {
    const frame = this.session.resend(clientId);
    if (frame && this.session.isLive) this.enqueue(frame);
  }

  /** Acks every delivery up to `seq` (cumulative: one ACK per turn carries the highest). */
  ack(seq: bigint): void {
    if (this.session.ack(seq) && this.session.isLive) {
      this.ackDue = true;
      this.scheduleFlush();
    }
  }

  read(conversation: Conversation, upTo: bigint): void {
    this.enqueueLive(this.session.read(conversation, upTo), 'READ');
  }

  typing(conversation: Conversation, active: boolean): void {
    this.enqueueLive(this.session.typing(conversation, active), 'TYPING');
  }

  /** Watches a user's presence, now and after every reconnect. */
  presenceSubscribe(user: bigint): void {
    const frame = this.session.presenceSubscribe(user);
    if (this.session.isLive) this.enqueue(frame);
  }

  presenceUnsubscribe(user: bigint): void {
    const frame = this.session.presenceUnsubscribe(user);
    if (this.session.isLive) this.enqueue(frame);
  }

  presenceSet(visibility: Visibility): void {
    this.enqueueLive(this.session.presenceSet(visibility), 'PRESENCE_SET');
  }

  groupCreate(name: string, members: bigint[]): Promise<GroupOk> {
    return this.ask(() => this.session.groupCreate(name, members)) as Promise<GroupOk>;
  }

  groupAdd(group: bigint, members: bigint[]): Promise<GroupOk> {
    return this.ask(() => this.session.groupAdd(group, members)) as Promise<GroupOk>;
  }

  groupRemove(group: bigint, members: bigint[]): Promise<GroupOk> {
    return this.ask(() => this.session.groupRemove(group, members)) as Promise<GroupOk>;
  }

  groupLeave(group: bigint): Promise<GroupOk> {
    return this.ask(() => this.session.groupLeave(group)) as Promise<GroupOk>;
  }

  groupSetRole(group: bigint, user: bigint, role: Role): Promise<GroupOk> {
    return this.ask(() => this.session.groupSetRole(group, user, role)) as Promise<GroupOk>;
  }

  groupGet(group: bigint): Promise<GroupInfo> {
    return this.ask(() => this.session.groupGet(group)) as Promise<GroupInfo>;
  }

  prekeyUpload(identityKey: Uint8Array, signedPrekey: SignedPrekey, oneTime: OneTimePrekey[]): Promise<PrekeyOk> {
    return this.ask(() => this.session.prekeyUpload(identityKey, signedPrekey, oneTime)) as Promise<PrekeyOk>;
  }

  prekeyFetch(user: bigint, device = 0): Promise<PrekeyBundles> {
    return this.ask(() => this.session.prekeyFetch(user, device)) as Promise<PrekeyBundles>;
  }

  /** A presigned upload ticket (needs MEDIA granted): PUT the blob to `url` with `headers`. */
  mediaUpload(clientBlob: bigint, size: bigint, mediaClass: MediaClass): Promise<MediaUploadTicket> {
    this.needMedia();
    return this.ask(() => this.session.mediaUpload(clientBlob, size, mediaClass)) as Promise<MediaUploadTicket>;
  }

  /** A presigned download ticket (needs MEDIA granted): GET `url`. */
  mediaDownload(mediaId: Uint8Array): Promise<MediaDownloadTicket> {
    this.needMedia();
    return this.ask(() => this.session.mediaDownload(mediaId)) as Promise<MediaDownloadTicket>;
  }

  private needMedia(): void {
    if (this.session.isLive && (this.session.granted & Capability.MEDIA) === 0n) {
      throw new NotConnected('the server did not grant MEDIA');
    }
  }

  /** Sends a request and resolves with its answer; rejects with RequestRefused or NotConnected. */
  private ask(build: () => Request): Promise<Answer> {
    if (!this.session.isLive) return Promise.reject(new NotConnected('requests need a live session'));
    const { request, frame } = build();
    this.enqueue(frame);
    return new Promise((resolve, reject) => this.waiters.set(request, { resolve, reject }));
  }

  private enqueueLive(frame: Frame, what: string): void {
    if (!this.session.isLive) throw new NotConnected(`${what} needs a live session`);
    this.enqueue(frame);
  }

  private enqueue(frame: Frame): void {
    this.push(this.encoder.encode([frame]));
  }

  private push(bytes: Uint8Array): void {
    this.outbox.push(bytes);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    // Everything queued in this turn leaves in one message (§1: batching).
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.flushQueued = false;
    const ws = this.ws;
    if (!ws || !this.session.isLive) return;
    if (this.ackDue) {
      this.ackDue = false;
      this.outbox.push(this.encoder.encode([{ type: 'ACK', up_to: this.session.acked }]));
    }
    const frames = this.outbox;
    this.outbox = [];
    let start = 0;
    while (start < frames.length) {
      let end = start;
      let size = 0;
      while (
        end < frames.length &&
        end - start < Limits.MAX_FRAMES_PER_MESSAGE &&
        (end === start || size + frames[end].length <= Limits.MAX_CLIENT_MESSAGE_LEN)
      ) {
        size += frames[end++].length;
      }
      const message = new Uint8Array(size);
      let at = 0;
      for (let i = start; i < end; i++) {
        message.set(frames[i], at);
        at += frames[i].length;
      }
      ws.send(message);
      start = end;
    }
  }

  private async open(): Promise<void> {
    const url = this.url;
    this.redirect = null;
    this.sawGoaway = false;
    this.setState('connecting', url);
    let token: string | Uint8Array;
    try {
      const source = this.options.token;
      token = typeof source === 'function' ? await source() : source;
    } catch (err) {
      this.retry(0, `token source failed: ${String(err)}`, 'resumable', false);
      return;
    }
    if (this.connState !== 'connecting') return; // stopped meanwhile
    this.session.token = typeof token === 'string' ? textEncoder.encode(token) : token;
    const Ctor = this.options.WebSocket ?? (globalThis as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket;
    if (!Ctor) throw new TypeError('no WebSocket implementation: pass options.WebSocket');
    let ws: WebSocketLike;
    try {
      ws = new Ctor(url);
    } catch (err) {
      this.retry(0, `bad URL ${url}: ${String(err)}`, 'terminal', false);
      return;
    }
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    this.timer = setTimeout(() => this.abort(ws, 1000, 'connect timeout', 'resumable'), this.options.connectTimeoutMs ?? 10_000);
    ws.onopen = () => {
      if (ws !== this.ws) return;
      clearTimeout(this.timer);
      this.setState('authenticating', url);
      this.lastHeard = Date.now();
      ws.send(this.encoder.encode([this.session.hello()]));
      this.timer = setTimeout(() => this.abort(ws, 1000, 'auth timeout', 'resumable'), this.options.authTimeoutMs ?? 10_000);
    };
    ws.onmessage = (event) => this.receive(ws, event.data);
    ws.onclose = (event) => this.ended(ws, event.code, event.reason, closeAction(event.code));
    // An error means the connection is lost (browsers then close with 1006;
    // some implementations never send the close event for a failed connect).
    ws.onerror = () => this.abort(ws, 1000, 'network error', 'resumable', 1006);
  }

  private receive(ws: WebSocketLike, data: unknown): void {
    if (ws !== this.ws) return;
    this.lastHeard = Date.now();
    if (!(data instanceof ArrayBuffer)) {
      this.abort(ws, 4001, 'text message from the server', 'terminal');
      return;
    }
    let frames: Frame[];
    let malformed: DecodeError | undefined;
    try {
      frames = decodeMessage(new Uint8Array(data));
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      // The frames before the bad one take effect (§13); then the connection ends.
      frames = err.frames as Frame[];
      malformed = err;
    }
    for (const frame of frames) {
      try {
        this.session.handleFrame(frame);
      } catch (err) {
        if (!(err instanceof UnexpectedFrame)) throw err;
        this.abort(ws, 4001, err.message, 'terminal');
        return;
      }
      if (frame.type === 'AUTH_OK') this.live(ws, frame.heartbeat_ms);
      else if (frame.type === 'AUTH_ERROR') this.floorMs = frame.retry_after_ms;
      else if (frame.type === 'GOAWAY') {
        this.sawGoaway = true;
        this.floorMs = frame.reconnect_after_ms;
        if (frame.redirect !== '') this.redirect = this.redirectUrl(frame.redirect);
      }
    }
    for (let frame = this.session.pollTransmit(); frame; frame = this.session.pollTransmit()) this.enqueue(frame);
    this.dispatch();
    if (malformed) {
      // A server frame this client cannot read: maybe the server was upgraded under it (§13): resumable.
      this.abort(ws, 4000, `malformed server message: ${malformed.message}`, 'resumable');
    }
  }

  /** `host:port` of a GOAWAY as a URL with the current scheme and path. */
  private redirectUrl(hostPort: string): string {
    const current = new URL(this.urls[this.urlIndex]);
    return `${current.protocol}//${hostPort}${current.pathname}${current.search}`;
  }

  private live(ws: WebSocketLike, heartbeatMs: number): void {
    clearTimeout(this.timer);
    this.backoff.reset();
    this.setState('live', this.url);
    for (const frame of this.session.resendPending()) this.enqueue(frame);
    for (const frame of this.session.resubscribePresence()) this.enqueue(frame);
    const beat = () => {
      if (ws !== this.ws) return;
      if (Date.now() - this.lastHeard > 3 * heartbeatMs) {
        this.abort(ws, 1000, 'heartbeat timeout', 'resumable');
        return;
      }
      this.enqueue(this.session.ping());
      this.heartbeat = setTimeout(beat, jittered(heartbeatMs));
    };
    this.heartbeat = setTimeout(beat, jittered(heartbeatMs));
  }

  private dispatch(): void {
    const autoAck = this.options.autoAck ?? true;
    for (let event = this.session.pollEvent(); event; event = this.session.pollEvent()) {
      this.settle(event);
      this.emit(event);
      if (autoAck && event.type === 'delivered') this.ack(event.message.seq);
      else if (autoAck && event.type === 'sync_progress') this.ack(event.up_to);
    }
  }

  /** Resolves or rejects the promise of the request an event answers. */
  private settle(event: SessionEvent): void {
    let request: bigint | undefined;
    let answer: Answer | undefined;
    switch (event.type) {
      case 'group_ok':
      case 'prekey_bundles':
      case 'prekey_ok':
        answer = event.answer;
        break;
      case 'group_info':
        answer = event.info;
        break;
      case 'media_upload_ticket':
      case 'media_download_ticket':
        answer = event.ticket;
        break;
      case 'error':
        request = event.error.reference;
        break;
    }
    request ??= answer?.request;
    const waiter = request === undefined || request === 0n ? undefined : this.waiters.get(request);
    if (!waiter || request === undefined) return;
    this.waiters.delete(request);
    if (answer) waiter.resolve(answer);
    else if (event.type === 'error') waiter.reject(new RequestRefused(event.error));
  }

  /**
   * Ends the connection from this side (a deadline, a lost connection, a
   * server that broke the protocol) with close `code`; `observed` is the code
   * reported in the `disconnected` event.
   */
  private abort(ws: WebSocketLike, code: number, reason: string, action: CloseAction, observed = code): void {
    if (ws !== this.ws) return;
    this.ended(ws, observed, reason, action);
    ws.close(code, reason.slice(0, 120));
  }

  /** The connection is over: reconnect after a backoff, or stop, as `action` says. */
  private ended(ws: WebSocketLike, code: number, reason: string, action: CloseAction): void {
    if (ws !== this.ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    this.ws = null;
    const wasLive = this.session.isLive;
    this.session.onDisconnect();
    this.outbox = [];
    this.ackDue = false;
    for (const waiter of this.waiters.values()) waiter.reject(new NotConnected('the connection ended before the answer'));
    this.waiters.clear();
    // Deliveries already decoded still reach the application.
    this.dispatch();
    this.retry(code, reason, action, wasLive && !this.sawGoaway);
  }

  private retry(code: number, reason: string, action: CloseAction, sameNode: boolean): void {
    this.clearTimers();
    const canRefresh = typeof this.options.token === 'function';
    const reconnect =
      this.connState !== 'stopped' &&
      (this.options.reconnect ?? true) &&
      (action === 'resumable' || (action === 'new_token' && canRefresh));
    if (!reconnect) {
      this.emit({ type: 'disconnected', code, reason, action, retryInMs: null });
      this.setState('stopped');
      return;
    }
    // A node that failed before AUTH_OK, or that drains, gives way to the next one of the list.
    if (!sameNode && this.redirect === null) this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    const delay = this.backoff.next(this.floorMs);
    this.floorMs = 0;
    this.emit({ type: 'disconnected', code, reason, action, retryInMs: delay });
    this.setState('waiting');
    this.timer = setTimeout(() => void this.open(), delay);
  }

  private clearTimers(): void {
    clearTimeout(this.timer);
    clearTimeout(this.heartbeat);
  }

  private setState(state: ConnectionState, url = this.url): void {
    this.connState = state;
    this.emit({ type: 'state', state, url });
  }

  private emit(event: ClientEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        // A listener's bug must not break the connection; report it on its own.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
