// gunsync dashboard: refreshes <main> every few seconds without reloading the page. It pauses
// while the operator is choosing jobs or typing, so a refresh never throws a selection away.
(function () {
  "use strict";
  var main = document.querySelector("main[data-refresh]");
  if (!main) return;
  var every = Number(main.getAttribute("data-refresh")) || 5000;
  function busy() {
    var active = document.activeElement;
    return document.hidden ||
      main.querySelector("input[type=checkbox]:checked") !== null ||
      (active && main.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName));
  }
  setInterval(function () {
    if (busy()) return;
    fetch(location.href, { headers: { "X-Gunsync-Fragment": "1" }, credentials: "same-origin" })
      .then(function (r) {
        // Sent to sign in (the cookie is gone): show that page itself, not inside this one.
        if (r.redirected) { location.href = r.url; return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) { if (html !== null && !busy()) main.innerHTML = html; })
      .catch(function () { /* the next tick tries again */ });
  }, every);
})();
