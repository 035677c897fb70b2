// The sans-IO session core: the client half of the delivery contract (SPEC §4,
// §6) with no socket, clock or timer. It mirrors the Rust client's `Session`:
// the driver feeds decoded server frames in and transmits the frames it gets
// back; the core keeps the resume cursor, drops repeated deliveries, tracks
// pending sends (resent with their client ids after a reconnect), answers
// PINGs, and hands out request ids.

import {
  ERROR_CLASS,
  FRAME_KINDS,
  Limits,
  type AuthOk,
  type DeliverBody,
  type Frame,
  type FrameKind,
  type Goaway,
  type GroupInfo,
  type GroupOk,
  type MediaClass,
  type MediaDownloadTicket,
  type MediaUploadTicket,
  type OneTimePrekey,
  type PrekeyBundles,
  type PrekeyOk,
  type Presence,
  type Receipt,
  type Role,
  type SignedPrekey,
  type TypingNotify,
  type Visibility,
  type Error as ErrorFrame,
} from './spec.gen.js';
import type { Conversation } from './wire.js';

/** Something that happened on the session, in the order the server said it. */
export type SessionEvent =
  /** AUTH_OK: the session is live; sync frames follow. */
  | { type: 'authenticated'; auth: AuthOk }
  /** AUTH_ERROR: the server refused the session and closes it. */
  | { type: 'auth_rejected'; code: number; retry_after_ms: number; text: string }
  /** One inbox entry (live DELIVER or a SYNC_BATCH entry): never twice for one seq, always in seq order. */
  | { type: 'delivered'; message: DeliverBody }
  /** One SYNC_BATCH was surfaced: ack `up_to` once processed, or the sync stalls (§6.3). */
  | { type: 'sync_progress'; remaining: bigint; up_to: bigint }
  /** SYNC_DONE: the backlog is replayed; live deliveries follow. */
  | { type: 'synced'; head: bigint }
  /** SEND_ACK: durably stored (✓), no longer pending. */
  | { type: 'sent'; client_id: bigint; message_id: bigint; conv_seq: bigint; server_time: bigint; duplicate: boolean }
  /** SEND_ERROR: refused; a retryable code keeps the send pending (resent on reconnect or by `resend`). */
  | { type: 'send_failed'; client_id: bigint; code: number; retryable: boolean; retry_after_ms: number; text: string }
  /** GOAWAY: the node drains; the cursor was already raised to its `resume_after`. */
  | { type: 'goaway'; goaway: Goaway }
  /** The server sent PING; the PONG is already queued. */
  | { type: 'ping'; nonce: bigint }
  /** The server answered a PING of this client. */
  | { type: 'pong'; nonce: bigint }
  | { type: 'receipt'; receipt: Receipt }
  | { type: 'presence'; presence: Presence }
  | { type: 'typing'; typing: TypingNotify }
  | { type: 'group_ok'; answer: GroupOk }
  | { type: 'group_info'; info: GroupInfo }
  | { type: 'prekey_bundles'; answer: PrekeyBundles }
  | { type: 'prekey_ok'; answer: PrekeyOk }
  | { type: 'prekey_low'; stock: number }
  | { type: 'media_upload_ticket'; ticket: MediaUploadTicket }
  | { type: 'media_download_ticket'; ticket: MediaDownloadTicket }
  /** ERROR: a request failed (`reference` names it), or with reference 0 a frame without an answer was refused. */
  | { type: 'error'; error: ErrorFrame };

/** A server frame the session may not take now (§4 item 7): the driver closes with 4001. */
export class UnexpectedFrame extends Error {
  constructor(
    readonly kind: FrameKind,
    reason: string,
  ) {
    super(`unexpected ${kind}: ${reason}`);
    this.name = 'UnexpectedFrame';
  }
}

/** A send not yet acknowledged by SEND_ACK (or refused with a terminal code). */
export interface PendingSend {
  client_id: bigint;
  to: Conversation;
  payload: Uint8Array;
}

/** Queued for `pollEvent`: deliveries stay undecided until polled, so "surfaced" means handed out. */
type Queued = { event: SessionEvent } | { deliver: DeliverBody };

/** How a session starts. */
export interface SessionOptions {
  /** This device; must match the token. */
  device: number;
  /** The signed token of HELLO. */
  token: Uint8Array;
  /** Capabilities asked for in HELLO. */
  capabilities: bigint;
  /** The last seq this device acked in an earlier run (0n: none). */
  resumeAfter?: bigint;
  /** The first client id of this run (persist `nextClientId`; ids must stay unique per device). */
  firstClientId?: bigint;
}

