// Render every <div data-vega-spec="id-of-json-script"> with vega-embed; re-run after htmx swaps.
// Specs are Vega-Lite JSON emitted by Django's json_script, so no data is ever interpolated into JS.
(function () {
  function render(root) {
    root.querySelectorAll("[data-vega-spec]").forEach(function (el) {
      if (el.dataset.rendered) return;
      var source = document.getElementById(el.dataset.vegaSpec);
      if (!source) return;
      el.dataset.rendered = "1";
      var spec = JSON.parse(source.textContent);
      // Under the Content-Security-Policy: `ast: true` evaluates Vega expressions with the interpreter
      // vega-embed bundles (vega-interpreter) instead of compiling them with `new Function`, and no
      // <style> is injected (vendor/vega-embed.css, linked by _charts_head.html, carries those rules).
      vegaEmbed(el, spec, {actions: {export: true, source: false, compiled: false, editor: false},
                           renderer: "svg", ast: true, defaultStyle: false, forceActionsMenu: true,
                           tooltip: {disableDefaultStyle: true}}).then(function (result) {
        var link = el.dataset.clickBase;
        if (!link) return;
        // Clicking a heatmap cell drills down to its items.
        result.view.addEventListener("click", function (event, item) {
          if (item && item.datum && item.datum.a !== undefined) {
            window.location = link + "&a=" + item.datum.a + "&b=" + item.datum.b;
          }
        });
      }).catch(function (err) { el.textContent = "Chart failed to render: " + err; });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { render(document); });
  document.addEventListener("htmx:afterSettle", function (e) { render(e.target); });
})();
