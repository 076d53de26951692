// pgjobs dashboard: live progress on the job page and the CSRF header on htmx requests.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  document.addEventListener("htmx:configRequest", function (e) {
    if (meta) { e.detail.headers["X-CSRF-Token"] = meta.content; }
  });
  var job = document.getElementById("job");
  if (!job) { return; }
  var url = job.dataset.progressUrl;
  var done = ["succeeded", "failed", "cancelled"];
  function poll() {
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (d) {
      if (!d.status) { return; }
      var status = document.getElementById("status");
      status.textContent = d.status;
      status.className = "status s-" + d.status;
      document.getElementById("progress").value = d.progress;
      document.getElementById("progress-message").textContent = d.message || "";
      if (done.indexOf(d.status) < 0) { setTimeout(poll, 300); }
    }).catch(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 300);
})();
