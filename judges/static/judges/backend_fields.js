// Judge forms: show a field only while the chosen backend uses it. Which backends use which field
// comes from the server (data-backends on the field's label, from the backend registry); without
// this script every field shows and the server still ignores what the backend does not use.
(function () {
  function sync(form) {
    const select = form.querySelector("select[name=backend]");
    if (!select) return;
    form.querySelectorAll("[data-backends]").forEach(function (el) {
      el.hidden = !el.dataset.backends.split(" ").includes(select.value);
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target.name === "backend" && event.target.form) sync(event.target.form);
  });
  function syncAll() { document.querySelectorAll("form").forEach(sync); }
  document.addEventListener("DOMContentLoaded", syncAll);
  document.addEventListener("htmx:afterSwap", syncAll);
})();
