// Small behaviours that htmx does not cover; no inline scripts anywhere.
document.addEventListener("click", function (event) {
  var remove = event.target.closest("[data-remove-row]");
  if (remove) {
    event.preventDefault();
    remove.closest("[data-row]").remove();
  }
});
