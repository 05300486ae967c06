// Keyboard shortcuts on a review page: c confirm, 1-5 pick a candidate, a assign,
// n new individual, r reject (asks for the reason first). Ignored while typing in a field.
(function () {
  const form = document.getElementById("review-form");
  if (!form) return;
  const names = (document.getElementById("candidate-names").textContent || "").split("|");
  const individual = document.getElementById("individual");
  const reason = document.getElementById("reason");
  function press(id) { const b = document.getElementById(id); if (b) b.click(); }
  document.addEventListener("keydown", function (e) {
    const t = e.target.tagName;
    if (t === "INPUT" || t === "TEXTAREA" || t === "SELECT" || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "c") press("confirm");
    else if (e.key === "a") press("assign");
    else if (e.key === "n") press("new");
    else if (e.key === "r") { if (reason.value.trim()) press("reject"); else reason.focus(); }
    else if (/^[1-5]$/.test(e.key) && names[+e.key - 1]) { individual.value = names[+e.key - 1]; individual.focus(); }
    else return;
    e.preventDefault();
  });
})();
