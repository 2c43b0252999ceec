// The overview's charts (uPlot) and its refresh: every 30 seconds the figures are read again
// from /dashboard/overview.json and the numbers and charts redrawn in place.
"use strict";
(function () {
  var REFRESH_MS = 30000;
  var charts = {};
  var format = new Intl.NumberFormat("en");

  function series(points) {
    return [
      points.map(function (p) { return p.start; }),
      points.map(function (p) { return p.messages; }),
      points.map(function (p) { return p.delivered; }),
      points.map(function (p) { return p.failed; })
    ];
  }

  function draw(id, points) {
    var element = document.getElementById(id);
    if (!element || typeof uPlot === "undefined") { return; }
    var data = series(points);
    if (charts[id]) { charts[id].setData(data); return; }
    var width = Math.max(element.clientWidth, 280);
    charts[id] = new uPlot({
      width: width,
      height: 220,
      series: [
        {},
        { label: "Sent", stroke: "#1d4ed8", width: 2 },
        { label: "Delivered", stroke: "#047857", width: 2 },
        { label: "Failed", stroke: "#b91c1c", width: 2 }
      ],
      axes: [{}, { values: function (u, ticks) { return ticks.map(function (t) { return format.format(t); }); } }]
    }, data, element);
  }

  function show(figures) {
    document.querySelectorAll("[data-figure]").forEach(function (element) {
      var value = figures.figures[element.getAttribute("data-figure")];
      if (value !== undefined) { element.textContent = value; }
    });
    draw("chart-hourly", figures.hourly);
    draw("chart-daily", figures.daily);
    var stamp = document.getElementById("refreshed");
    if (stamp) { stamp.textContent = new Date().toLocaleTimeString(); }
  }

  function refresh() {
    fetch("/dashboard/overview.json", { credentials: "same-origin" })
      .then(function (response) {
        if (response.redirected || !response.ok) { throw new Error(response.status); }
        return response.json();
      })
      .then(show)
      .catch(function () {
        var stamp = document.getElementById("refreshed");
        if (stamp) { stamp.textContent = "not refreshed (" + new Date().toLocaleTimeString() + ")"; }
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    refresh();
    window.setInterval(refresh, REFRESH_MS);
    window.addEventListener("resize", function () {
      Object.keys(charts).forEach(function (id) {
        var element = document.getElementById(id);
        charts[id].setSize({ width: Math.max(element.clientWidth, 280), height: 220 });
      });
    });
  });
})();
