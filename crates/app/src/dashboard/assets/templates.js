// The templates page's live preview: as the variables change, the text, its encoding,
// characters and segments are rendered again by the service (GET /dashboard/templates/preview).
"use strict";
(function () {
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("preview-form");
    if (!form) { return; }
    var timer = null;
    function update() {
      var query = new URLSearchParams(new FormData(form));
      query.set("format", "json");
      fetch("/dashboard/templates/preview?" + query.toString(), { credentials: "same-origin" })
        .then(function (response) { return response.json(); })
        .then(function (preview) {
          ["text", "encoding", "characters", "segments", "problem"].forEach(function (name) {
            var element = document.getElementById("preview-" + name);
            if (element) { element.textContent = preview[name] === undefined ? "" : preview[name]; }
          });
        })
        .catch(function () {});
    }
    form.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(update, 250);
    });
  });
})();
