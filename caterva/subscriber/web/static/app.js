// caterva's web page: live updates, the only script the page runs (no inline script: the
// Content-Security-Policy forbids it). The server renders everything; this script listens to
// /ui/events and, when what the page shows changed, fetches the page's live region again
// (the server renders it alone for the X-Caterva-Fragment header) or, on a dataset's page,
// shows the "changed" badge with its refresh link.
"use strict";

(function () {
  const body = document.body;
  const live = body.dataset.live;
  const state = document.getElementById("link-state");
  if (!live || !window.EventSource) {
    return;
  }
  const root = body.dataset.root;
  const path = body.dataset.path;
  const ROOT_EVENTS = ["create", "update", "delete", "resync", "follow", "unfollow", "source", "offer"];
  let timer = null;
  let refreshes = 0;

  function refresh() {
    clearTimeout(timer);
    timer = setTimeout(async function () {
      const region = document.getElementById("live");
      const answer = await fetch(location.href, {
        headers: { "X-Caterva-Fragment": "live" },
        credentials: "same-origin",
      });
      if (answer.status === 401 || answer.redirected) {
        location.reload(); // logged out meanwhile: the server sends the login page
        return;
      }
      if (answer.ok) {
        region.innerHTML = await answer.text(); // our own server's escaped HTML
        refreshes += 1;
        body.dataset.refreshes = String(refreshes);
      }
    }, 150);
  }

  function changed() {
    const badge = document.getElementById("changed");
    if (badge) {
      badge.hidden = false;
    }
  }

  function heard(event) {
    if (event.event === "overflow") {
      // events were dropped on the way: whatever this page shows may have changed
      if (live === "dataset") {
        changed();
      } else {
        refresh();
      }
    } else if (live === "roots") {
      refresh();
    } else if (live === "root" && event.root === root && ROOT_EVENTS.includes(event.event)) {
      refresh();
    } else if (live === "dataset" && event.root === root) {
      if ((event.event === "update" || event.event === "delete") && event.path === path) {
        changed();
      } else if (event.event === "unfollow") {
        changed();
      }
    }
  }

  const url = "/ui/events" + (root ? "?root=" + encodeURIComponent(root) : "");
  const source = new EventSource(url);
  source.addEventListener("ready", function () {
    body.dataset.connected = "true"; // every change from now on reaches this page
    state.textContent = "live";
    state.className = "link-state on";
  });
  source.onerror = function () {
    body.dataset.connected = "false";
    state.textContent = "reconnecting";
    state.className = "link-state off";
  };
  source.onmessage = function (message) {
    heard(JSON.parse(message.data));
  };
})();
