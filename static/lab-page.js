// The step page made for doing: the lesson and the terminal side by side with a draggable,
// remembered divider (tabs Lesson / Terminal / Results on phones), Check without leaving the page
// (the terminal stays), keyboard shortcuts, and the background check while the cluster is ready.
// Without this script the page still works: the panes stack and Check posts and redirects.
"use strict";

(() => {
  const workspace = document.querySelector("[data-workspace]");
  if (!workspace) return;
  const lab = workspace.dataset.lab;
  const step = workspace.dataset.step;
  const tabs = workspace.querySelector(".pane-tabs");
  const divider = workspace.querySelector(".divider");
  const lessonPane = workspace.querySelector(".pane-lesson");
  const resultPanel = workspace.querySelector("#result");
  const wide = window.matchMedia("(min-width: 900px)");
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  const WIDTH_KEY = "hardlab-lesson-width";

  workspace.dataset.split = "";
  workspace.dataset.tabs = "";
  tabs.hidden = false;
  divider.hidden = false;

  // The divider: drag, arrow keys, double click to reset; remembered for every lab.
  const setWidth = (percent) => {
    const clamped = Math.min(75, Math.max(25, percent));
    workspace.style.setProperty("--lesson-width", `${clamped}%`);
    divider.setAttribute("aria-valuenow", String(Math.round(clamped)));
    return clamped;
  };
  divider.setAttribute("aria-valuemin", "25");
  divider.setAttribute("aria-valuemax", "75");
  let width = setWidth(Number(localStorage.getItem(WIDTH_KEY)) || 50);
  const remember = () => localStorage.setItem(WIDTH_KEY, String(Math.round(width)));
  divider.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    divider.setPointerCapture(event.pointerId);
    divider.dataset.dragging = "";
  });
  divider.addEventListener("pointermove", (event) => {
    if (!divider.hasPointerCapture(event.pointerId)) return;
    const box = workspace.getBoundingClientRect();
    width = setWidth(((event.clientX - box.left) / box.width) * 100);
  });
  const endDrag = (event) => {
    if (!divider.hasPointerCapture(event.pointerId)) return;
    divider.releasePointerCapture(event.pointerId);
    delete divider.dataset.dragging;
    remember();
  };
  divider.addEventListener("pointerup", endDrag);
  divider.addEventListener("pointercancel", endDrag);
  divider.addEventListener("dblclick", () => {
    width = setWidth(50);
    remember();
  });
  divider.addEventListener("keydown", (event) => {
    const steps = { ArrowLeft: -5, ArrowRight: 5, Home: -100, End: 100 };
    if (!(event.key in steps)) return;
    event.preventDefault();
    width = setWidth(width + steps[event.key]);
    remember();
  });

  // Panes: tabs on phones; on wide screens "switching" moves the focus.
  const tabButtons = [...tabs.querySelectorAll("[data-tab]")];
  const focusPane = (name) => {
    if (name === "terminal") {
      const input = workspace.querySelector(".xterm-helper-textarea");
      (input ?? workspace.querySelector(".pane-terminal")).focus();
    } else if (name === "results") {
      resultPanel.focus({ preventScroll: true });
      resultPanel.scrollIntoView({ block: "start" });
    } else {
      lessonPane.focus({ preventScroll: true });
    }
  };
  const activate = (name, { focus = false } = {}) => {
    workspace.dataset.active = name;
    for (const button of tabButtons) {
      button.setAttribute("aria-selected", String(button.dataset.tab === name));
      button.tabIndex = button.dataset.tab === name ? 0 : -1;
    }
    // The terminal was hidden on a phone: fit it to its box now that it has one.
    if (name === "terminal") requestAnimationFrame(() => window.hardlabTerminal?.refit());
    if (focus) focusPane(name);
  };
  for (const button of tabButtons) {
    button.addEventListener("click", () => activate(button.dataset.tab, { focus: true }));
  }
  tabs.addEventListener("keydown", (event) => {
    const index = tabButtons.findIndex((b) => b.dataset.tab === workspace.dataset.active);
    const move = { ArrowLeft: -1, ArrowRight: 1 }[event.key];
    if (move === undefined) return;
    const next = tabButtons[(index + move + tabButtons.length) % tabButtons.length];
    activate(next.dataset.tab);
    next.focus();
  });
  activate(location.hash === "#result" ? "results" : "lesson");
  // "Run in terminal" from the lesson on a phone: show where the command went.
  workspace.addEventListener("hardlab:run", () => {
    if (!wide.matches) activate("terminal");
  });

  // Check without leaving the page: the server grades, stores and redirects to this page; the new
  // verdict, hints and step list are taken from it, and the terminal stays connected.
  const form = workspace.querySelector("form[data-check-form]");
  let grading = false;
  const swapFrom = (html) => {
    const fresh = new DOMParser().parseFromString(html, "text/html");
    for (const selector of ["#result [data-attempt]", "#result .hints", ".steps-drawer nav.steps", "[data-current-state]", "#catch-up"]) {
      const now = document.querySelector(selector);
      const next = fresh.querySelector(selector);
      if (now && next) now.replaceWith(document.importNode(next, true));
    }
    const notice = document.querySelector("[data-no-cluster]");
    if (notice && !fresh.querySelector("[data-no-cluster]")) notice.remove();
  };
  const showResults = () => {
    activate("results");
    resultPanel.scrollIntoView({ block: "start" });
  };
  const check = async () => {
    if (!form || grading) return;
    grading = true;
    const button = form.querySelector("button[type=submit]");
    const progress = form.querySelector(".check-progress");
    button.disabled = true;
    progress.hidden = false;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      swapFrom(await response.text());
      showResults();
      history.replaceState(null, "", "#result");
    } catch {
      form.submit();
    } finally {
      grading = false;
      button.disabled = false;
      progress.hidden = true;
    }
  };
  form?.addEventListener("submit", (event) => {
    event.preventDefault();
    check();
  });

  // A catch-up under way: the page follows it until it ends (the server renders its progress).
  const followCatchUp = async () => {
    if (!document.querySelector("#catch-up[data-running]")) return;
    try {
      const page = await fetch(location.pathname, { credentials: "same-origin" });
      if (page.ok) swapFrom(await page.text());
    } catch {
      // The next round tries again.
    }
    setTimeout(followCatchUp, 2000);
  };
  setTimeout(followCatchUp, 2000);
  workspace.querySelector("form[data-reset-form]")?.addEventListener("submit", (event) => {
    if (!window.confirm("Reset the lab? Your cluster is removed and a fresh one starts; what you passed stays recorded.")) {
      event.preventDefault();
    }
  });

  // Alt+Enter: Check; Alt+1/2/3: lesson, terminal, results. Taken before the terminal sees them.
  window.addEventListener(
    "keydown",
    (event) => {
      if (!event.altKey || event.ctrlKey || event.metaKey) return;
      const pane = { Digit1: "lesson", Digit2: "terminal", Digit3: "results" }[event.code];
      if (event.code === "Enter" && form) {
        event.preventDefault();
        event.stopPropagation();
        check();
      } else if (pane) {
        event.preventDefault();
        event.stopPropagation();
        activate(pane, { focus: true });
      }
    },
    true,
  );

  // The background check: while the cluster is ready and the step has not passed, at the
  // server's interval and a few seconds after the learner stops typing; only a pass changes the
  // page. The server refuses to run it beside another grading, and without a ready cluster.
  const status = workspace.querySelector("[data-auto-check-status]");
  const seconds = Number(workspace.dataset.autoCheck);
  if (!status || !seconds) return;
  const currentState = () =>
    document.querySelector(".steps a[aria-current=step]")?.closest("li")?.className ?? "";
  let passed = /state-(passed|warned)/.test(currentState());
  let clusterReady = workspace.querySelector("[data-hardlab-cluster]")?.dataset.clusterState === "ready";
  let timer = 0;
  let lastRun = 0;
  const say = (text, state = "") => {
    status.textContent = `Auto-check: ${text}`;
    status.dataset.state = state;
  };
  const schedule = (delay) => {
    clearTimeout(timer);
    if (passed) return;
    if (!clusterReady) {
      say("waits for your cluster to be ready.", "waiting");
      return;
    }
    timer = setTimeout(run, delay);
  };
  const run = async () => {
    if (passed || !clusterReady) return;
    if (grading || document.hidden) {
      schedule(seconds * 1000);
      return;
    }
    lastRun = Date.now();
    say("checking…", "running");
    try {
      const response = await fetch(`/labs/${encodeURIComponent(lab)}/steps/${encodeURIComponent(step)}/auto-check`, {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRF-Token": csrf() },
      });
      const answer = await response.json();
      const at = new Date().toLocaleTimeString();
      if (answer.ran && answer.passed) {
        passed = true;
        const page = await fetch(location.pathname, { credentials: "same-origin" });
        swapFrom(await page.text());
        say(`${answer.label.toLowerCase()} at ${at}, without pressing Check.`, "passed");
        return;
      }
      if (answer.ran) say(`${answer.label.toLowerCase()} at ${at}; again in ${seconds} s. Press Check for the details.`, answer.verdict);
      else if (answer.reason === "this step has passed already") {
        passed = true;
        say("this step has passed.", "passed");
        return;
      } else say(`did not run (${answer.reason}); again in ${seconds} s.`, "waiting");
    } catch {
      say(`could not reach the server; again in ${seconds} s.`, "waiting");
    }
    schedule(seconds * 1000);
  };
  workspace.addEventListener("hardlab:cluster", (event) => {
    const ready = event.detail.state === "ready";
    if (ready === clusterReady && timer) return;
    clusterReady = ready;
    if (ready && !passed) say(`on while your cluster is ready (every ${seconds} s, and after you type).`, "on");
    // The first check soon after the cluster is there; then at the interval.
    schedule(3000);
  });
  workspace.addEventListener("hardlab:terminal-input", () => {
    if (passed || !clusterReady) return;
    // A few seconds after the typing stops, but not more often than every few seconds.
    const soonest = Math.max(4000, lastRun + 8000 - Date.now());
    schedule(soonest);
  });
  if (workspace.dataset.registered !== undefined) clusterReady = true;
  schedule(clusterReady ? 3000 : 0);
})();
