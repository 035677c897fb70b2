// A minimal one-to-one chat on the TypeScript client: ✓ stored, ✓✓
// delivered and read marks, typing and presence. Plaintext payloads: a real
// client encrypts end to end (SPEC §6.7); the demo shows the transport.
//
// /?user=1&to=2[&device=1][&token=...]: `token` overrides the minted one
// (a bad token shows the terminal close).

import { GatewayClient, StatusTracker } from '/client/index.js';

const params = new URLSearchParams(location.search);
const me = BigInt(params.get('user') ?? '1');
const peer = BigInt(params.get('to') ?? '2');
const device = Number(params.get('device') ?? '1');
const conversation = { user: peer };
const $ = (id) => document.getElementById(id);
const MARKS = { pending: '🕓', stored: '✓', delivered: '✓✓', read: '✓✓', failed: '!' };

const { gateway } = await (await fetch('/config.json')).json();
// Fetched before every connection, so an expired token is replaced.
const token = params.get('token') ?? (async () => (await fetch(`/token?user=${me}&device=${device}`)).text());
const client = new GatewayClient({ urls: gateway, token, device });
const tracker = new StatusTracker(me);
const outgoing = new Map();
const encoder = new TextEncoder();
const decoder = new TextDecoder();
let readUpTo = 0n;
let typingTimer;
let typingShown;

$('title').textContent = `User ${me} → ${peer}`;

function addMessage(direction, text, attrs = {}) {
  const li = document.createElement('li');
  li.className = `msg ${direction}`;
  li.textContent = text;
  Object.assign(li.dataset, attrs);
  if (direction === 'out') {
    const mark = document.createElement('span');
    mark.className = 'mark';
    li.append(mark);
  }
  $('messages').append(li);
  li.scrollIntoView({ block: 'end' });
  return li;
}

function setMark(clientId, status) {
  const mark = outgoing.get(clientId)?.querySelector('.mark');
  if (!mark) return;
  mark.dataset.status = status;
  mark.textContent = MARKS[status];
  mark.title = status;
}

/** Tells the peer we read what we showed, once the page is visible. */
function markRead(convSeq) {
  if (convSeq > readUpTo) readUpTo = convSeq;
  if (document.visibilityState === 'visible' && client.state === 'live') client.read(conversation, readUpTo);
}
document.addEventListener('visibilitychange', () => readUpTo > 0n && markRead(readUpTo));

client.on((event) => {
  for (const change of tracker.handle(event)) setMark(change.client_id, change.status);
  switch (event.type) {
    case 'state':
      $('state').dataset.state = event.state;
      if (event.state !== 'stopped') $('state').textContent = event.state;
      break;
    case 'disconnected':
      if (event.retryInMs === null) $('state').textContent = `closed ${event.code} (${event.action})`;
      break;
    case 'auth_rejected':
      $('state').title = `${event.code}: ${event.text}`;
      break;
    case 'delivered': {
      const m = event.message;
      if (!('user' in m.conversation) || m.conversation.user !== peer) break;
      if (m.sender === me) break; // this user's other device; the demo shows one device
      addMessage('in', decoder.decode(m.payload), { seq: String(m.seq), convSeq: String(m.conv_seq) });
      markRead(m.conv_seq);
      break;
    }
    case 'presence': {
      if (event.presence.user !== peer) break;
      const { status, last_seen } = event.presence;
      $('presence').dataset.status = status;
      $('presence').textContent =
        status === 'online' ? 'online' : last_seen > 0n ? `last seen ${new Date(Number(last_seen)).toLocaleTimeString()}` : 'offline';
      break;
    }
    case 'typing':
      if (event.typing.user !== peer) break;
      clearTimeout(typingShown);
      $('typing').hidden = !event.typing.active;
      $('typing').textContent = `${peer} is typing…`;
      // A stop can be lost (dropped under pressure, SPEC §7): clear it anyway.
      typingShown = setTimeout(() => ($('typing').hidden = true), 6000);
      break;
  }
});

$('text').addEventListener('input', () => {
  if (client.state !== 'live') return;
  if (typingTimer === undefined) client.typing(conversation, true);
  clearTimeout(typingTimer);
  typingTimer = setTimeout(stopTyping, 3000);
});

function stopTyping() {
  clearTimeout(typingTimer);
  if (typingTimer !== undefined && client.state === 'live') client.typing(conversation, false);
  typingTimer = undefined;
}

$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('text').value.trim();
  if (!text) return;
  stopTyping();
  // Works offline too: the send stays pending and goes out after the reconnect.
  const clientId = client.send(conversation, encoder.encode(text));
  tracker.track(clientId, conversation);
  outgoing.set(clientId, addMessage('out', text, { clientId: String(clientId) }));
  setMark(clientId, 'pending');
  $('text').value = '';
});

client.presenceSubscribe(peer);
client.start();
