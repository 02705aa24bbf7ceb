// The lab page's cluster panel: Start, the creation progress (server-sent events), the terminal
// (xterm.js over a WebSocket to a login shell in the learner's node) and one-click "Run" for the
// shell blocks of the lab text (elements with a `data-run` attribute).
//
// Mounts on every element with `data-hardlab-cluster`; `data-lab` names the lab and an optional
// `data-cluster` an existing cluster to attach to.

import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";

interface ClusterView {
  id: string;
  lab: string;
  state: "requested" | "creating" | "ready" | "expiring" | "deleted" | "failed";
  phase: string | null;
  phase_text: string | null;
  reason: string | null;
  expires_at: number;
}

/** Keystrokes go in messages of at most this many bytes: the server closes a terminal socket on a
 * message over 64 KiB (`TerminalConfig::max_message_bytes`), and a long paste must not do that. */
const INPUT_CHUNK_BYTES = 16 * 1024;

const PHASES: Array<[string, string]> = [
  ["preparing-node", "Preparing the node container"],
  ["writing-configuration", "Writing the kubeadm configuration"],
  ["starting-control-plane", "Starting the control plane"],
  ["installing-cni", "Installing the pod network"],
  ["installing-storage", "Installing the storage class"],
  ["waiting-for-api-server", "Waiting for the API server"],
  ["exporting-kubeconfig", "Exporting the kubeconfig"],
  ["preparing-lab", "Setting up the lab"],
];

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  text = "",
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

/// The page's CSRF token: the server refuses changing requests without it.
function csrfToken(): string {
  return document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')?.content ?? "";
}

async function api(method: string, path: string): Promise<ClusterView> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  const response = await fetch(path, { method, credentials: "same-origin", headers });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error ?? `HTTP ${response.status}`);
  return body as ClusterView;
}

class ClusterPanel {
  private readonly lab: string;
  private cluster: ClusterView | null = null;
  private events: EventSource | null = null;
  private socket: WebSocket | null = null;
  private terminal: Terminal | null = null;
  private fit: FitAddon | null = null;
  private reconnectDelay = 1000;
  private closedByServer = false;
  private readonly status = element("div", { class: "cluster-status", role: "status", "aria-live": "polite" });
  private readonly progress = element("ol", { class: "cluster-progress" });
  private readonly actions = element("div", { class: "cluster-actions" });
  private readonly screen = element("div", { class: "terminal-screen", "data-terminal": "" });
  private readonly encoder = new TextEncoder();

  constructor(private readonly root: HTMLElement) {
    this.lab = root.dataset.lab ?? "";
    root.append(this.status, this.progress, this.actions, this.screen);
    const known = root.dataset.cluster || sessionStorage.getItem(this.storageKey());
    if (known) {
      api("GET", `/api/clusters/${encodeURIComponent(known)}`)
        .then((view) => this.show(view))
        .catch(() => this.showStart());
    } else {
      this.showStart();
    }
  }

  private storageKey(): string {
    return `hardlab-cluster-${this.lab}`;
  }

  private button(label: string, action: () => void, extra: Record<string, string> = {}): HTMLButtonElement {
    const button = element("button", { type: "button", ...extra }, label);
    button.addEventListener("click", action);
    return button;
  }

  private showStart(message = "", label = "Start"): void {
    this.status.textContent = message || "Start the lab to get your own cluster.";
    this.progress.replaceChildren();
    this.actions.replaceChildren(this.button(label, () => this.start(), { "data-action": "start" }));
  }

  private async start(): Promise<void> {
    this.actions.replaceChildren();
    this.status.textContent = "Starting…";
    try {
      this.show(await api("POST", `/api/labs/${encodeURIComponent(this.lab)}/cluster`));
    } catch (error) {
      this.showStart(`Could not start: ${(error as Error).message}`);
    }
  }

  /// Tells the rest of the page (lab-page.js: the background check, the tabs) what happened.
  private announce(name: string, detail: Record<string, unknown> = {}): void {
    this.root.dispatchEvent(new CustomEvent(`hardlab:${name}`, { bubbles: true, detail }));
  }

