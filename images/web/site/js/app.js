// Shows whether the API answers (through this front's /api/ proxy). Same-origin requests only.
(function () {
  "use strict";
  var el = document.getElementById("status");
  if (!el) {
    return;
  }
  fetch("/api/health", { cache: "no-store" })
    .then(function (r) {
      el.textContent = r.ok ? "operational" : "degraded";
      el.className = r.ok ? "ok" : "down";
    })
    .catch(function () {
      el.textContent = "unreachable";
      el.className = "down";
    });
})();
