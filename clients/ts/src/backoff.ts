// Reconnect delays (SPEC §11: exponential backoff with jitter, starting near
// 1 s, capped near 60 s, honouring retry_after_ms and GOAWAY delays) and the
// heartbeat's jitter. Sans-IO: it computes delays, the caller waits.

/**
 * Attempt n (from 0) waits a uniformly random time in [d/2, d], where
 * d = min(cap, base · 2^n), and never less than the floor the server asked
 * for plus up to 10 %. `reset()` once a connection authenticated.
 */
export class Backoff {
  private attempts = 0;

  constructor(
    readonly baseMs = 1000,
    readonly capMs = 60_000,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt (counts it), at least `floorMs` plus jitter. */
  next(floorMs = 0): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.attempts, 20));
    this.attempts++;
    const backoff = ceiling / 2 + (ceiling / 2) * this.random();
    const floor = floorMs + (floorMs / 10) * this.random();
    return Math.round(Math.max(backoff, floor));
  }

  /** Attempts counted since the last reset. */
  get attempt(): number {
    return this.attempts;
  }

  reset(): void {
    this.attempts = 0;
  }
}

/** `periodMs` scaled by a random factor in [0.9, 1.1] (§5: heartbeat jitter). */
export function jittered(periodMs: number, random: () => number = Math.random): number {
  return Math.round(periodMs * (0.9 + random() / 5));
}
