
(function () {
  "use strict";
  function value(cell, type) {
    var v = cell ? cell.getAttribute("data-v") : null;
    if (v === null || v === "") return null;
    return type === "num" ? parseFloat(v) : v.toLowerCase();
  }
  function sortBy(table, col) {
    var heads = table.tHead.rows[0].cells, th = heads[col];
    var type = th.getAttribute("data-type") || "text";
    var now = th.getAttribute("aria-sort");
    var dir = now === "descending" ? "ascending" : now === "ascending" ? "descending"
            : (th.getAttribute("data-first") || "ascending");
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute("aria-sort");
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    Array.prototype.forEach.call(table.tBodies, function (body) {
      var rows = Array.prototype.filter.call(body.rows, function (r) { return r.classList.contains("entry"); });
      rows.sort(function (a, b) {
        var x = value(a.cells[col], type), y = value(b.cells[col], type);
        if (x === null && y === null) return 0;
        if (x === null) return 1;
        if (y === null) return -1;
        return x < y ? -sign : x > y ? sign : 0;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  }
  function applyFilters() {
    var allowed = {};
    document.querySelectorAll("input.access-filter").forEach(function (box) { allowed[box.value] = box.checked; });
    document.querySelectorAll("table.board").forEach(function (table) {
      var shown = 0;
      table.querySelectorAll("tr.entry").forEach(function (r) {
        var flags = (r.getAttribute("data-access") || "").split(" ").filter(Boolean);
        var ok = flags.every(function (f) { return allowed[f] !== false; });
        r.hidden = !ok;
        if (ok) shown++;
      });
      var count = document.getElementById(table.id + "-count");
      if (count) count.textContent = shown + (shown === 1 ? " row" : " rows") + " shown";
    });
  }
  document.querySelectorAll("table.board, table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, col); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(table, col); });
    });
  });
  document.querySelectorAll("input.access-filter").forEach(function (el) {
    el.addEventListener("change", applyFilters);
  });
  applyFilters();
})();