  private show(view: ClusterView): void {
    const wasReady = this.cluster?.state === "ready";
    this.cluster = view;
    sessionStorage.setItem(this.storageKey(), view.id);
    this.root.dataset.clusterState = view.state;
    this.announce("cluster", { state: view.state });
    if (view.state === "ready") {
      // Kept open while ready: a node that dies later arrives here as a `failed` event.
      this.watch(view.id);
      this.renderProgress(null);
      this.status.textContent = `Your cluster is ready (until ${new Date(view.expires_at).toLocaleTimeString()}).`;
      this.actions.replaceChildren(
        this.button("Extend", () => this.extend(), { "data-action": "extend" }),
        this.button("Remove cluster", () => this.remove(), { "data-action": "remove" }),
      );
      this.openTerminal();
    } else if (view.state === "failed") {
      this.events?.close();
      this.events = null;
      this.closedByServer = true;
      this.socket?.close();
      sessionStorage.removeItem(this.storageKey());
      const reason = view.reason ?? "unknown reason";
      this.showStart(
        wasReady ? `Your cluster stopped working: ${reason}` : `Your cluster could not be created: ${reason}`,
        "Start again",
      );
    } else if (view.state === "deleted") {
      sessionStorage.removeItem(this.storageKey());
      this.showStart("Your cluster was removed.");
    } else {
      this.status.textContent = view.phase_text ?? "Waiting for a free slot…";
      this.renderProgress(view.phase);
      this.watch(view.id);
    }
  }

  private renderProgress(current: string | null): void {
    if (current === null) {
      this.progress.replaceChildren();
      return;
    }
    const index = PHASES.findIndex(([phase]) => phase === current);
    this.progress.replaceChildren(
      ...PHASES.filter(([phase]) => phase !== "writing-configuration" || index >= 1).map(([phase, text], i) => {
        const state = i < index ? "done" : i === index ? "current" : "pending";
        return element("li", { "data-phase": phase, "data-state": state }, text);
      }),
    );
  }

  private watch(id: string): void {
    if (this.events) return;
    this.events = new EventSource(`/api/clusters/${encodeURIComponent(id)}/events`);
    this.events.addEventListener("cluster", (event) => {
      const view = JSON.parse((event as MessageEvent).data) as ClusterView;
      this.show({ ...view, lab: this.lab });
    });
  }

  private async extend(): Promise<void> {
    if (!this.cluster) return;
    try {
      this.show(await api("POST", `/api/clusters/${encodeURIComponent(this.cluster.id)}/extend`));
    } catch (error) {
      this.status.textContent = `Could not extend: ${(error as Error).message}`;
    }
  }

