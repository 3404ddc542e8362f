"""The demo's own CSS and JavaScript, inlined in its pages and allowed by hash in the CSP.

Nothing comes from elsewhere: the pages work offline, and the Content-Security-Policy
admits exactly these two blocks (a changed byte changes the hash, so an injected script
would not run).
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["CSP", "SCRIPT", "STYLE"]

STYLE = """
:root { color-scheme: light; --ink: #1f2328; --muted: #57606a; --line: #d0d7de;
  --accent: #0a58ca; --good: #116329; --bad: #a40e26; --bg: #ffffff; --panel: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: var(--bg); margin: 0 auto; max-width: 46rem;
  padding: 1rem 1.25rem 3rem; }
h1 { font-size: 1.6rem; margin: .6rem 0 1rem; }
h2 { font-size: 1.15rem; margin: 1.8rem 0 .5rem; }
nav { display: flex; gap: 1.2rem; padding: .5rem 0; border-bottom: 1px solid var(--line); }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible {
  outline: 3px solid var(--accent); outline-offset: 2px; }
code { font: .95em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  background: var(--panel); padding: .05em .3em; border-radius: 4px; }
.muted { color: var(--muted); font-size: .92rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1.2rem;
  margin: 0; padding: .9rem 1rem; background: var(--panel); border: 1px solid var(--line);
  border-radius: 8px; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
td code { word-break: break-all; }
button { font: inherit; padding: .45rem .9rem; border-radius: 6px; cursor: pointer;
  border: 1px solid var(--accent); background: var(--accent); color: #fff; }
button:disabled { opacity: .6; cursor: progress; }
button.secondary { background: #fff; color: var(--accent); }
input { font: inherit; padding: .3rem .5rem; border: 1px solid var(--line);
  border-radius: 6px; }
input[type=number] { width: 5.5rem; }
.row { display: flex; flex-wrap: wrap; align-items: center; gap: .8rem; }
.result { font-weight: 600; min-height: 1.5em; }
.result.good { color: var(--good); }
.result.bad { color: var(--bad); }
"""

SCRIPT = """
"use strict";
(function () {
  var view = document.getElementById("session-view");
  if (!view) { return; }
  // Server clock minus this browser's: the countdowns use the server's deadlines.
  var skew = Number(view.dataset.now) - Date.now() / 1000;
  function now() { return Date.now() / 1000 + skew; }
  function span(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    return (h ? h + " h " : "") + (h || m ? m + " min " : "") + s + " s";
  }
  function tick() {
    view.querySelectorAll("[data-until]").forEach(function (el) {
      var until = Number(el.dataset.until);
      if (!until) { el.textContent = ""; return; }
      var left = until - now();
      el.textContent = left > 0 ? "in " + span(left) : "passed";
    });
    view.querySelectorAll("[data-since]").forEach(function (el) {
      var since = Number(el.dataset.since);
      el.textContent = since ? span(now() - since) + " ago" : "";
    });
  }
  function setText(id, text) {
    var el = document.getElementById(id);
    if (el) { el.textContent = text; }
  }
  function render(state) {
    setText("sid", state.sid);
    setText("stored", state.stored ? "yes" : "no: nothing has been set in it yet");
    setText("version", String(state.version));
    [["created", "since", state.created_at], ["idle", "until", state.expires_at],
     ["absolute", "until", state.absolute_expires_at]].forEach(function (row) {
      var el = document.getElementById(row[0] + "-at");
      if (el) { el.textContent = state.times[row[0]]; }
      var live = document.getElementById(row[0] + "-live");
      if (live) { live.dataset[row[1]] = String(row[2]); }
    });
    var body = document.getElementById("data-rows");
    body.replaceChildren();
    state.data.forEach(function (pair) {
      var tr = document.createElement("tr");
      pair.forEach(function (text) {
        var td = document.createElement("td"), code = document.createElement("code");
        code.textContent = text;
        td.appendChild(code);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    setText("data-empty", state.data.length ? "" : "The session holds no data.");
    tick();
  }
  function post(path, fields) {
    return fetch(path, {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: {"Content-Type": "application/x-www-form-urlencoded"},
      body: new URLSearchParams(fields).toString()
    }).then(function (response) {
      if (!response.ok) { throw new Error(path + " answered " + response.status); }
      return response.json();
    });
  }
  var button = document.getElementById("burst");
  var input = document.getElementById("burst-n");
  var result = document.getElementById("burst-result");
  document.getElementById("burst-form").hidden = false;
  document.getElementById("burst-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var n = Math.max(1, Math.min(Number(input.max), Math.floor(Number(input.value) || 1)));
    input.value = String(n);
    button.disabled = true;
    result.className = "result";
    result.textContent = "Sending " + n + " requests at once\\u2026";
    var started = 0;
    post("/session/burst/start", {requests: String(n)}).then(function () {
      started = performance.now();
      var all = [];
      for (var i = 0; i < n; i++) { all.push(post("/session/burst", {key: String(i)})); }
      return Promise.all(all);
    }).then(function () {
      var took = Math.round(performance.now() - started);
      return fetch("/session/state", {credentials: "same-origin", cache: "no-store"})
        .then(function (response) { return response.json(); })
        .then(function (state) {
          var kept = state.data.filter(function (pair) {
            return /^burst-[0-9]+$/.test(pair[0]);
          }).length;
          result.className = "result " + (kept === n ? "good" : "bad");
          result.textContent = kept + " of " + n + " keys kept (the " + n +
            " requests took " + took + " ms).";
          render(state);
        });
    }).catch(function (error) {
      result.className = "result bad";
      result.textContent = "Failed: " + error.message;
    }).then(function () { button.disabled = false; });
  });
  tick();
  setInterval(tick, 1000);
})();
"""


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


#: Only the inlined blocks above run or style the page; fetch and forms go to this origin.
CSP = (
    f"default-src 'none'; script-src {_sha256(SCRIPT)}; style-src {_sha256(STYLE)}; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
