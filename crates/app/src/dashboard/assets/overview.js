// The overview's charts (uPlot): messages per hour and per day, verifications per hour with
// their conversion rate. And its refresh: every 30 seconds the figures are read again
// from /dashboard/overview.json and the numbers and charts redrawn in place.
"use strict";
(function () {
  var REFRESH_MS = 30000;
  var charts = {};
  var format = new Intl.NumberFormat("en");

  var counts = { values: function (u, ticks) { return ticks.map(function (t) { return format.format(t); }); } };

  // What each chart draws: the messages' series, or the verifications' with their
  // conversion rate on a scale of its own (percent, on the right).
  var KINDS = {
    messages: {
      fields: ["messages", "delivered", "failed"],
      series: [
        { label: "Sent", stroke: "#1d4ed8", width: 2 },
        { label: "Delivered", stroke: "#047857", width: 2 },
        { label: "Failed", stroke: "#b91c1c", width: 2 }
      ],
      axes: [{}, counts]
    },
    conversion: {
      fields: ["codes_sent", "approved", "conversion"],
      series: [
        { label: "Codes sent", stroke: "#1d4ed8", width: 2 },
        { label: "Approved", stroke: "#047857", width: 2 },
        { label: "Conversion %", stroke: "#7c3aed", width: 2, scale: "%" }
      ],
      axes: [{}, counts, { scale: "%", side: 1, grid: { show: false } }]
    }
  };

  function series(points, kind) {
    return [points.map(function (p) { return p.start; })].concat(
      KINDS[kind].fields.map(function (field) {
        return points.map(function (p) { return p[field]; });
      }));
  }

  function draw(id, points, kind) {
    kind = kind || "messages";
    var element = document.getElementById(id);
    if (!element || typeof uPlot === "undefined") { return; }
    var data = series(points, kind);
    if (charts[id]) { charts[id].setData(data); return; }
    var width = Math.max(element.clientWidth, 280);
    charts[id] = new uPlot({
      width: width,
      height: 220,
      scales: { "%": { range: [0, 100] } },
      series: [{}].concat(KINDS[kind].series),
      axes: KINDS[kind].axes
    }, data, element);
  }

  function show(figures) {
    document.querySelectorAll("[data-figure]").forEach(function (element) {
      var value = figures.figures[element.getAttribute("data-figure")];
      if (value !== undefined) { element.textContent = value; }
    });
    draw("chart-hourly", figures.hourly);
    draw("chart-daily", figures.daily);
    draw("chart-weekly-hourly", figures.weekly_hourly);
    draw("chart-conversion", figures.weekly_hourly, "conversion");
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
