// Tether's stats page: the live part is fetched again every second; the filter narrows the
// rows as one types. Without this script the page is complete, and ?filter= filters it.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var box = document.getElementById("filter");
  function apply() {
    var q = box.value.trim().toLowerCase();
    var groups = live.querySelectorAll("tbody.svc");
    for (var i = 0; i < groups.length; i++) {
      var g = groups[i];
      var name = g.getAttribute("data-search");
      var all = !q || name.indexOf(q) >= 0;
      var rows = g.querySelectorAll("tr.srv");
      var any = all;
      for (var j = 0; j < rows.length; j++) {
        var m = all || rows[j].getAttribute("data-search").indexOf(q) >= 0;
        rows[j].hidden = !m;
        any = any || m;
      }
      g.hidden = !any;
    }
  }
  box.addEventListener("input", apply);
  function tick() {
    fetch("?fragment=1", { cache: "no-store", credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (t) { if (t !== null) { live.innerHTML = t; apply(); } })
      .catch(function () {})
      .then(function () { setTimeout(tick, 1000); });
  }
  apply();
  setTimeout(tick, 1000);
})();
