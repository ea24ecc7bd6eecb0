// Following Tessera's revocation feed: catch up by cursor, then hold the SSE stream open and
// apply each entry as it arrives, reconnecting with backoff. Checking a token is then a few map
// lookups, with no call to Tessera per request. Kinds: `session` (a `sid`), `subject` (a user
// or client, tokens issued until `issued_before`), `token` (a `jti`), `tenant` (every token of
// the `tid` issued until `issued_before`); unknown kinds are skipped, so a newer Tessera never
// stops an older service.

/** One feed entry. */
export interface Revocation {
  tid: string;
  kind: string;
  sid?: string;
  sub?: string;
  jti?: string;
  issued_before?: number;
  revoked_at: number;
  expires_at: number;
}

/** The claims a revocation can name. */
export interface RevocableClaims {
  tid: string;
  sub: string;
  jti?: string;
  sid?: string;
  iat?: number;
}

const STREAM_IDLE_MS = 45_000;
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 30_000;
const MAX_EVENT_BYTES = 64 * 1024;

function keyOf(entry: Revocation): string | undefined {
  switch (entry.kind) {
    case "session":
      return typeof entry.sid === "string" ? `s:${entry.sid}` : undefined;
    case "subject":
      return typeof entry.sub === "string" ? `u:${entry.sub}` : undefined;
    case "token":
      return typeof entry.jti === "string" ? `t:${entry.jti}` : undefined;
    case "tenant":
      return `n:${entry.tid}`;
    default:
      return undefined;
  }
}

function covers(entry: Revocation, claims: RevocableClaims): boolean {
  if (claims.tid !== entry.tid) return false;
  const issuedInTime = (claims.iat ?? 0) <= (entry.issued_before ?? 0);
  switch (entry.kind) {
    case "session":
      return claims.sid === entry.sid;
    case "token":
      return claims.jti === entry.jti;
    case "subject":
      return issuedInTime && claims.sub === entry.sub;
    default:
      return issuedInTime;
  }
}

/** Revocations held in memory, filed under the one claim of a token that finds them. */
export class RevocationSet {
  private readonly byKey = new Map<string, Revocation[]>();

  /** Adds an entry unless it ended more than `leeway` seconds ago; whether its kind is known. */
  insert(entry: Revocation, now: number, leeway: number): boolean {
    const key = keyOf(entry);
    if (key === undefined || typeof entry.tid !== "string") return false;
    if (entry.expires_at + leeway < now) return true;
    const held = this.byKey.get(key) ?? [];
    if (!held.some((e) => JSON.stringify(e) === JSON.stringify(entry))) held.push(entry);
    this.byKey.set(key, held);
    return true;
  }

  /** Forgets entries no token can outlive. */
  prune(now: number, leeway: number): void {
    for (const [key, list] of this.byKey) {
      const kept = list.filter((e) => e.expires_at + leeway >= now);
      if (kept.length > 0) this.byKey.set(key, kept);
      else this.byKey.delete(key);
    }
  }

  get size(): number {
    let n = 0;
    for (const list of this.byKey.values()) n += list.length;
    return n;
  }

  /** Whether an entry revokes a token with these claims. */
  covers(claims: RevocableClaims): boolean {
    const keys = [
      claims.sid === undefined ? undefined : `s:${claims.sid}`,
      `u:${claims.sub}`,
      `t:${claims.jti}`,
      `n:${claims.tid}`,
    ];
    return keys.some(
      (key) => key !== undefined && (this.byKey.get(key) ?? []).some((e) => covers(e, claims)),
    );
  }
}

/** One dispatched server-sent event. */
export interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
}

/** Just enough of `text/event-stream`, fed line by line (without line endings). */
export class SseParser {
  private id: string | undefined;
  private event: string | undefined;
  private data: string | undefined;
  private size = 0;

  line(line: string): SseEvent | undefined {
    if (line === "") {
      this.size = 0;
      const { data, event } = this;
      this.data = this.event = undefined;
      return data === undefined ? undefined : { id: this.id, event: event ?? "message", data };
    }
    this.size += line.length;
    if (this.size > MAX_EVENT_BYTES) throw new Error("event too large");
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "id" && !value.includes("\0")) this.id = value;
    else if (name === "event") this.event = value;
    else if (name === "data") this.data = this.data === undefined ? value : `${this.data}\n${value}`;
    return undefined;
  }
}

