// Class page: sort the students table by a column, filter it by text and by a flag. No library, no network.
(function () {
  "use strict";
  var table = document.getElementById("class-table");
  if (!table) { return; }
  var body = table.tBodies[0];
  var text = document.getElementById("filter-text");
  var which = document.getElementById("filter-which");
  var count = document.getElementById("shown-count");
  var template = count ? count.dataset.template : "";

  function apply() {
    var needle = (text && text.value || "").trim().toLowerCase();
    var mode = which ? which.value : "all";
    var shown = 0, rows = Array.from(body.rows);
    rows.forEach(function (row) {
      var ok = !needle || row.textContent.toLowerCase().indexOf(needle) !== -1;
      if (ok && mode !== "all") { ok = row.dataset[mode] === "1"; }
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    if (count) { count.textContent = template.replace("{shown}", shown).replace("{total}", rows.length); }
  }

  table.querySelectorAll("th[data-sort]").forEach(function (th) {
    var button = th.querySelector("button");
    (button || th).addEventListener("click", function () {
      var idx = Array.from(th.parentNode.children).indexOf(th);
      var num = th.dataset.sort === "num";
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th[data-sort]").forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var dir = ascending ? 1 : -1;
      var rows = Array.from(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[idx], y = b.cells[idx];
        if (num) { return dir * (parseFloat(x.dataset.value) - parseFloat(y.dataset.value)); }
        return dir * x.textContent.trim().localeCompare(y.textContent.trim());
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  if (text) { text.addEventListener("input", apply); }
  if (which) { which.addEventListener("change", apply); }
  apply();
})();
