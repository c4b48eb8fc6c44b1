// Donor side of the hook-mode full resync (the original module's behaviour). A joiner copies
// this replica's data directory (syncPath) with rsync over the operator's SyncCmd; for the copy
// to be consistent its final pass must run while these files do not change. So on "quiesce" the
// donor pauses its applier at an index >= the joiner's minimum and stops its database server
// (StopServer), and on "release" it starts the server and resumes.
//
// A joiner that vanishes must not leave the donor stopped: a quiesce is a lease the joiner
// renews; it ends on its own when the renewals stop, when the joiner's link stays down, or after
// quiesceMaxMs in total. Whether the lease was held to the end is told to the joiner at release,
// so a copy finished after the donor restarted is never taken as consistent.
import type { PeerId, Transport } from '../transport/transport.js';
import type { Logger } from '../util/log.js';
import { CHANNEL_RSYNC, type ApplierPause, type ServerControl } from './types.js';
import { donationsTotal } from './metrics.js';
import {
  checkSyncPath,
  decodeRequest,
  encodeInfoReply,
  encodeQuiesceReply,
  encodeReleaseReply,
  encodeRenewReply,
  type SessionId,
} from './rsync-protocol.js';

export interface RsyncDonorOptions {
  transport: Transport;
  log: Logger;
  applier: ApplierPause;
  server: ServerControl;
  /** This replica's data directory, as configured (syncPath). */
  syncPath: string;
  /** Without a renew for this long the donor releases on its own. */
  leaseMs?: number;
  /** A quiesce never lasts longer than this, renewed or not. */
  quiesceMaxMs?: number;
  /** The joiner's peer link down for this long releases the donor. */
  disconnectGraceMs?: number;
  /** How long the applier may take to reach the joiner's minimum index. */
  pauseWaitMs?: number;
  /** Why this replica cannot donate now (e.g. it is being resynced itself), or null. */
  unavailable?: () => string | null;
}

type Held = { session: SessionId; joiner: PeerId; since: number };

type State =
  | { kind: 'idle' }
  | (Held & { kind: 'quiescing'; done: Promise<number>; releaseWanted: boolean })
  | (Held & { kind: 'quiesced'; index: number; leaseUntil: number; downSince: number | null; timer: NodeJS.Timeout })
  | (Held & { kind: 'releasing'; done: Promise<string> });

// Sessions released earlier, remembered so a late renew or release gets a precise answer.
const endedSessionsMax = 16;

export class RsyncDonor {
  private readonly syncPath: string;
  private readonly leaseMs: number;
  private readonly quiesceMaxMs: number;
  private readonly disconnectGraceMs: number;
  private readonly pauseWaitMs: number;
  private state: State = { kind: 'idle' };
  private readonly ended = new Map<SessionId, { held: boolean; reason: string; restartError: string }>();
  private closed = false;

  constructor(private readonly o: RsyncDonorOptions) {
    // A misconfigured syncPath is refused at start-up, not when a joiner first asks.
    this.syncPath = checkSyncPath(o.syncPath, 'syncPath');
    this.leaseMs = o.leaseMs ?? 15_000;
    this.quiesceMaxMs = o.quiesceMaxMs ?? 30 * 60_000;
    this.disconnectGraceMs = o.disconnectGraceMs ?? 10_000;
    this.pauseWaitMs = o.pauseWaitMs ?? 60_000;
    o.transport.onRequest(CHANNEL_RSYNC, (from, payload) => this.onRequest(from, payload));
    // A message to the joiner that could not be sent is a hint its link is gone: check now.
    o.transport.onUnreachable((peer) => {
      if (this.state.kind === 'quiesced' && this.state.joiner === peer) this.checkLease();
    });
  }

  /** 'idle', or what the donor is doing for which joiner (for status). */
  status(): { state: State['kind']; joiner?: PeerId; sinceMs?: number } {
    const s = this.state;
    return s.kind === 'idle' ? { state: 'idle' } : { state: s.kind, joiner: s.joiner, sinceMs: Date.now() - s.since };
  }