/** Splits a byte stream into lines ended by LF, CRLF or CR. */
async function* lines(body: ReadableStream<Uint8Array>, idleMs: number): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  let afterCr = false;
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("the stream went silent")), idleMs);
      });
      const chunk = await Promise.race([reader.read(), idle]).finally(() => clearTimeout(timer));
      if (chunk.done) return;
      for (const char of decoder.decode(chunk.value, { stream: true })) {
        if (afterCr) {
          afterCr = false;
          if (char === "\n") continue;
        }
        if (char === "\n" || char === "\r") {
          afterCr = char === "\r";
          yield pending;
          pending = "";
        } else {
          pending += char;
          if (pending.length > MAX_EVENT_BYTES) throw new Error("line too long");
        }
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/** The feed as one service follows it. */
export class RevocationFeed {
  readonly set = new RevocationSet();
  private cursor = "0";
  private liveNow = false;
  private lastContact = 0;
  private readonly stopper = new AbortController();

  constructor(
    private readonly pageUrl: string,
    private readonly streamUrl: string,
    private readonly authorization: string,
    private readonly leeway = 30,
  ) {}

  /** Whether the stream is open and caught up. */
  get live(): boolean {
    return this.liveNow;
  }

  /** Seconds since the feed was last heard from. */
  get silence(): number {
    return Date.now() / 1000 - this.lastContact;
  }

  private heard(): void {
    this.lastContact = Date.now() / 1000;
  }

  private apply(entries: unknown[]): void {
    const now = Date.now() / 1000;
    for (const entry of entries) {
      if (typeof entry !== "object" || entry === null || !this.set.insert(entry as Revocation, now, this.leeway)) {
        console.warn("tessera-client: skipping a revocation this version cannot read");
      }
    }
  }

  /** Reads every page after the cursor. */
  async catchUp(): Promise<void> {
    for (;;) {
      const url = `${this.pageUrl}?after=${encodeURIComponent(this.cursor)}&limit=1000`;
      const response = await fetch(url, {
        headers: { authorization: this.authorization, accept: "application/json" },
        signal: AbortSignal.any([this.stopper.signal, AbortSignal.timeout(10_000)]),
      });
      if (response.status !== 200) throw new Error(`${this.pageUrl} answered ${response.status}`);
      const page = (await response.json()) as { items?: unknown[]; cursor?: string; has_more?: boolean };
      this.heard();
      this.apply(page.items ?? []);
      this.cursor = String(page.cursor ?? this.cursor);
      if (page.has_more !== true) return;
    }
  }

  /** Catches up (rejecting when that fails: a service that does not know what was revoked
   * would accept it), then follows the stream in the background until `stop()`. */
  async start(): Promise<void> {
    await this.catchUp();
    void this.follow();
  }

  /** Stops following. */
  stop(): void {
    this.liveNow = false;
    this.stopper.abort();
  }

  private async follow(): Promise<void> {
    let backoff = BACKOFF_MIN_MS;
    while (!this.stopper.signal.aborted) {
      try {
        backoff = await this.streamOnce(backoff);
      } catch (error) {
        if (this.stopper.signal.aborted) return;
        console.warn(`tessera-client: revocation stream failed (${String(error)}); reconnecting`);
      }
      this.liveNow = false;
      const wait = backoff * (1 + Math.random() / 4);
      await new Promise((resolve) => setTimeout(resolve, wait).unref());
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
  }

  private async streamOnce(backoff: number): Promise<number> {
    const response = await fetch(this.streamUrl, {
      headers: {
        authorization: this.authorization,
        accept: "text/event-stream",
        "last-event-id": this.cursor,
      },
      signal: this.stopper.signal,
    });
    if (response.status !== 200 || response.body === null) {
      throw new Error(`the stream answered ${response.status}`);
    }
    const parser = new SseParser();
    for await (const line of lines(response.body, STREAM_IDLE_MS)) {
      this.heard();
      const event = parser.line(line);
      if (event === undefined) continue;
      if (event.event === "revocation") {
        try {
          this.apply([JSON.parse(event.data)]);
        } catch {
          console.warn("tessera-client: skipping an unreadable revocation event");
        }
      } else if (event.event === "ready") {
        this.liveNow = true;
        backoff = BACKOFF_MIN_MS;
        this.set.prune(Date.now() / 1000, this.leeway);
      }
      if (event.id !== undefined) this.cursor = event.id;
    }
    return backoff;
  }
}
