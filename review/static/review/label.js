// Keyboard-first labelling. Digits set the level of the current dimension, arrows or j/k move
// between dimensions, Enter submits, s skips, b goes back. Time spent is measured here, from the
// moment an item is shown to its submission, and sent with the labels.
(function () {
  "use strict";
  let shownAt = performance.now();
  let current = 0;

  function form() { return document.getElementById("label-form"); }
  function dimensions() { return Array.from(document.querySelectorAll("#labeller .review-dimension")); }

  function setCurrent(index) {
    const dims = dimensions();
    if (!dims.length) return;
    current = Math.max(0, Math.min(index, dims.length - 1));
    dims.forEach((d, i) => d.classList.toggle("is-current", i === current));
  }

  function init() {
    shownAt = performance.now();
    const dims = dimensions();
    const firstUnset = dims.findIndex((d) => !d.querySelector("input:checked"));
    setCurrent(firstUnset === -1 ? 0 : firstUnset);
    dims.forEach((d, i) => d.addEventListener("click", () => setCurrent(i)));
  }

  function submit() {
    const f = form();
    if (f) f.requestSubmit();
  }

  function click(id) {
    const button = document.getElementById(id);
    if (button && !button.disabled) button.click();
  }

  document.addEventListener("keydown", (event) => {
    if (!form() || event.altKey || event.metaKey) return;
    const target = event.target;
    const typing = target instanceof HTMLTextAreaElement ||
      (target instanceof HTMLInputElement && target.type !== "radio");
    if (typing) {
      if (event.key === "Escape") target.blur();
      if (event.key === "Enter" && event.ctrlKey) { event.preventDefault(); submit(); }
      return;
    }
    if (event.ctrlKey) return;
    const dims = dimensions();
    if (target instanceof HTMLInputElement && target.type === "radio") {
      const own = dims.indexOf(target.closest(".review-dimension"));
      if (own !== -1) current = own;
    }
    const key = event.key;
    if (/^[0-9]$/.test(key)) {
      const radio = dims[current] && dims[current].querySelector(`input[value="${key}"]`);
      if (radio) {
        event.preventDefault();
        radio.checked = true;
        setCurrent(current + 1);
      }
    } else if (key === "ArrowDown" || key === "ArrowRight" || key === "j") {
      event.preventDefault(); setCurrent(current + 1);
    } else if (key === "ArrowUp" || key === "ArrowLeft" || key === "k") {
      event.preventDefault(); setCurrent(current - 1);
    } else if (key === "Enter") {
      event.preventDefault(); submit();
    } else if (key === "s" || key === "S") {
      event.preventDefault(); click("skip-item");
    } else if (key === "b" || key === "B") {
      event.preventDefault(); click("back-item");
    } else if (key === "r" || key === "R") {
      const rationale = document.getElementById("rationale");
      if (rationale) { event.preventDefault(); rationale.focus(); }
    }
  });

  // htmx reads the form when it sends; fill in the time spent just before.
  document.addEventListener("htmx:configRequest", (event) => {
    if (event.detail.elt && event.detail.elt.id === "label-form") {
      event.detail.parameters.time_spent_ms = String(Math.round(performance.now() - shownAt));
    }
  });
  document.addEventListener("htmx:afterSwap", (event) => {
    if (document.getElementById("labeller")) init();
  });
  document.addEventListener("DOMContentLoaded", init);
})();
