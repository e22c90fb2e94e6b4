// Keyboard-first review. Plain script, no dependencies; loaded from /static (CSP: no inline script).
(function () {
  "use strict";
  var page = document.body.dataset.page;
  var help = document.getElementById("help");
  var busy = false;

  function toggleHelp(show) {
    if (!help) return;
    help.hidden = show === undefined ? !help.hidden : !show;
  }
  var helpButton = document.getElementById("help-toggle");
  if (helpButton) helpButton.addEventListener("click", function () { toggleHelp(); });

  function typing(target) {
    if (!target) return false;
    var tag = target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
  }

  function submit(form) {
    if (!form || busy) return;
    busy = true;
    form.requestSubmit();
  }

  function go(link) {
    if (link && link.href && !busy) {
      busy = true;
      window.location.assign(link.href);
    }
  }

  // ---- queue page ----
  var rows = Array.prototype.slice.call(document.querySelectorAll("#queue tbody tr[data-rid]"));
  var cursor = 0;
  function showCursor() {
    rows.forEach(function (row, i) { row.classList.toggle("current", i === cursor); });
    if (rows[cursor]) rows[cursor].scrollIntoView({ block: "nearest" });
  }
  if (page === "queue" && rows.length) showCursor();
  rows.forEach(function (row, i) {
    row.addEventListener("click", function (e) {
      if (e.target.tagName === "INPUT" || e.target.tagName === "A") return;
      cursor = i;
      showCursor();
    });
  });

  // Bulk answers name what they record ("Mark 7 selected PASS") and ask once before posting.
  var bulk = document.getElementById("bulk");
  var ask = document.getElementById("bulk-ask");
  function selected() {
    return document.querySelectorAll("#queue input[type=checkbox]:checked").length;
  }
  function showSelected() {
    var n = selected();
    Array.prototype.forEach.call(document.querySelectorAll("#bulkbar button"), function (b) {
      b.querySelector(".n").textContent = String(n);
      b.disabled = n === 0;
    });
  }
  function question() {
    var final = document.getElementById("bulk-final").value;
    var n = document.getElementById("bulk-count").value;
    var what = final;
    if (final === "FAIL") what += " \u00b7 " + document.getElementById("bulk-defect-type").value;
    var text = "Record " + what + " for " + n + " selected inspection" + (n === "1" ? "" : "s") + "?";
    document.getElementById("bulk-question").textContent = text;
    document.getElementById("bulk-record").textContent = "Record " + final + " for " + n;
  }
  function askBulk(final) {
    var n = selected();
    if (!ask || n === 0) return;
    document.getElementById("bulk-final").value = final;
    document.getElementById("bulk-count").value = String(n);
    document.getElementById("bulk-defect").hidden = final !== "FAIL";
    ask.hidden = false;
    question();
    if (final === "FAIL") document.getElementById("bulk-defect-type").focus();
    else document.getElementById("bulk-record").focus();
  }
  function cancelAsk() {
    if (ask && !ask.hidden) { ask.hidden = true; return true; }
    return false;
  }
  if (bulk) {
    Array.prototype.forEach.call(document.querySelectorAll("#bulkbar button"), function (b) {
      b.addEventListener("click", function () { askBulk(b.dataset.answer); });
    });
    var cancel = document.getElementById("bulk-cancel");
    if (cancel) cancel.addEventListener("click", cancelAsk);
    var defectType = document.getElementById("bulk-defect-type");
    if (defectType) defectType.addEventListener("change", question);
    Array.prototype.forEach.call(document.querySelectorAll("#queue input[type=checkbox]"), function (box) {
      box.addEventListener("change", function () {
        box.closest("tr").classList.toggle("selected", box.checked);
        if (ask) ask.hidden = true;
        showSelected();
      });
    });
  }

  function queueKey(e) {
    var row = rows[cursor];
    switch (e.key) {
      case "j": if (cursor < rows.length - 1) { cursor++; showCursor(); } return true;
      case "k": if (cursor > 0) { cursor--; showCursor(); } return true;
      case "Enter": case "o": if (row) { busy = false; go({ href: row.dataset.href }); } return true;
      case "x":
        if (row) {
          var box = row.querySelector("input[type=checkbox]");
          box.checked = !box.checked;
          row.classList.toggle("selected", box.checked);
          if (ask) ask.hidden = true;
          showSelected();
        }
        return true;
      case "P": askBulk("PASS"); return true;
      case "F": askBulk("FAIL"); return true;
      case "u":
        if (row) {
          var form = document.getElementById("unmark");
          form.action = "/inspections/" + encodeURIComponent(row.dataset.rid) + "/unreviewed";
          submit(form);
        }
        return true;
    }
    return false;
  }

  // ---- detail page ----
  var failForm = document.getElementById("form-fail");
  function pickDefect(n) {
    if (!failForm) return;
    var choices = failForm.querySelectorAll("input[name=defect_type]");
    if (n > choices.length) return;
    choices[n - 1].checked = true;
    armFail();
  }
  function armFail() {
    if (!failForm) return;
    failForm.hidden = false;
    var comment = document.getElementById("comment");
    // preventScroll: the photo stays where it is while the FAIL panel opens.
    if (failForm.querySelector("input[name=defect_type]:checked")) {
      comment.focus({ preventScroll: true });
    } else {
      var first = failForm.querySelector("input[name=defect_type]");
      if (first) first.focus({ preventScroll: true });
    }
  }
  var armButton = document.getElementById("arm-fail");
  if (armButton) armButton.addEventListener("click", armFail);

  function submitEnabled(form) {
    var button = form && form.querySelector("button[type=submit]");
    if (button && !button.disabled) submit(form);
  }

  function detailKey(e) {
    switch (e.key) {
      case "j": go(document.getElementById("next")); return true;
      case "k": go(document.getElementById("prev")); return true;
      case "y": submitEnabled(document.getElementById("form-confirm")); return true;
      case "p": submitEnabled(document.getElementById("form-pass")); return true;
      case "f": armFail(); return true;
      case "u": submitEnabled(document.getElementById("form-unreviewed")); return true;
    }
    if (/^[1-9]$/.test(e.key)) { pickDefect(Number(e.key)); return true; }
    return false;
  }

  // In the FAIL panel, a digit picks the defect even while a radio button has focus.
  if (failForm) {
    failForm.addEventListener("keydown", function (e) {
      if (e.target.name === "defect_type" && /^[1-9]$/.test(e.key)) {
        e.preventDefault();
        pickDefect(Number(e.key));
      } else if (e.target.name === "defect_type" && e.key === "Enter") {
        e.preventDefault();
        armFail();
      }
    });
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "Escape") {
      toggleHelp(false);
      cancelAsk();
      if (document.activeElement) document.activeElement.blur();
      return;
    }
    if (typing(e.target)) return;
    var handled = false;
    if (e.key === "?") { toggleHelp(); handled = true; }
    else if (e.key === "/") {
      var search = document.getElementById("search");
      if (search) { search.focus(); search.select(); handled = true; }
    }
    else if (page === "queue") handled = queueKey(e);
    else if (page === "detail") handled = detailKey(e);
    if (handled) e.preventDefault();
  });

  // ---- photos: wheel zoom, drag pan, double-click reset ----
  Array.prototype.forEach.call(document.querySelectorAll("figure.zoom img"), function (img) {
    var scale = 1, x = 0, y = 0, drag = null;
    function apply() { img.style.transform = "translate(" + x + "px," + y + "px) scale(" + scale + ")"; }
    img.addEventListener("wheel", function (e) {
      e.preventDefault();
      var rect = img.getBoundingClientRect();
      var next = Math.min(12, Math.max(1, scale * Math.pow(1.0015, -e.deltaY)));
      var px = e.clientX - rect.left, py = e.clientY - rect.top;
      x -= (px / scale) * (next - scale);
      y -= (py / scale) * (next - scale);
      scale = next;
      if (scale === 1) { x = 0; y = 0; }
      apply();
    }, { passive: false });
    img.addEventListener("pointerdown", function (e) {
      drag = { x: e.clientX - x, y: e.clientY - y };
      img.setPointerCapture(e.pointerId);
    });
    img.addEventListener("pointermove", function (e) {
      if (!drag) return;
      x = e.clientX - drag.x;
      y = e.clientY - drag.y;
      apply();
    });
    img.addEventListener("pointerup", function () { drag = null; });
    img.addEventListener("dblclick", function () { scale = 1; x = 0; y = 0; apply(); });
  });

  // ---- numbers page: the what-if threshold re-renders on change ----
  var threshold = document.getElementById("threshold");
  if (threshold) threshold.addEventListener("change", function () { submit(threshold.form); });
})();
