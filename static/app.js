// hardlab's own small script: copy buttons on code blocks. Every page works without it.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  if (navigator.clipboard) {
    document.querySelectorAll(".code button.copy").forEach((button) => {
      button.hidden = false;
      button.addEventListener("click", async () => {
        const code = button.closest(".code")?.querySelector("code");
        if (!code) return;
        try {
          await navigator.clipboard.writeText(code.textContent ?? "");
          button.textContent = "Copied";
          button.classList.add("copied");
        } catch {
          button.textContent = "Select and copy";
        }
        setTimeout(() => { button.textContent = "Copy"; button.classList.remove("copied"); }, 1500);
      });
    });
  }
  // The step page's Check, panes and background check: static/lab-page.js.
});
