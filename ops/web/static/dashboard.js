// ticketq dashboard: every element with data-refresh is fetched again every two seconds
// (its server-rendered HTML, escaped there) and swapped in when it changed. A session that
// ended reloads the page, which asks to sign in. Forms with data-confirm ask first.
(function () {
  "use strict";
  var PERIOD_MS = 2000;
  var last = new WeakMap();

  function refresh(element) {
    return fetch(element.getAttribute("data-refresh"), {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "text/html" },
    })
      .then(function (response) {
        if (response.status === 401) {
          window.location.reload();
          return null;
        }
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        document.body.classList.remove("stale");
        if (html !== null && html !== last.get(element) && !element.contains(document.activeElement)) {
          element.innerHTML = html;
          last.set(element, html);
        }
      })
      .catch(function () {
        document.body.classList.add("stale");
      });
  }

  function tick() {
    if (!document.hidden) {
      document.querySelectorAll("[data-refresh]").forEach(refresh);
    }
  }

  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });
  window.setInterval(tick, PERIOD_MS);
})();
