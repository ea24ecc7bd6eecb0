// The real-time helper: one object that keeps a browser (or a Node service acting for a user)
// connected to Tessera's hub the way the hub expects.
//
// - Every connection attempt first mints a single-use, 30-second ticket
//   (`POST /api/v1/realtime/ticket`) through the caller's `fetch` — in a browser the wrapper
//   from `createTesseraFetch`, which sends the cookies and the CSRF header and refreshes once on
//   401. No token ever goes into a URL.
// - The ticket opens an `EventSource` on `/api/v1/realtime/sse` or a WebSocket on
//   `/api/v1/realtime/ws`.
// - A dropped connection is reopened with a fresh ticket (a spent ticket cannot reopen it, so
//   the helper replaces `EventSource`'s own retry) after a growing, jittered delay, resuming
//   after the last event id seen: nothing published meanwhile is lost while the hub's history
//   still holds it (`recovered: false` in `onOpen` says when it did not).
// - The session ending (logout, revoke, password change elsewhere: SSE `auth.revoked`, WebSocket
//   close 4401) or a ticket refused because the session is gone stops the helper for good and
//   calls `onSignedOut`; a refused subscription (403, WebSocket 4403) stops it and calls
//   `onError`.

/** One event as the hub delivers it. */
export interface RealtimeEvent<T = unknown> {
  /** Increasing per publish, the same on every Tessera instance; what a resume starts after. */
  id: number;
  channel: string;
  type: string;
  data: T;
  /** Publish time, Unix milliseconds. */
  time: number;
}

/** Where the helper is. */
export type RealtimeState = "connecting" | "open" | "waiting" | "closed";

/** The constructors the helper uses (the globals by default; inject them where there are none). */
export interface EventSourceLike {
  addEventListener(type: string, listener: (event: MessageEvent) => void): void;
  close(): void;
  onerror: ((event: Event) => void) | null;
}
export type EventSourceConstructor = new (url: string, init?: { withCredentials?: boolean }) => EventSourceLike;
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Settings for `connectRealtime`. */
export interface RealtimeOptions {
  /** Tessera's public URL (default: same origin, in a browser). */
  tesseraUrl?: string;
  /** The channels to follow: `user:<id>`, `session:<id>`, `tenant:<tid>:<topic>`, `flags`. */
  channels: string[];
  /** `sse` (default) or `websocket`. */
  transport?: "sse" | "websocket";
  /**
   * The event types to receive over SSE, where each is a named event (`event: <type>`).
   * Types given to `on()` are added by themselves; the WebSocket transport receives all.
   */
  types?: string[];
  /** Mints tickets: a fetch sending the caller's credentials (default the global one). */
  fetch?: typeof fetch;
  /** Extra headers for the ticket request (a Node service's `Authorization`, say). */
  ticketHeaders?: Record<string, string>;
  /** Resume after this event id on the first connection. */
  since?: number;
  /** Reconnect delays: the first, and the ceiling it doubles towards (ms). */
  minDelayMs?: number;
  maxDelayMs?: number;
  EventSource?: EventSourceConstructor;
  WebSocket?: WebSocketConstructor;
  /** The connection is (again) open; `recovered` is false when events may have been missed. */
  onOpen?: (recovered: boolean) => void;
  /** The session is over: sign the page out. */
  onSignedOut?: () => void;
  /** A refusal that retrying cannot fix (a forbidden channel, bad input); over WebSocket a
   * refused channel leaves the others subscribed. */
  onError?: (problem: { status: number; code: string; detail: string }) => void;
  onStateChange?: (state: RealtimeState) => void;
}

/** A live subscription; `close()` ends it. */
export interface RealtimeConnection {
  /**
   * Calls `handler` for every event of `type`. `*` receives every event the connection gets:
   * all of them over WebSocket, the named types (`types`, and those given to `on`) over SSE.
   * Returns a function that removes the handler.
   */
  on<T = unknown>(type: string, handler: (event: RealtimeEvent<T>) => void): () => void;
  /** The id of the last event delivered. */
  readonly lastEventId: number | undefined;
  readonly state: RealtimeState;
  close(): void;
}

const SESSION_ENDED = 4401;
const REFUSED = 4403;
const BUILT_IN = new Set(["subscribed", "auth.revoked", "close", "error", "message"]);

class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
  ) {
    super(`${status} ${code}: ${detail}`);
  }
}

async function problemOf(response: Response): Promise<Refusal> {
  try {
    const body = (await response.json()) as { code?: string; detail?: string };
    return new Refusal(response.status, body.code ?? "error", body.detail ?? "");
  } catch {
    return new Refusal(response.status, "error", response.statusText);
  }
}

