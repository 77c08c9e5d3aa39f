// Keyboard-first labelling. Digits set the level of the current dimension (then move to the next),
// arrows or j/k move between dimensions, Enter submits, s skips, b goes back, r opens the rationale.
// Time spent is measured here, from the moment an item is shown to its submission.
//
// Exact at any typing speed:
//  - one handler owns the keys wherever focus is: a focused radio never decides which dimension a
//    digit goes to, and its native arrow-key behaviour (checking a neighbour) is suppressed;
//  - from the moment a request for the labeller leaves until its answer is swapped in and htmx has
//    taken over the new form (htmx:afterSettle), keys are queued, then replayed on the new item, so
//    "2 1 Enter 3 0 Enter" labels two items however fast it is typed. Without the queue a key typed
//    in the ~20 ms before htmx processes the new form submitted it natively, as a GET.
(function () {
  "use strict";
  let shownAt = performance.now();
  let current = 0;
  let busy = true;             // until the page (or the swapped-in item) is ready for keys
  let inflight = null;         // the XMLHttpRequest for the labeller now in flight
  let queued = [];             // keys typed while busy, replayed in order

  function form() { return document.getElementById("label-form"); }
  function labeller() { return document.getElementById("labeller"); }
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
  }

  function click(id) {
    const button = document.getElementById(id);
    if (button && !button.disabled) button.click();
  }

  // The keys this page owns, outside text fields; everything else keeps its browser meaning.
  function isOwned(key) {
    return /^[0-9]$/.test(key) || ["ArrowDown", "ArrowRight", "ArrowUp", "ArrowLeft", "Enter",
      "j", "k", "s", "S", "b", "B", "r", "R"].includes(key);
  }

  function apply(key) {
    if (!form()) return;
    const dims = dimensions();
    if (/^[0-9]$/.test(key)) {
      const radio = dims[current] && dims[current].querySelector(`input[type="radio"][value="${key}"]`);
      if (radio) {
        radio.checked = true;
        setCurrent(current + 1);
      }
    } else if (key === "ArrowDown" || key === "ArrowRight" || key === "j") {
      setCurrent(current + 1);
    } else if (key === "ArrowUp" || key === "ArrowLeft" || key === "k") {
      setCurrent(current - 1);
    } else if (key === "Enter") {
      // requestSubmit validates first: with a dimension unset the browser says so and nothing is sent.
      form().requestSubmit();
    } else if (key === "s" || key === "S") {
      click("skip-item");
    } else if (key === "b" || key === "B") {
      click("back-item");
    } else if (key === "r" || key === "R") {
      const rationale = document.getElementById("rationale");
      if (rationale) rationale.focus();
    }
  }

  // Replay queued keys until one of them sends a request again (Enter, s, b): the rest wait for it.
  function flush() {
    while (queued.length && !busy) apply(queued.shift());
  }

  function ready() {
    busy = false;
    inflight = null;
    init();
    flush();
  }

  document.addEventListener("keydown", (event) => {
    if (!labeller() || event.altKey || event.metaKey || event.isComposing) return;
    const target = event.target;
    const typing = target instanceof HTMLTextAreaElement ||
      (target instanceof HTMLInputElement && target.type !== "radio" && target.type !== "checkbox");
    if (typing) {
      if (event.key === "Escape") target.blur();
      if (event.key === "Enter" && event.ctrlKey) {
        event.preventDefault();
        // Leave the field, so what is typed next is read as shortcuts for the next item, not as text
        // for a form about to be replaced.
        target.blur();
        if (busy) queued.push("Enter"); else apply("Enter");
      }
      return;
    }
    if (event.ctrlKey || !isOwned(event.key)) return;
    // Enter on a link, a summary or a button keeps its own meaning (follow, open, press).
    if (event.key === "Enter" && target instanceof Element && target.closest("a[href], summary, button")) return;
    if (!form() && !busy) return;
    event.preventDefault();
    if (busy) queued.push(event.key); else apply(event.key);
  });

  // A click on a level sets that dimension and moves on, as its digit would; a click elsewhere in a
  // dimension makes it the current one.
  document.addEventListener("click", (event) => {
    const target = event.target;
    if (!(target instanceof Element)) return;
    const dim = target.closest("#labeller .review-dimension");
    if (!dim) return;
    const index = dimensions().indexOf(dim);
    if (target instanceof HTMLInputElement && target.type === "radio") setCurrent(index + 1);
    else setCurrent(index);
  });

  function fromLabeller(event) {
    const elt = event.detail && event.detail.elt;
    return elt instanceof Element && elt.closest("#labeller") !== null;
  }

  document.addEventListener("htmx:beforeRequest", (event) => {
    if (!fromLabeller(event)) return;
    busy = true;
    inflight = event.detail.xhr;
  });

  // htmx reads the form when it sends; fill in the time spent just before.
  document.addEventListener("htmx:configRequest", (event) => {
    if (event.detail.elt && event.detail.elt.id === "label-form") {
      event.detail.parameters.time_spent_ms = String(Math.round(performance.now() - shownAt));
    }
  });

  // No new item is coming (refused and not swapped, network error, aborted): the keys typed meanwhile
  // were meant for an item that did not appear, so they are dropped rather than applied to this one.
  document.addEventListener("htmx:afterRequest", (event) => {
    const detail = event.detail || {};
    if (!inflight || detail.xhr !== inflight) return;
    const swapped = document.getElementById("labeller") && !document.getElementById("labeller").sageReady;
    if (!swapped) {
      queued = [];
      ready();
    }
  });

  // The new item is in and htmx has taken over its form: keys may act on it now.
  document.addEventListener("htmx:afterSettle", (event) => {
    if (!(event.target instanceof Element) || event.target.id !== "labeller") return;
    event.target.sageReady = true;
    // An error answer re-shows the same item: queued keys were meant for the next one.
    if (event.target.querySelector("#label-error")) queued = [];
    ready();
  });

  function pageReady() {
    const el = labeller();
    if (el) el.sageReady = true;
    ready();
  }
  // Deferred, this script runs before DOMContentLoaded and so after htmx has registered its own
  // handler for it (htmx processes the page first); loaded late, htmx is already done.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", pageReady);
  else pageReady();
})();