/**
 * One device's session across connections. Per connection: transmit
 * `hello()`, feed every server frame to `handleFrame` in order, then drain
 * `pollTransmit` and `pollEvent`. After AUTH_OK transmit `resendPending()` and
 * `resubscribePresence()`. When the connection ends: `onDisconnect()`.
 */
export class Session {
  readonly device: number;
  token: Uint8Array;
  readonly capabilities: bigint;
  private ackedSeq: bigint;
  private surfacedSeq: bigint;
  private nextClient: bigint;
  private nextNonce = 1n;
  private nextRequest = 1n;
  private readonly pendingSends = new Map<bigint, PendingSend>();
  private readonly requests = new Map<bigint, FrameKind>();
  private readonly subscriptions = new Set<bigint>();
  private readonly queue: Queued[] = [];
  private queueHead = 0;
  private readonly transmit: Frame[] = [];
  private authOk: AuthOk | null = null;
  private syncDone = false;
  private duplicates = 0;

  constructor(options: SessionOptions) {
    this.device = options.device;
    this.token = options.token;
    this.capabilities = options.capabilities;
    this.ackedSeq = options.resumeAfter ?? 0n;
    this.surfacedSeq = this.ackedSeq;
    const first = options.firstClientId ?? 1n;
    this.nextClient = first > 0n ? first : 1n;
  }

  /** The HELLO that opens a connection, resuming after the acked cursor. */
  hello(): Frame {
    return {
      type: 'HELLO',
      min_version: Limits.VERSION_MIN,
      max_version: Limits.VERSION_MAX,
      device: this.device,
      resume_after: this.ackedSeq,
      capabilities: this.capabilities,
      token: this.token,
    };
  }

  /** Takes in one server frame; throws {@link UnexpectedFrame}, changing nothing, on one the server may not send now. */
  handleFrame(frame: Frame): void {
    const kind = frame.type;
    if (FRAME_KINDS[kind].direction === 'client') throw new UnexpectedFrame(kind, 'client-to-server frame kind');
    const live = this.authOk !== null;
    switch (frame.type) {
      case 'AUTH_OK':
        if (live) throw new UnexpectedFrame(kind, 'session already authenticated');
        if (frame.device !== this.device) throw new UnexpectedFrame(kind, 'AUTH_OK names another device');
        if (frame.version < Limits.VERSION_MIN || frame.version > Limits.VERSION_MAX) {
          throw new UnexpectedFrame(kind, 'AUTH_OK chose a version this client does not speak');
        }
        this.authOk = frame;
        this.syncDone = false;
        return this.push({ type: 'authenticated', auth: frame });
      case 'AUTH_ERROR':
        if (live) throw new UnexpectedFrame(kind, 'session already authenticated');
        return this.push({ type: 'auth_rejected', code: frame.code, retry_after_ms: frame.retry_after_ms, text: frame.text });
      case 'ERROR':
        this.answered(frame.reference);
        return this.push({ type: 'error', error: frame });
    }
    if (!live) throw new UnexpectedFrame(kind, 'frame before AUTH_OK');
    switch (frame.type) {
      case 'PING':
        this.transmit.push({ type: 'PONG', nonce: frame.nonce });
        return this.push({ type: 'ping', nonce: frame.nonce });
      case 'PONG':
        return this.push({ type: 'pong', nonce: frame.nonce });
      case 'GOAWAY':
        // Resume after the server's record or our cursor, whichever is higher.
        if (frame.resume_after > this.ackedSeq) this.ackedSeq = frame.resume_after;
        if (frame.resume_after > this.surfacedSeq) this.surfacedSeq = frame.resume_after;
        return this.push({ type: 'goaway', goaway: frame });
      case 'DELIVER': {
        const { type: _, ...message } = frame;
        this.queue.push({ deliver: message });
        return;
      }
      case 'SYNC_BATCH': {
        // A sync runs (the server may start one on its own, §6.3).
        this.syncDone = false;
        let last = 0n;
        for (const entry of frame.entries) {
          this.queue.push({ deliver: entry });
          last = entry.seq;
        }
        return this.push({ type: 'sync_progress', remaining: frame.remaining, up_to: last });
      }
      case 'SYNC_DONE':
        this.syncDone = true;
        return this.push({ type: 'synced', head: frame.head });
      case 'SEND_ACK':
        this.pendingSends.delete(frame.client_id);
        return this.push({
          type: 'sent',
          client_id: frame.client_id,
          message_id: frame.message_id,
          conv_seq: frame.conv_seq,
          server_time: frame.server_time,
          duplicate: frame.duplicate,
        });
      case 'SEND_ERROR': {
        const retryable = ERROR_CLASS[frame.code] === 'retryable';
        if (!retryable) this.pendingSends.delete(frame.client_id);
        return this.push({
          type: 'send_failed',
          client_id: frame.client_id,
          code: frame.code,
          retryable,
          retry_after_ms: frame.retry_after_ms,
          text: frame.text,
        });
      }
      case 'RECEIPT':
        return this.push({ type: 'receipt', receipt: frame });
      case 'PRESENCE':
        return this.push({ type: 'presence', presence: frame });
      case 'TYPING_NOTIFY':
        return this.push({ type: 'typing', typing: frame });
      case 'GROUP_OK':
        this.answered(frame.request);
        return this.push({ type: 'group_ok', answer: frame });
      case 'GROUP_INFO':
        this.answered(frame.request);
        return this.push({ type: 'group_info', info: frame });
      case 'PREKEY_BUNDLES':
        this.answered(frame.request);
        return this.push({ type: 'prekey_bundles', answer: frame });
      case 'PREKEY_OK':
        this.answered(frame.request);
        return this.push({ type: 'prekey_ok', answer: frame });
      case 'PREKEY_LOW':
        return this.push({ type: 'prekey_low', stock: frame.stock });
      case 'MEDIA_UPLOAD_TICKET':
        this.answered(frame.request);
        return this.push({ type: 'media_upload_ticket', ticket: frame });
      case 'MEDIA_DOWNLOAD_TICKET':
        this.answered(frame.request);
        return this.push({ type: 'media_download_ticket', ticket: frame });
      default:
        throw new UnexpectedFrame(kind, 'not a server frame in v1');
    }
  }

