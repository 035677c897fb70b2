// The status of this device's sent messages as a chat shows it: pending,
// ✓ stored (SEND_ACK), ✓✓ delivered and read (RECEIPT cursors, SPEC §6.4).
// Sans-IO, like the Rust client's StatusTracker: it reads events and
// reports changes.

import type { SessionEvent } from './session.js';
import type { Conversation } from './wire.js';

/** How far a sent message got; `failed` is a terminal SEND_ERROR. */
export type MessageStatus = 'pending' | 'stored' | 'delivered' | 'read' | 'failed';

/** One message's status moved. */
export interface StatusChange {
  client_id: bigint;
  to: Conversation;
  conv_seq: bigint | null;
  status: MessageStatus;
  /** The SEND_ERROR code of a failed message. */
  code?: number;
}

const RANK: Record<MessageStatus, number> = { pending: 0, stored: 1, delivered: 2, read: 3, failed: 4 };

interface Tracked {
  to: Conversation;
  conv_seq: bigint | null;
  status: MessageStatus;
}

const key = (to: Conversation): string => ('user' in to ? `u${to.user}` : `g${to.group}`);

/**
 * Call `track` after each send and feed every event to `handle`. Receipts
 * are cursors, so one that arrives before the SEND_ACK still counts. In a
 * group, ✓✓ and read need the membership: learnt from GROUP_INFO answers or
 * `setGroupMembers`; until then group messages stay at ✓. A message is
 * forgotten once read or failed.
 */
export class StatusTracker {
  private readonly messages = new Map<bigint, Tracked>();
  /** Delivered and read cursors by conversation key, then user. */
  private readonly cursors = new Map<string, Map<bigint, { delivered: bigint; read: bigint }>>();
  private readonly members = new Map<bigint, bigint[]>();

  /** `me`: receipts naming this user come from its other devices and say nothing about its sends. */
  constructor(private readonly me: bigint) {}

  track(clientId: bigint, to: Conversation): void {
    if (!this.messages.has(clientId)) this.messages.set(clientId, { to, conv_seq: null, status: 'pending' });
  }

  status(clientId: bigint): MessageStatus | undefined {
    return this.messages.get(clientId)?.status;
  }

  get size(): number {
    return this.messages.size;
  }

  /** Takes in one event and returns the status changes it causes. */
  handle(event: SessionEvent): StatusChange[] {
    const changes: StatusChange[] = [];
    switch (event.type) {
      case 'sent': {
        const tracked = this.messages.get(event.client_id);
        if (tracked) tracked.conv_seq = event.conv_seq;
        this.refresh((id) => id === event.client_id, changes);
        break;
      }
      case 'send_failed': {
        const tracked = this.messages.get(event.client_id);
        if (tracked && !event.retryable) {
          this.messages.delete(event.client_id);
          changes.push({ client_id: event.client_id, to: tracked.to, conv_seq: null, status: 'failed', code: event.code });
        }
        break;
      }
      case 'receipt': {
        const { receipt } = event;
        if (receipt.user === this.me) break;
        const k = key(receipt.conversation);
        let users = this.cursors.get(k);
        if (!users) this.cursors.set(k, (users = new Map()));
        const at = users.get(receipt.user) ?? { delivered: 0n, read: 0n };
        if (receipt.up_to > at.delivered) at.delivered = receipt.up_to;
        if (receipt.kind === 'read' && receipt.up_to > at.read) at.read = receipt.up_to;
        users.set(receipt.user, at);
        this.refresh((_, to) => key(to) === k, changes);
        break;
      }
      case 'group_info':
        changes.push(...this.setGroupMembers(event.info.group, event.info.members.map((m) => m.user)));
        break;
    }
    return changes;
  }

  /** Sets the members of `group` (this user may be among them); returns the changes that follow. */
  setGroupMembers(group: bigint, members: bigint[]): StatusChange[] {
    this.members.set(
      group,
      members.filter((user) => user !== this.me),
    );
    const changes: StatusChange[] = [];
    this.refresh((_, to) => 'group' in to && to.group === group, changes);
    return changes;
  }

  private refresh(which: (clientId: bigint, to: Conversation) => boolean, changes: StatusChange[]): void {
    for (const [clientId, tracked] of this.messages) {
      if (tracked.conv_seq === null || !which(clientId, tracked.to)) continue;
      const reached = this.reached(tracked.to, tracked.conv_seq);
      if (RANK[reached] <= RANK[tracked.status]) continue;
      tracked.status = reached;
      changes.push({ client_id: clientId, to: tracked.to, conv_seq: tracked.conv_seq, status: reached });
      if (reached === 'read') this.messages.delete(clientId);
    }
  }

  /** The lowest status over the recipients of `to` at `convSeq` (`stored` if they are not known). */
  private reached(to: Conversation, convSeq: bigint): MessageStatus {
    const recipients = 'user' in to ? [to.user] : (this.members.get(to.group) ?? []);
    if (recipients.length === 0) return 'stored';
    const users = this.cursors.get(key(to));
    let lowest: MessageStatus = 'read';
    for (const user of recipients) {
      const at = users?.get(user) ?? { delivered: 0n, read: 0n };
      const status = at.read >= convSeq ? 'read' : at.delivered >= convSeq ? 'delivered' : 'stored';
      if (RANK[status] < RANK[lowest]) lowest = status;
    }
    return lowest;
  }
}
