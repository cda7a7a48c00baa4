// Follows a running validation run on its page: polls the progress endpoint, updates the fields,
// and reloads the page (with the report) once the run ends. Without JavaScript the page refreshes itself.
(function () {
  "use strict";
  var box = document.getElementById("run-progress");
  if (!box || box.dataset.finished === "true") { return; }
  var bar = box.querySelector("progress");
  function update() {
    fetch(box.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        box.querySelectorAll("[data-field]").forEach(function (el) {
          if (el.dataset.field in data) { el.textContent = data[el.dataset.field]; }
        });
        if (bar) { bar.value = data.percent; bar.textContent = data.percent + "%"; }
        if (data.finished) { window.location.reload(); } else { window.setTimeout(update, 3000); }
      })
      .catch(function () { window.setTimeout(update, 10000); });
  }
  window.setTimeout(update, 3000);
})();
