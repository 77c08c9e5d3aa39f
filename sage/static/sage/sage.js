// Behaviour every SAGE page shares: no refused or failed htmx request goes unseen, nothing the user
// typed is swapped away by an error, and an error the server rendered is brought into view.
//
// htmx drops 4xx/5xx answers without a word. Here an error answer is either
//  - a fragment the view re-rendered for the same target (a form with its errors in place): swapped,
//    because it carries what the user typed back; or
//  - anything else (a 403 page, a plain-text refusal, a 500, a login page after the session ended):
//    not swapped, so the form keeps its text, and its message shown in a toast in the viewport.
// Network failures and timeouts get a toast too.
(function () {
  "use strict";

  const ERROR_SELECTOR = [
    '[role="alert"]', ".errorlist", '[aria-invalid="true"]', ".sage-message-error",
  ].join(", ");
  const MAX_TOASTS = 4;

  // --- toasts --------------------------------------------------------------------------------------

  function toastRegion() {
    let region = document.getElementById("sage-toasts");
    if (!region) {  // a page that does not extend base.html still gets its errors shown
      region = document.createElement("div");
      region.id = "sage-toasts";
      region.className = "sage-toasts";
      region.setAttribute("aria-live", "assertive");
      document.body.appendChild(region);
    }
    return region;
  }

  // `source` is the element whose request failed; the next successful answer to any element whose
  // request failed the same way clears the toast.
  function showToast(title, message, source) {
    const region = toastRegion();
    const key = `${title}\n${message}`;
    // A polling element fails every second, a live preview on every pause: show a failure once, not
    // once per request, and leave that toast where it is.
    const same = Array.from(region.children).find((old) => old.dataset.key === key);
    if (same) {
      if (source) same.sageSources.add(source);
      return same;
    }
    const toast = document.createElement("div");
    toast.className = "sage-toast";
    toast.dataset.key = key;
    const heading = document.createElement("strong");
    heading.textContent = title;
    const text = document.createElement("p");
    text.className = "sage-toast-message";
    text.textContent = message;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "sage-toast-close";
    close.setAttribute("aria-label", "Dismiss this message");
    close.textContent = "×";
    close.addEventListener("click", () => toast.remove());
    toast.append(heading, text, close);
    toast.sageSources = new Set(source ? [source] : []);
    region.appendChild(toast);
    while (region.children.length > MAX_TOASTS) region.firstElementChild.remove();
    return toast;
  }

  function clearToastsFrom(source) {
    const region = document.getElementById("sage-toasts");
    if (!region) return;
    for (const toast of Array.from(region.children)) {
      if (toast.sageSources && toast.sageSources.has(source)) toast.remove();
    }
  }

  // --- reading an error answer ---------------------------------------------------------------------

  function squash(text) { return (text || "").replace(/\s+/g, " ").trim(); }

  function clip(text, limit = 400) { return text.length > limit ? `${text.slice(0, limit - 1)}…` : text; }

  function isFullDocument(body) { return /<html[\s>]/i.test(body.slice(0, 2000)); }

  // The sentence that says why: the element a SAGE error page marks with data-sage-message, a JSON
  // error's message, a plain-text body, or the heading of someone else's error page.
  function responseMessage(xhr) {
    const type = (xhr.getResponseHeader("Content-Type") || "").toLowerCase();
    const body = typeof xhr.responseText === "string" ? xhr.responseText : "";
    if (type.includes("json")) {
      try {
        const data = JSON.parse(body);
        const candidates = [data && data.error && data.error.message, data && data.message,
          data && data.detail, data && data.error];
        const found = candidates.find((c) => typeof c === "string" && c.trim());
        if (found) return clip(squash(found));
      } catch (e) { /* not JSON after all: fall through to the status line */ }
      return "";
    }
    if (type.includes("html") || /^\s*</.test(body)) {
      const doc = new DOMParser().parseFromString(body, "text/html");
      const marked = doc.querySelector("[data-sage-message]");
      if (marked) return clip(squash(marked.textContent));
      if (isFullDocument(body)) {
        const heading = doc.querySelector("h1");
        const para = doc.querySelector("main p, body p");
        return clip(squash([heading && heading.textContent, para && para.textContent].filter(Boolean).join(" — ")) ||
          squash(doc.title));
      }
      return clip(squash(doc.body ? doc.body.textContent : ""));
    }
    return clip(squash(body));
  }

  function statusTitle(xhr, verb) {
    const writes = verb && verb.toLowerCase() !== "get";
    if (xhr.status >= 500) {
      return writes ? `Server error (${xhr.status}): the change may not have been saved`
        : `Server error (${xhr.status})`;
    }
    const what = { 400: "Not accepted", 403: "Not allowed", 404: "Not found", 409: "Conflict",
      413: "Too large", 422: "Not accepted", 429: "Too many requests" }[xhr.status] || "Refused";
    return `${what} (${xhr.status})${writes ? ": nothing was saved" : ""}`;
  }

  // The element that sent the request (htmx sets detail.elt to whatever the event fired on: the
  // target for beforeSwap, the sender for afterRequest).
  function sourceOf(event) {
    const detail = event.detail || {};
    return (detail.requestConfig && detail.requestConfig.elt) || detail.elt || event.target;
  }

  function verbOf(detail) {
    return (detail.requestConfig && detail.requestConfig.verb) || "get";
  }

  function loginPath() {
    return document.body.dataset.loginUrl || "/accounts/login/";
  }

  // After the session ends, the server redirects to the login page, the browser follows, and htmx
  // would swap a whole login page over the form as a success.
  function landedOnLogin(xhr, detail) {
    if (!xhr.responseURL) return false;
    const landed = new URL(xhr.responseURL, window.location.href).pathname;
    const asked = detail.pathInfo && detail.pathInfo.requestPath
      ? new URL(detail.pathInfo.requestPath, window.location.href).pathname : "";
    return landed === loginPath() && asked !== loginPath();
  }

  // A 4xx fragment rendered for this very target (e.g. the policy editor with its errors) carries the
  // user's input back, so it is meant to be swapped; a page or a bare message is not.
  function isFragmentForTarget(xhr, target) {
    const type = (xhr.getResponseHeader("Content-Type") || "").toLowerCase();
    const body = typeof xhr.responseText === "string" ? xhr.responseText : "";
    if (!type.includes("html") || isFullDocument(body) || !target || !target.id) return false;
    const template = document.createElement("template");
    template.innerHTML = body;
    return template.content.querySelector(`#${CSS.escape(target.id)}`) !== null;
  }

  const KEEP = "Your input is still on the page.";

  document.addEventListener("htmx:beforeSwap", (event) => {
    const detail = event.detail;
    const xhr = detail.xhr;
    const source = sourceOf(event);
    if (xhr.status < 400 && landedOnLogin(xhr, detail)) {
      detail.shouldSwap = false;
      detail.isError = true;
      showToast("Your session has ended",
        `Log in again in another tab, then retry here. ${KEEP}`, source);
      return;
    }
    if (xhr.status < 400) return;
    if (xhr.status < 500 && isFragmentForTarget(xhr, detail.target)) {
      detail.shouldSwap = true;
      detail.isError = false;
      return;
    }
    detail.shouldSwap = false;
    detail.isError = true;
    const message = responseMessage(xhr);
    showToast(statusTitle(xhr, verbOf(detail)), message ? `${message} ${KEEP}` : KEEP, source);
  });

  function networkFailure(event, title) {
    const detail = event.detail || {};
    const writes = verbOf(detail).toLowerCase() !== "get";
    showToast(title, `${writes ? "Nothing was saved. " : ""}Check the connection and try again. ${KEEP}`,
      sourceOf(event));
  }
  document.addEventListener("htmx:sendError", (event) => networkFailure(event, "Could not reach the server"));
  document.addEventListener("htmx:timeout", (event) => networkFailure(event, "The server did not answer in time"));
  document.addEventListener("htmx:swapError", (event) => {
    showToast("The page could not show the answer", `Reload the page to see the current state. ${KEEP}`,
      sourceOf(event));
  });

  document.addEventListener("htmx:afterRequest", (event) => {
    const detail = event.detail || {};
    if (detail.successful && detail.xhr && detail.xhr.status < 400) clearToastsFrom(sourceOf(event));
  });

  // --- errors into view ----------------------------------------------------------------------------

  function isShown(el) { return el.getClientRects().length > 0; }

  function firstError(root) {
    if (!root || !root.querySelectorAll) return null;
    const candidates = root.matches && root.matches(ERROR_SELECTOR) ? [root] : [];
    candidates.push(...root.querySelectorAll(ERROR_SELECTOR));
    return candidates.find((el) => isShown(el) && !el.closest("#sage-toasts")) || null;
  }

  // Scroll the first error into view and move focus to it, so neither the eye nor a screen reader has
  // to hunt for it (the traffic import error sits below thousands of pixels of tables).
  function revealFirstError(root) {
    const el = firstError(root);
    if (!el) return;
    const box = el.getBoundingClientRect();
    if (box.top < 0 || box.bottom > window.innerHeight) el.scrollIntoView({ block: "center" });
    if (!el.matches("a[href], button, input, select, textarea, [tabindex]")) el.setAttribute("tabindex", "-1");
    el.focus({ preventScroll: true });
  }

  // Only after something the user sent (a submit, a click), never after a poll that swaps in a banner
  // every second or a live preview refreshed while they type: focus must not leave the field in use.
  document.addEventListener("htmx:afterSettle", (event) => {
    const detail = event.detail || {};
    const trigger = detail.requestConfig && detail.requestConfig.triggeringEvent;
    const whileTyping = trigger && ["input", "keyup", "keydown", "change", "search"].includes(trigger.type);
    const sent = verbOf(detail).toLowerCase() !== "get" || (detail.xhr && detail.xhr.status >= 400);
    const active = document.activeElement;
    const typingElsewhere = active && active.matches && active.matches("textarea, input, select, [contenteditable]") &&
      !event.target.contains(active);
    if (sent && !whileTyping && !typingElsewhere && event.target.isConnected) revealFirstError(event.target);
  });

  const revealOnLoad = () => revealFirstError(document.querySelector("main") || document.body);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", revealOnLoad);
  else revealOnLoad();

  // --- behaviour keyed on data attributes (no inline handlers: the CSP forbids them) ---------------

  // <select data-autosubmit> (a filter): choosing an option submits its form. requestSubmit fires the
  // submit event, so an htmx-boosted or validated form behaves as if its button were pressed.
  document.addEventListener("change", (event) => {
    const field = event.target;
    if (!(field instanceof Element) || !field.matches("[data-autosubmit]") || !field.form) return;
    if (typeof field.form.requestSubmit === "function") field.form.requestSubmit();
    else field.form.submit();
  });

  // <a data-history-back href="/">: back to the previous page when there is one (an error page's
  // "Go back"); opened on its own, the link's href.
  document.addEventListener("click", (event) => {
    const link = event.target instanceof Element && event.target.closest("a[data-history-back]");
    if (!link || window.history.length < 2) return;
    event.preventDefault();
    window.history.back();
  });

  window.sage = Object.assign(window.sage || {}, { showToast, revealFirstError });
})();