  private answered(request: bigint): void {
    if (request !== 0n) this.requests.delete(request);
  }

  private push(event: SessionEvent): void {
    this.queue.push({ event });
  }

  /** The next event for the application; deliveries that repeat a surfaced seq are dropped here. */
  pollEvent(): SessionEvent | undefined {
    while (this.queueHead < this.queue.length) {
      const queued = this.queue[this.queueHead++];
      if (this.queueHead === this.queue.length) {
        this.queue.length = 0;
        this.queueHead = 0;
      }
      if ('event' in queued) return queued.event;
      const message = queued.deliver;
      if (message.seq <= this.surfacedSeq) {
        this.duplicates++;
        continue;
      }
      this.surfacedSeq = message.seq;
      return { type: 'delivered', message };
    }
    return undefined;
  }

  /** The next frame the core wants transmitted (PONG answers). */
  pollTransmit(): Frame | undefined {
    return this.transmit.shift();
  }

  /** Records a new send; it stays pending until SEND_ACK or a terminal SEND_ERROR. */
  send(to: Conversation, payload: Uint8Array): { client_id: bigint; frame: Frame } {
    const client_id = this.nextClient;
    this.nextClient = client_id + 1n > 0xffffffffffffffffn ? 1n : client_id + 1n;
    this.pendingSends.set(client_id, { client_id, to, payload });
    return { client_id, frame: { type: 'SEND', client_id, to, payload } };
  }

  /** The SEND of one pending send (after a retryable SEND_ERROR), or undefined. */
  resend(clientId: bigint): Frame | undefined {
    const pending = this.pendingSends.get(clientId);
    return pending && { type: 'SEND', ...pending };
  }

  /** SEND frames of every pending send, oldest first, with their original client ids. */
  resendPending(): Frame[] {
    return [...this.pendingSends.values()].map((pending) => ({ type: 'SEND', ...pending }));
  }

  /** PRESENCE_SUBSCRIBE for every watched user (subscriptions belong to a connection, §6.6). */
  resubscribePresence(): Frame[] {
    return [...this.subscriptions].map((user) => ({ type: 'PRESENCE_SUBSCRIBE', user }));
  }

  /**
   * Acks every seq up to `upTo`, clamped to the highest surfaced seq. Returns
   * the ACK, or undefined if the cursor does not move. The cursor moves at
   * once: it is the next HELLO's `resume_after` even if the ACK is never sent.
   */
  ack(upTo: bigint): Frame | undefined {
    const up_to = upTo < this.surfacedSeq ? upTo : this.surfacedSeq;
    if (up_to <= this.ackedSeq) return undefined;
    this.ackedSeq = up_to;
    return { type: 'ACK', up_to };
  }

  /** A PING with a fresh nonce. */
  ping(): Frame {
    const nonce = this.nextNonce++;
    return { type: 'PING', nonce };
  }

  /** A SYNC_REQUEST after `after`; asking again for surfaced seqs lowers the dedup cursor to `after`. */
  syncRequest(after: bigint, window = 0): Frame {
    if (after < this.surfacedSeq) this.surfacedSeq = after;
    this.syncDone = false;
    return { type: 'SYNC_REQUEST', after, window };
  }

  read(conversation: Conversation, up_to: bigint): Frame {
    return { type: 'READ', conversation, up_to };
  }

