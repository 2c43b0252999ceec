// The conversion page's bar chart (uPlot): each group's conversion in percent, read from the
// chart element's data attributes, which the server wrote beside the table of the same figures.
"use strict";
(function () {
  function draw() {
    var element = document.getElementById("chart-conversion");
    if (!element || typeof uPlot === "undefined") { return null; }
    var labels = JSON.parse(element.getAttribute("data-labels") || "[]");
    var rates = JSON.parse(element.getAttribute("data-rates") || "[]");
    var xs = labels.map(function (_, index) { return index; });
    return new uPlot({
      width: Math.max(element.clientWidth, 280),
      height: 240,
      legend: { show: false },
      scales: {
        x: { time: false, range: [-0.5, Math.max(labels.length - 0.5, 0.5)] },
        y: { range: [0, 100] }
      },
      series: [
        {},
        {
          label: "Conversion (%)",
          stroke: "#1d4ed8",
          fill: "rgba(29, 78, 216, 0.6)",
          width: 1,
          points: { show: false },
          paths: uPlot.paths.bars({ size: [0.6, 80] })
        }
      ],
      axes: [
        {
          splits: function () { return xs; },
          values: function (u, ticks) { return ticks.map(function (t) { return labels[t] || ""; }); }
        },
        { values: function (u, ticks) { return ticks.map(function (t) { return t + "%"; }); } }
      ]
    }, [xs, rates], element);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var chart = draw();
    if (!chart) { return; }
    window.addEventListener("resize", function () {
      var element = document.getElementById("chart-conversion");
      chart.setSize({ width: Math.max(element.clientWidth, 280), height: 240 });
    });
  });
})();
