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
  var source = null;
  // Each event the job's Server-Sent Events stream pushes (progress, started, completed...)
  // refreshes the status and the bar from the JSON state; without EventSource, or once the
  // stream fails, the page polls that state every 300 ms instead.
  function refresh(again) {
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (d) {
      if (!d.status) { return; }
      var status = document.getElementById("status");
      status.textContent = d.status;
      status.className = "status s-" + d.status;
      document.getElementById("progress").value = d.progress;
      document.getElementById("progress-message").textContent = d.message || "";
      if (done.indexOf(d.status) >= 0 && source) { source.close(); }
      if (again && done.indexOf(d.status) < 0) { setTimeout(poll, 300); }
    }).catch(function () { if (again) { setTimeout(poll, 2000); } });
  }
  function poll() { refresh(true); }
  if (!window.EventSource || !job.dataset.eventsUrl) { setTimeout(poll, 300); return; }
  source = new EventSource(job.dataset.eventsUrl);
  job.dataset.live = "sse";
  source.onmessage = function () { refresh(false); };
  var ended = false;
  ["progress", "started", "retry", "rescued", "waiting", "enqueued", "completed", "failed",
   "cancelled"].forEach(function (name) {
    source.addEventListener(name, function () {
      if (["completed", "failed", "cancelled"].indexOf(name) >= 0) { ended = true; }
      refresh(false);
    });
  });
  source.onerror = function () {
    source.close();  // the stream ends after the job's terminal event, or broke
    if (!ended) {
      job.dataset.live = "poll";
      setTimeout(poll, 300);
    }
  };
})();