/** Connects to the hub and keeps the connection up (see the module comment). */
export function connectRealtime(options: RealtimeOptions): RealtimeConnection {
  if (options.channels.length === 0) throw new TypeError("connectRealtime: no channels given");
  const base = (options.tesseraUrl ?? (typeof location === "undefined" ? "" : location.origin)).replace(/\/+$/, "");
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const transport = options.transport ?? "sse";
  const minDelay = options.minDelayMs ?? 500;
  const maxDelay = options.maxDelayMs ?? 30_000;
  const handlers = new Map<string, Set<(event: RealtimeEvent) => void>>();
  const types = new Set(options.types ?? []);

  let lastEventId = options.since;
  let state: RealtimeState = "connecting";
  let attempt = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let source: EventSourceLike | undefined;
  let socket: WebSocketLike | undefined;

  const setState = (next: RealtimeState) => {
    if (state === next) return;
    state = next;
    options.onStateChange?.(next);
  };

  const deliver = (event: RealtimeEvent) => {
    if (lastEventId !== undefined && event.id <= lastEventId) return;
    lastEventId = event.id;
    for (const key of [event.type, "*"]) {
      for (const handler of handlers.get(key) ?? []) handler(event);
    }
  };

  const detach = () => {
    if (source !== undefined) {
      source.onerror = null;
      source.close();
      source = undefined;
    }
    if (socket !== undefined) {
      socket.onclose = null;
      socket.onmessage = null;
      socket.onerror = null;
      socket.close(1000, "closed by the client");
      socket = undefined;
    }
  };

  const stop = () => {
    clearTimeout(timer);
    detach();
    setState("closed");
  };

  const signedOut = () => {
    stop();
    options.onSignedOut?.();
  };

  const refused = (problem: Refusal) => {
    stop();
    options.onError?.({ status: problem.status, code: problem.code, detail: problem.detail });
  };

  const retry = () => {
    detach();
    if (state === "closed") return;
    setState("waiting");
    const ceiling = Math.min(maxDelay, minDelay * 2 ** Math.min(attempt, 16));
    attempt += 1;
    timer = setTimeout(open, ceiling / 2 + Math.random() * (ceiling / 2));
  };

  const ticket = async (): Promise<string> => {
    const response = await doFetch(`${base}/api/v1/realtime/ticket`, {
      method: "POST",
      headers: { "content-type": "application/json", ...options.ticketHeaders },
      body: "{}",
      credentials: "include",
    });
    if (response.status !== 201) throw await problemOf(response);
    return ((await response.json()) as { ticket: string }).ticket;
  };

  const url = (path: string, ticketValue: string, withChannels: boolean): string => {
    const query = new URLSearchParams();
    if (withChannels) for (const channel of options.channels) query.append("channel", channel);
    if (withChannels && lastEventId !== undefined) query.set("since", String(lastEventId));
    query.set("ticket", ticketValue);
    return `${base}${path}?${query}`;
  };

  const listen = (es: EventSourceLike, type: string) => {
    es.addEventListener(type, (message) => deliver(JSON.parse(String(message.data)) as RealtimeEvent));
  };

  const openSse = (ticketValue: string) => {
    const Source = options.EventSource ?? (globalThis as { EventSource?: EventSourceConstructor }).EventSource;
    if (Source === undefined) throw new TypeError("connectRealtime: no EventSource here; pass options.EventSource");
    const es = new Source(url("/api/v1/realtime/sse", ticketValue, true), { withCredentials: true });
    source = es;
    es.addEventListener("subscribed", (message) => {
      attempt = 0;
      setState("open");
      options.onOpen?.((JSON.parse(String(message.data)) as { recovered?: boolean }).recovered !== false);
    });
    es.addEventListener("auth.revoked", signedOut);
    es.addEventListener("close", retry);
    for (const type of types) listen(es, type);
    // A stream that breaks, or ends, is reopened by the helper with a new ticket.
    es.onerror = retry;
  };

  const openWs = (ticketValue: string) => {
    const Socket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (Socket === undefined) throw new TypeError("connectRealtime: no WebSocket here; pass options.WebSocket");
    const wsUrl = url("/api/v1/realtime/ws", ticketValue, false).replace(/^http/, "ws");
    const ws = new Socket(wsUrl);
    socket = ws;
    let pending = new Set(options.channels);
    let recovered = true;
    ws.onopen = () => {
      for (const channel of options.channels) {
        const message: Record<string, unknown> = { type: "subscribe", channel };
        if (lastEventId !== undefined) message.since = lastEventId;
        ws.send(JSON.stringify(message));
      }
    };
    ws.onmessage = (message) => {
      const body = JSON.parse(String(message.data)) as {
        type: string;
        channel?: string;
        recovered?: boolean;
        event?: RealtimeEvent;
        code?: string;
        message?: string;
      };
      if (body.type === "event" && body.event !== undefined) deliver(body.event);
      else if (body.type === "subscribed" && body.channel !== undefined) {
        recovered &&= body.recovered !== false;
        pending.delete(body.channel);
        if (pending.size === 0) {
          pending = new Set();
          attempt = 0;
          setState("open");
          options.onOpen?.(recovered);
        }
      } else if (body.type === "error") {
        // One channel refused: the others stay subscribed.
        options.onError?.({ status: 403, code: body.code ?? "error", detail: body.message ?? "" });
        if (body.channel !== undefined && pending.delete(body.channel) && pending.size === 0) setState("open");
      }
    };
    ws.onclose = (event) => {
      if (event.code === SESSION_ENDED) signedOut();
      else if (event.code === REFUSED) refused(new Refusal(403, "forbidden", event.reason));
      else retry();
    };
    ws.onerror = () => undefined; // `onclose` follows and decides.
  };

  const open = () => {
    if (state === "closed") return;
    setState("connecting");
    ticket()
      .then((value) => {
        if (state === "closed") return;
        if (transport === "websocket") openWs(value);
        else openSse(value);
      })
      .catch((error: unknown) => {
        if (error instanceof Refusal && error.status === 401) signedOut();
        else if (error instanceof Refusal && error.status >= 400 && error.status < 500 && error.status !== 429) refused(error);
        else retry();
      });
  };

  open();

  return {
    on<T = unknown>(type: string, handler: (event: RealtimeEvent<T>) => void): () => void {
      let set = handlers.get(type);
      if (set === undefined) {
        set = new Set();
        handlers.set(type, set);
      }
      const untyped = handler as (event: RealtimeEvent) => void;
      set.add(untyped);
      if (type !== "*" && !BUILT_IN.has(type) && !types.has(type)) {
        types.add(type);
        if (source !== undefined) listen(source, type);
      }
      return () => set.delete(untyped);
    },
    get lastEventId() {
      return lastEventId;
    },
    get state() {
      return state;
    },
    close: stop,
  };
}
