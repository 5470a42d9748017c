// Small behaviours that htmx does not cover; no inline scripts anywhere.
(function () {
  "use strict";

  // Remove a row of a list (failure conditions, extra parameters) in place.
  document.addEventListener("click", function (event) {
    var remove = event.target.closest("[data-remove-row]");
    if (remove) {
      event.preventDefault();
      remove.closest("[data-row]").remove();
    }
  });

  // Login opens the provider in a popup. Where popups are blocked, the same window goes; in a
  // portal's frame the whole portal window goes (providers refuse to be framed), and comes back
  // to the portal page, which shows this frame again.
  document.addEventListener("click", function (event) {
    var link = event.target.closest("[data-login-popup]");
    if (!link) return;
    event.preventDefault();
    var url = new URL(link.href, location.href);
    url.searchParams.set("popup", "1");
    if (window.open(url.toString(), "apiauth-login", "popup,width=560,height=720")) return;
    url.searchParams.delete("popup");
    if (window.top === window) {
      url.searchParams.set("next", location.pathname + location.search);
      location.assign(url.toString());
      return;
    }
    url.searchParams.set("next", portalPage());
    window.top.location.href = url.toString();
  });

  // The portal page that frames this one: readable on the same origin, else the Referer it sent
  // when it loaded the frame (later pages of the frame have our own pages as referrer). Where
  // the browser refuses storage to frames, the Login comes back to apiauth's own pane.
  var PORTAL_PAGE_KEY = "apiauth:portal-page";
  function portalPage() {
    try {
      return window.top.location.href;
    } catch (error) {
      try {
        return sessionStorage.getItem(PORTAL_PAGE_KEY) || "";
      } catch (storageError) {
        return "";
      }
    }
  }
  if (window.top !== window && document.referrer && new URL(document.referrer).origin !== location.origin) {
    try {
      sessionStorage.setItem(PORTAL_PAGE_KEY, document.referrer);
    } catch (error) {
      // No storage in this frame: see portalPage.
    }
  }

  // The popup's callback page tells the page that opened it, then closes itself.
  document.addEventListener("DOMContentLoaded", function () {
    var result = document.getElementById("login-result");
    if (!result || !window.opener || window.opener.closed) return;
    try {
      window.opener.postMessage(
        { type: "apiauth:login", authenticatorId: result.dataset.authenticatorId },
        location.origin
      );
    } catch (error) {
      return;
    }
    if (result.dataset.succeeded === "true") window.close();
  });

  // The page that opened the popup shows the new status without a reload.
  window.addEventListener("message", function (event) {
    if (event.origin !== location.origin || !event.data || event.data.type !== "apiauth:login") return;
    if (document.querySelector("[data-reload-on-login]")) {
      location.reload();
    } else if (window.htmx) {
      window.htmx.trigger(document.body, "apiauth:refresh");
    }
  });
})();
