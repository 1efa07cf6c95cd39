"use strict";
// affgd report: sort the figures table, order the grids by a map's KLD, enlarge a tile.
(function () {
  var slice = function (xs) { return Array.prototype.slice.call(xs); };

  // 1. The figures table sorts by any column; NaN figures stay last either way.
  var body = document.getElementById("classes");
  var heads = slice(document.querySelectorAll("#summary th[data-col]"));
  heads.forEach(function (th) {
    var sort = function () {
      var col = +th.getAttribute("data-col");
      var text = th.getAttribute("data-type") === "text";
      var asc = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var rows = slice(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
        if (text) { return (asc ? 1 : -1) * (x < y ? -1 : x > y ? 1 : 0); }
        x = parseFloat(x); y = parseFloat(y);
        if (isNaN(x) || isNaN(y)) { return (isNaN(x) ? 1 : 0) - (isNaN(y) ? 1 : 0); }
        return asc ? x - y : y - x;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    };
    th.tabIndex = 0;
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
  });

  // 2. The grids hold the images worst-first by the chosen map's KLD (NaN counts as worst; ties
  // keep the evaluation's order), and the top section the worst N overall.
  var kld = function (t, m) { var v = parseFloat(t.getAttribute("data-kld-" + m)); return isNaN(v) ? Infinity : v; };
  var worstFirst = function (m) {
    return function (a, b) {
      var ka = kld(a, m), kb = kld(b, m);
      if (ka !== kb) { return ka > kb ? -1 : 1; }
      return +a.getAttribute("data-i") - +b.getAttribute("data-i");
    };
  };
  var order = function (m) {
    var all = [];
    slice(document.querySelectorAll(".cls .grid")).forEach(function (g) {
      var ts = slice(g.children);
      ts.sort(worstFirst(m));
      ts.forEach(function (t) { g.appendChild(t); });
      all = all.concat(ts);
    });
    var worst = document.getElementById("worst-grid");
    if (worst) {
      all.sort(worstFirst(m));
      worst.textContent = "";
      all.slice(0, +worst.getAttribute("data-n")).forEach(function (t) { worst.appendChild(t.cloneNode(true)); });
    }
    slice(document.querySelectorAll(".mapname")).forEach(function (e) { e.textContent = m; });
    document.body.setAttribute("data-map", m);
  };
  slice(document.querySelectorAll("#order input[name=map]")).forEach(function (r) {
    r.addEventListener("change", function () { if (r.checked) { order(r.value); } });
  });

  // 3. A click on a tile shows its large strip and figures; a click or Esc closes it.
  var lb = document.getElementById("lb");
  var lbImg = lb.querySelector("img"), lbCap = lb.querySelector(".cap");
  var close = function () { lb.hidden = true; lbImg.removeAttribute("src"); };
  document.addEventListener("click", function (e) {
    if (!lb.hidden) { close(); return; }
    var t = e.target.closest ? e.target.closest(".tile") : null;
    if (!t) { return; }
    lbImg.src = t.getAttribute("data-large");
    lbImg.alt = t.querySelector("img").alt;
    lbCap.innerHTML = t.querySelector("figcaption").innerHTML;
    lb.hidden = false;
  });
  document.addEventListener("keydown", function (e) { if (e.key === "Escape" && !lb.hidden) { close(); } });
})();