  typing(conversation: Conversation, active: boolean): Frame {
    return { type: 'TYPING', conversation, active };
  }

  presenceSubscribe(user: bigint): Frame {
    this.subscriptions.add(user);
    return { type: 'PRESENCE_SUBSCRIBE', user };
  }

  presenceUnsubscribe(user: bigint): Frame {
    this.subscriptions.delete(user);
    return { type: 'PRESENCE_UNSUBSCRIBE', user };
  }

  presenceSet(visibility: Visibility): Frame {
    return { type: 'PRESENCE_SET', visibility };
  }

  groupCreate(name: string, members: bigint[]): Request {
    return this.request('GROUP_CREATE', (request) => ({ type: 'GROUP_CREATE', request, name, members }));
  }

  groupAdd(group: bigint, members: bigint[]): Request {
    return this.request('GROUP_ADD', (request) => ({ type: 'GROUP_ADD', request, group, members }));
  }

  groupRemove(group: bigint, members: bigint[]): Request {
    return this.request('GROUP_REMOVE', (request) => ({ type: 'GROUP_REMOVE', request, group, members }));
  }

  groupLeave(group: bigint): Request {
    return this.request('GROUP_LEAVE', (request) => ({ type: 'GROUP_LEAVE', request, group }));
  }

  groupSetRole(group: bigint, user: bigint, role: Role): Request {
    return this.request('GROUP_SET_ROLE', (request) => ({ type: 'GROUP_SET_ROLE', request, group, user, role }));
  }

  groupGet(group: bigint): Request {
    return this.request('GROUP_GET', (request) => ({ type: 'GROUP_GET', request, group }));
  }

  prekeyUpload(identity_key: Uint8Array, signed_prekey: SignedPrekey, one_time: OneTimePrekey[]): Request {
    return this.request('PREKEY_UPLOAD', (request) => ({ type: 'PREKEY_UPLOAD', request, identity_key, signed_prekey, one_time }));
  }

  prekeyFetch(user: bigint, device = 0): Request {
    return this.request('PREKEY_FETCH', (request) => ({ type: 'PREKEY_FETCH', request, user, device }));
  }

  mediaUpload(client_blob: bigint, size: bigint, mediaClass: MediaClass): Request {
    return this.request('MEDIA_UPLOAD', (request) => ({ type: 'MEDIA_UPLOAD', request, client_blob, size, class: mediaClass }));
  }

  mediaDownload(media_id: Uint8Array): Request {
    return this.request('MEDIA_DOWNLOAD', (request) => ({ type: 'MEDIA_DOWNLOAD', request, media_id }));
  }

  /** A request id (never 0, unique among outstanding requests) and its frame. */
  private request(kind: FrameKind, build: (request: bigint) => Frame): Request {
    let request = this.nextRequest;
    while (request === 0n || this.requests.has(request)) request = (request + 1n) & 0xffffffffffffffffn;
    this.nextRequest = request + 1n;
    this.requests.set(request, kind);
    return { request, frame: build(request) };
  }

  /** The connection ended: cursor, pending sends, subscriptions and unpolled events stay; unsent PONGs and outstanding requests go. */
  onDisconnect(): void {
    this.authOk = null;
    this.syncDone = false;
    this.transmit.length = 0;
    this.requests.clear();
  }

  /** The resume cursor: the highest seq acked (the next HELLO's `resume_after`). */
  get acked(): bigint {
    return this.ackedSeq;
  }

  /** The highest seq surfaced by `pollEvent`. */
  get surfaced(): bigint {
    return this.surfacedSeq;
  }

  /** The client id the next send uses (persist it). */
  get nextClientId(): bigint {
    return this.nextClient;
  }

  /** Pending sends, oldest first. */
  get pending(): PendingSend[] {
    return [...this.pendingSends.values()];
  }

  isPending(clientId: bigint): boolean {
    return this.pendingSends.has(clientId);
  }

  /** Requests sent on this connection and not answered yet. */
  get outstanding(): number {
    return this.requests.size;
  }

  /** AUTH_OK of the current connection, while live. */
  get auth(): AuthOk | null {
    return this.authOk;
  }

  get isLive(): boolean {
    return this.authOk !== null;
  }

  /** Whether SYNC_DONE came since AUTH_OK, the last SYNC_REQUEST and the last SYNC_BATCH. */
  get isSynced(): boolean {
    return this.syncDone;
  }

  /** Capabilities the last AUTH_OK granted (0n before one). */
  get granted(): bigint {
    return this.authOk?.capabilities ?? 0n;
  }

  /** Deliveries dropped as repeats so far. */
  get duplicatesDropped(): number {
    return this.duplicates;
  }
}

/** A request's id and the frame that carries it. */
export interface Request {
  request: bigint;
  frame: Frame;
}