  /** Shutting down: refuse new requests and give the database back if a joiner holds it. */
  async close(): Promise<void> {
    this.closed = true;
    const s = this.state;
    if (s.kind === 'quiescing') await s.done.catch(() => undefined);
    await this.endSession('donor shutting down', false).catch(() => undefined);
    const r = this.state;
    if (r.kind === 'releasing') await r.done;
  }

  private async onRequest(from: PeerId, payload: Buffer): Promise<Uint8Array> {
    if (this.closed) throw new Error('rsync donor is shutting down');
    const req = decodeRequest(payload);
    switch (req.op) {
      case 'info':
        return encodeInfoReply({ busy: this.state.kind !== 'idle' || !!this.o.unavailable?.(), nowMs: Date.now(), syncPath: this.syncPath });
      case 'quiesce':
        return encodeQuiesceReply({ index: await this.quiesce(from, req.session, req.minIndex), leaseMs: this.leaseMs, syncPath: this.syncPath });
      case 'renew':
        this.renew(from, req.session);
        return encodeRenewReply(this.leaseMs);
      case 'release':
        return encodeReleaseReply(await this.release(from, req.session));
    }
  }

  private describeHolder(s: Exclude<State, { kind: 'idle' }>): string {
    return `${s.kind} for node ${s.joiner} since ${Math.round((Date.now() - s.since) / 1000)} s`;
  }

  private async quiesce(joiner: PeerId, session: SessionId, minIndex: number): Promise<number> {
    const s = this.state;
    if (s.kind !== 'idle') {
      // The same joiner retrying the same session (its first reply was lost) gets the same answer.
      if (s.session === session && s.joiner === joiner) {
        if (s.kind === 'quiescing') return s.done;
        if (s.kind === 'quiesced') return s.index;
      }
      throw new Error(`donor busy: already ${this.describeHolder(s)}; only one resync at a time, try another donor or later`);
    }
    if (this.ended.has(session)) throw new Error('this resync session has already ended; start a new one');
    const why = this.o.unavailable?.();
    if (why) throw new Error(`donor unavailable: ${why}`);
    const log = this.o.log.child({ joiner, session: session.toString(16) });
    log.info('rsync donor: quiescing (pausing the applier, stopping the database server)', { minIndex });
    const done = this.doQuiesce(minIndex, log);
    const q: State = { kind: 'quiescing', session, joiner, since: Date.now(), done, releaseWanted: false };
    this.state = q;
    let index: number;
    try {
      index = await done;
    } catch (e) {
      this.state = { kind: 'idle' };
      this.remember(session, false, `quiesce failed: ${(e as Error).message}`, '');
      throw e;
    }
    const timer = setInterval(() => this.checkLease(), Math.max(50, Math.min(1000, this.leaseMs / 4)));
    timer.unref();
    this.state = { kind: 'quiesced', session, joiner, since: q.since, index, leaseUntil: Date.now() + this.leaseMs, downSince: null, timer };
    donationsTotal.inc({ method: 'rsync' });
    log.info('rsync donor: quiesced; the data directory holds still until release', { index, leaseMs: this.leaseMs, syncPath: this.syncPath });
    if (q.releaseWanted || this.closed) {
      await this.endSession(q.releaseWanted ? 'the joiner released before the quiesce finished' : 'donor shutting down', false);
      throw new Error('released before the quiesce finished');
    }
    return index;
  }

  private async doQuiesce(minIndex: number, log: Logger): Promise<number> {
    const index = await this.o.applier.pause(minIndex, this.pauseWaitMs);
    try {
      await this.o.server.stop();
    } catch (e) {
      const why = (e as Error).message;
      log.error('rsync donor: could not stop the database server; resuming', { error: why });
      // StopServer may have failed half-way: start() is a no-op for a server that still answers.
      await this.o.server.start().catch((se: Error) => log.error('rsync donor: could not start the database server again', { error: se.message }));
      this.o.applier.resume();
      throw new Error(`donor could not stop its database server: ${why}`);
    }
    return index;
  }

