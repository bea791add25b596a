// nospy dashboard: live figures on the status page. The page is whole without this script;
// the server's events (GET /events) replace the text of the elements marked data-live.
(function () {
  "use strict";
  var marked = document.querySelectorAll("[data-live]");
  if (!marked.length || !window.EventSource) return;
  var events = new EventSource("/events");
  events.addEventListener("status", function (e) {
    var s;
    try { s = JSON.parse(e.data); } catch (err) { return; }
    marked.forEach(function (el) {
      var k = el.getAttribute("data-live");
      if (Object.prototype.hasOwnProperty.call(s, k)) el.textContent = String(s[k]);
    });
    document.documentElement.setAttribute("data-live-updates", String(
      Number(document.documentElement.getAttribute("data-live-updates") || 0) + 1));
  });
})();
