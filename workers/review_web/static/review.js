// The one script of the review app (CSP allows nothing else): keyboard shortcuts, the lease
// heartbeat of the open item page, revealing obscured content. Content is never touched.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const page = document.getElementById("item-page");

  function typing(target) {
    if (!target || !target.tagName) return false;
    const tag = target.tagName.toLowerCase();
    return tag === "textarea" || tag === "input" || tag === "select" || target.isContentEditable;
  }

  function click(id) {
    const el = document.getElementById(id);
    if (el) el.click();
  }

  function choose(key) {
    const radio = document.querySelector('input[name="action"][data-key="' + key + '"]');
    if (!radio || radio.disabled) return;
    radio.checked = true;
    if (key === "u") document.getElementById("rule-id").focus();
  }

  function reveal() {
    document.body.classList.toggle("revealed");
  }

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && typing(event.target)) {
      event.target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (!page) {
      const form = document.getElementById("take-next");
      if (event.key === "n" && form) {
        event.preventDefault();
        form.requestSubmit();
      }
      return;
    }
    switch (event.key) {
      case "c": case "r": case "u": case "e": choose(event.key); break;
      case "s": click("submit"); break;
      case "n": click("submit-next"); break;
      case "v": reveal(); break;
      default: return;
    }
    event.preventDefault();
  });

  const revealButton = document.getElementById("reveal");
  if (revealButton) revealButton.addEventListener("click", reveal);

  if (page) {
    const every = Number(page.dataset.heartbeatMs) || 30000;
    const beat = function () {
      fetch("/item/extend", {
        method: "POST",
        headers: { "X-CSRF-Token": csrf },
        credentials: "same-origin",
      }).then(function (response) {
        if (response.status === 409) {
          document.getElementById("lease-lost").hidden = false;
          clearInterval(timer);
        }
      }).catch(function () { /* offline for a moment: the next beat tries again */ });
    };
    const timer = setInterval(beat, every);
  }
})();