  private async remove(): Promise<void> {
    if (!this.cluster) return;
    const id = this.cluster.id;
    this.closedByServer = true;
    this.socket?.close();
    await fetch(`/api/clusters/${encodeURIComponent(id)}`, {
      method: "DELETE",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfToken() },
    });
    this.terminal?.dispose();
    this.terminal = null;
    this.screen.replaceChildren();
    sessionStorage.removeItem(this.storageKey());
    this.root.dataset.clusterState = "deleted";
    this.announce("cluster", { state: "deleted" });
    this.showStart("Your cluster was removed.");
  }

  private openTerminal(): void {
    if (!this.terminal) {
      // A smaller font on phones, so a line of `hexdump -C` comes closer to fitting.
      const fontSize = window.matchMedia("(max-width: 599px)").matches ? 12 : 14;
      this.terminal = new Terminal({ cursorBlink: true, convertEol: false, fontSize, scrollback: 5000 });
      this.fit = new FitAddon();
      this.terminal.loadAddon(this.fit);
      this.terminal.open(this.screen);
      this.refit();
      this.terminal.onData((data) => {
        this.sendBytes(this.encoder.encode(data));
        this.announce("terminal-input");
      });
      this.terminal.onResize(({ cols, rows }) => this.sendResize(cols, rows));
      // The terminal follows its pane: the divider, a tab switch, the window.
      let pending = false;
      new ResizeObserver(() => {
        if (pending) return;
        pending = true;
        requestAnimationFrame(() => {
          pending = false;
          this.refit();
        });
      }).observe(this.screen);
    }
    this.connect();
  }

  /// Fits the terminal to its box, unless the box is hidden (a phone's other tab): xterm would
  /// shrink to nothing and the shell with it.
  refit(): void {
    if (!this.fit || this.screen.clientWidth === 0 || this.screen.clientHeight === 0) return;
    this.fit.fit();
  }

  private connect(): void {
    if (!this.cluster || (this.socket && this.socket.readyState <= WebSocket.OPEN)) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/api/clusters/${encodeURIComponent(this.cluster.id)}/terminal`);
    socket.binaryType = "arraybuffer";
    this.closedByServer = false;
    socket.addEventListener("open", () => {
      this.reconnectDelay = 1000;
      this.root.dataset.terminal = "connected";
      showRunButtons(true);
      if (this.terminal) this.sendResize(this.terminal.cols, this.terminal.rows);
      this.terminal?.focus();
    });
    socket.addEventListener("message", (event) => {
      if (event.data instanceof ArrayBuffer) {
        this.terminal?.write(new Uint8Array(event.data));
        return;
      }
      const status = JSON.parse(String(event.data)) as { type: string; reason?: string };
      if (status.type === "closed") {
        this.closedByServer = true;
        this.terminal?.write(`\r\n\x1b[33m[${status.reason ?? "the shell ended"}]\x1b[0m\r\n`);
      }
    });
    socket.addEventListener("close", () => {
      this.root.dataset.terminal = "disconnected";
      showRunButtons(false);
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.closedByServer || this.cluster?.state !== "ready") return;
      // A dropped connection: the shell lives on server-side for a while, so come back to it.
      setTimeout(() => this.connect(), this.reconnectDelay);
      this.reconnectDelay = Math.min(this.reconnectDelay * 2, 10000);
    });
    this.socket = socket;
  }

  private sendBytes(bytes: Uint8Array): void {
    const socket = this.socket;
    if (socket?.readyState !== WebSocket.OPEN) return;
    for (let at = 0; at < bytes.length; at += INPUT_CHUNK_BYTES) {
      socket.send(bytes.subarray(at, at + INPUT_CHUNK_BYTES));
    }
  }

  private sendResize(cols: number, rows: number): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify({ type: "resize", cols, rows }));
  }

  /// Types a lab's command into the terminal, one line at a time, as if the learner typed it.
  run(command: string): void {
    if (!this.terminal || this.socket?.readyState !== WebSocket.OPEN) {
      this.status.textContent = "Start the lab first; the command goes to your cluster's terminal.";
      return;
    }
    for (const line of command.replace(/\r\n/g, "\n").split("\n")) {
      if (line.trim() !== "") this.sendBytes(this.encoder.encode(`${line}\r`));
    }
    this.announce("run");
    this.announce("terminal-input");
    this.terminal.focus();
  }
}

/// The lab text's shell blocks (`<pre data-run>`): the server renders a hidden "Run in
/// terminal" button beside each; it is shown once a terminal is open and types the block there.
function addRunButtons(panel: ClusterPanel): void {
  document.querySelectorAll<HTMLElement>("pre[data-run]").forEach((block) => {
    if (block.dataset.runReady) return;
    block.dataset.runReady = "1";
    let button = block.parentElement?.querySelector<HTMLButtonElement>("button.run") ?? null;
    if (!button) {
      button = element("button", { type: "button", class: "run", hidden: "" }, "Run in terminal");
      block.insertAdjacentElement("afterend", button);
    }
    // A solution's block shows the script but runs it by name (`hardlab-solution NAME` in the
    // node runs it the way the lab harness does), so the learner's shell sees one short command.
    button.addEventListener("click", () =>
      panel.run(block.dataset.runCommand ?? (block.querySelector("code") ?? block).textContent ?? ""),
    );
  });
}

function showRunButtons(visible: boolean): void {
  document.querySelectorAll<HTMLButtonElement>("pre[data-run] ~ button.run").forEach((button) => {
    button.hidden = !visible;
  });
}

function mount(): void {
  // The page's notice for when this script does not arrive.
  document.querySelectorAll("[data-terminal-missing]").forEach((notice) => notice.remove());
  const roots = document.querySelectorAll<HTMLElement>("[data-hardlab-cluster]");
  roots.forEach((root, index) => {
    const panel = new ClusterPanel(root);
    if (index === 0) {
      addRunButtons(panel);
      (window as unknown as { hardlabTerminal: ClusterPanel }).hardlabTerminal = panel;
    }
  });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount);
else mount();