  private renew(joiner: PeerId, session: SessionId): void {
    const s = this.state;
    if (s.kind !== 'idle' && s.session === session && s.joiner === joiner) {
      if (s.kind === 'quiesced') s.leaseUntil = Math.max(s.leaseUntil, Date.now() + this.leaseMs);
      if (s.kind !== 'releasing') return;
    }
    const e = this.ended.get(session);
    throw new Error(e ? `resync session ended: ${e.reason}` : 'unknown resync session (donor restarted?)');
  }

  private async release(joiner: PeerId, session: SessionId): Promise<{ held: boolean; restartError: string }> {
    const s = this.state;
    if (s.kind !== 'idle' && s.session === session && s.joiner === joiner) {
      if (s.kind === 'quiescing') {
        // The joiner gave up waiting (its quiesce request timed out): undo it once it is done.
        s.releaseWanted = true;
        await s.done.catch(() => undefined);
        return { held: false, restartError: '' };
      }
      if (s.kind === 'releasing') {
        const restartError = await s.done;
        return { held: this.ended.get(session)?.held ?? false, restartError };
      }
      return this.endSession('released by the joiner', true);
    }
    const e = this.ended.get(session);
    // Unknown: nothing to release (a quiesce that never arrived, or a restarted donor).
    return { held: false, restartError: e?.restartError ?? '' };
  }

  private checkLease(): void {
    const s = this.state;
    if (s.kind !== 'quiesced') return;
    const now = Date.now();
    let why = '';
    if (now > s.leaseUntil) why = `lease expired (no renew from node ${s.joiner} for ${this.leaseMs} ms)`;
    else if (now - s.since > this.quiesceMaxMs) why = `quiesced for longer than quiesceMaxMs (${this.quiesceMaxMs} ms)`;
    else if (this.o.transport.peerStatus().some((p) => p.id === s.joiner)) {
      // Only judged for a peer we have a link to; a joiner outside our peer list relies on the lease.
      if (this.o.transport.isConnected(s.joiner)) s.downSince = null;
      else {
        s.downSince ??= now;
        if (now - s.downSince > this.disconnectGraceMs) why = `link to node ${s.joiner} down for ${this.disconnectGraceMs} ms`;
      }
    }
    if (why) void this.endSession(why, false).catch(() => undefined);
  }

  /** Starts the server and resumes the applier; always leaves the donor idle. */
  private async endSession(reason: string, held: boolean): Promise<{ held: boolean; restartError: string }> {
    const s = this.state;
    if (s.kind !== 'quiesced') return { held: false, restartError: '' };
    clearInterval(s.timer);
    const log = this.o.log.child({ joiner: s.joiner, session: s.session.toString(16) });
    log.log(held ? 'info' : 'warn', 'rsync donor: releasing (starting the database server, resuming the applier)', { reason, quiescedMs: Date.now() - s.since });
    const done = (async () => {
      let restartError = '';
      try {
        await this.o.server.start();
      } catch (e) {
        restartError = (e as Error).message;
        log.error('rsync donor: could not start the database server after the resync', { error: restartError });
      }
      this.o.applier.resume();
      return restartError;
    })();
    this.state = { kind: 'releasing', session: s.session, joiner: s.joiner, since: s.since, done };
    // Remembered before the await: a renew arriving meanwhile must learn the session is over.
    this.remember(s.session, held, reason, '');
    const restartError = await done;
    this.remember(s.session, held, reason, restartError);
    this.state = { kind: 'idle' };
    return { held, restartError };
  }

  private remember(session: SessionId, held: boolean, reason: string, restartError: string): void {
    this.ended.delete(session);
    this.ended.set(session, { held, reason, restartError });
    while (this.ended.size > endedSessionsMax) this.ended.delete(this.ended.keys().next().value!);
  }
}
