// The fleet event stream (GET /api/v1/events, text/event-stream), read with fetch() so the bearer header
// goes along (EventSource cannot send headers, and a token never goes in a URL).
// The views also re-read on a timer, stream or not (the safety net, as fleetd's own full polls are for
// its Engine event watchers): subscribers get {type: "tick"} every `refresh` seconds, and
// {type: "connected"} / {type: "reset"} when they must re-list because events may have been missed.

import { stream, lines, ApiError } from "./api.js";

export class FleetEvents {
  constructor(refreshSeconds, statusEl, available = true) {
    this.available = available;
    this.refresh = Math.max(0.5, refreshSeconds || 5);
    this.statusEl = statusEl;
    this.subscribers = new Set();
    this.lastId = null;
    this.mode = "starting";
    this.timer = null;
    this.abort = null;
    this.stopped = false;
  }

  on(fn) {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  emit(evt) {
    for (const fn of [...this.subscribers]) {
      try { fn(evt); } catch (err) { console.warn("event handler failed", err); }
    }
  }

  setMode(mode, text) {
    this.mode = mode;
    if (!this.statusEl) return;
    this.statusEl.textContent = text;
    this.statusEl.className = `live ${mode === "live" ? "on" : mode === "poll" ? "poll" : "off"}`;
  }

  startTicking() {
    if (this.timer) return;
    this.timer = setInterval(() => this.emit({ type: "tick" }), this.refresh * 1000);
  }

  stopTicking() {
    clearInterval(this.timer);
    this.timer = null;
  }

  stop() {
    this.stopped = true;
    this.stopTicking();
    if (this.abort) this.abort.abort();
  }

  async start() {
    this.startTicking();
    if (!this.available) return this.polling();
    let backoff = 1;
    while (!this.stopped) {
      this.abort = new AbortController();
      try {
        const resp = await stream("/api/v1/events", {}, {
          accept: "text/event-stream", signal: this.abort.signal, lastEventId: this.lastId,
        });
        this.setMode("live", "live");
        this.emit({ type: "connected" });
        backoff = 1;
        await this.read(resp);
        if (this.stopped) return;
        this.setMode("down", "reconnecting…");
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof ApiError && (err.status === 404 || err.status === 405)) return this.polling();
        if (err instanceof ApiError && err.status === 401) {
          this.setMode("down", "signed out");
          return;
        }
        this.setMode("down", "event stream lost; retrying");
      }
      await new Promise((r) => setTimeout(r, backoff * 1000));
      backoff = Math.min(backoff * 2, 15);
    }
  }

  polling() {
    this.setMode("poll", `refreshing every ${this.refresh}s`);
    this.startTicking(); // this fleetd has no event stream: the timer is all there is
  }

  async read(resp) {
    let id = null, type = "message", data = [];
    for await (const line of lines(resp)) {
      if (line === "") {
        if (data.length) {
          if (id !== null) this.lastId = id;
          let payload;
          try { payload = JSON.parse(data.join("\n")); } catch { payload = { raw: data.join("\n") }; }
          this.emit({ type: payload.type || type, id, data: payload });
        }
        id = null; type = "message"; data = [];
        continue;
      }
      if (line.startsWith(":")) continue; // comment / ping
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") id = value;
      else if (field === "event") type = value;
      else if (field === "data") data.push(value);
    }
  }
}
