// hardlab's own small script: copy buttons on code blocks, and a progress display while Check
// runs. Every page works without it (the Check form posts and redirects).
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

  document.querySelectorAll("form[data-check-form]").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      const progress = form.querySelector(".check-progress");
      if (button) button.disabled = true;
      if (progress) progress.hidden = false;
      try {
        // The server grades, stores the attempt and redirects to the step page; fetch follows
        // the redirect, and the browser then shows that page with the results.
        const response = await fetch(form.action, {
          method: "POST",
          body: new URLSearchParams(new FormData(form)),
          credentials: "same-origin",
        });
        const target = new URL(response.url);
        target.hash = "result";
        const here = window.location;
        if (target.pathname === here.pathname && target.search === here.search) {
          // Same page: a hash change alone would not reload it.
          history.replaceState(null, "", target.href);
          here.reload();
        } else {
          here.assign(target.href);
        }
      } catch {
        form.submit();
      }
    });
  });
});
